"""Every benchmark script's --quick smoke run (real training cells on digits, evaluated, tabled),
how an interrupted cell resumes, and how a rebuilt table keeps the rows whose cells were lost."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from bench.cells import CELL_MARKER, QUICK, QUICK_CLIENTS, Cell, Results, resolved
from bench.report import KEPT, KEPT_NOTE, OPTIONAL, cells_of, keep_measured
from bench.reproduce_f2u import cells, untrained
from conftest import ROOT


@pytest.mark.dist
@pytest.mark.parametrize("script, expect", [
    ("forgiveness.py", ["| digits | f2u | spectral |", "| digits | f2a | batch |"]),
    ("reproduce_f2u.py", ["| digits | classes | 20 | f2u | 1 |", "**Orderings**", "f2u_digits_classes_20.png"]),
    ("reproduce_kosmopoulos.py", ["| standalone |", "| info-gain < uniform |", "kosmopoulos_nodes.png"]),
    ("robustness.py", ["| f2u | honest | robust |", "| f2u | always_real | robust |"]),
    ("convergence.py", ["### digits, classes", "| dataset | rule | 20 | 40 |", "| digits | centralized | ", "| digits | f2a | ",
                        "| raw G: Inception FID |", "| f2a | 40 | ", "Recall within each class at the budget"]),
    ("baselines.py", ["| mdgan | swap every 10 | spectral |", "| gman | ", "- mdgan: best setting", "- gman: best setting"]),
])
def test_quick_smoke_run(tmp_path, digits_classifier_cache, script, expect):
    store = ROOT / "bench" / "results.json"
    before = store.read_bytes() if store.exists() else None
    proc = subprocess.run([sys.executable, f"bench/{script}", "--quick", "--out", str(tmp_path / "cells")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "DDGAN_BENCH_CLASSIFIERS": str(digits_classifier_cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expect:
        assert text in proc.stdout, (text, proc.stdout[-3000:])
    assert "not run" not in proc.stdout.split("**Orderings**")[0]      # every quick cell was trained
    assert not (tmp_path / "cells").exists()                           # a quick run keeps its cells aside
    grids = list((tmp_path / "cells_quick" / "grids").glob("*/samples_node_0.png"))
    assert grids, "every trained cell's sample grids are kept beside its store"
    evaluations = list((tmp_path / "cells_quick").glob("*/eval.json"))
    assert evaluations and all(                    # every evaluation of a cell (a curve's too): one yardstick
        Path(json.loads(e.read_text())["classifier"]["path"]).parent == digits_classifier_cache for e in evaluations)
    assert (store.read_bytes() if store.exists() else None) == before   # and never in the tracked store
    assert (ROOT / "BENCHMARKS.md").read_text().count("<!-- reproduce_f2u -->") <= 1


@pytest.mark.dist
def test_a_stopped_cell_resumes_and_ends_as_an_uninterrupted_one_while_other_settings_start_over(
        tmp_path, digits_classifier_cache):
    cell = Cell("digits", "iid", "centralized", "spectral", 0, 30, extra=QUICK)     # one rank, 30 steps
    config = resolved(cell, ROOT / "data")
    for name, marker in (("whole", {"other": "settings"}), ("stopped", config)):
        run = tmp_path / name / cell.name
        run.mkdir(parents=True)
        (run / CELL_MARKER).write_text(json.dumps(marker))
        (run / "STOP").touch()                 # seen at the first check (step 10), acted on at the next
    whole = Results(tmp_path / "whole.json", tmp_path / "whole").run(cell, ROOT / "data", 500,
                                                                     cache=digits_classifier_cache)
    assert "resumed_from" not in whole          # another attempt's run (and its STOP) was wiped
    stopped = Results(tmp_path / "stopped.json", tmp_path / "stopped")
    with pytest.raises(SystemExit, match="stopped on request at step 20 of 30.*the same command resumes it"):
        stopped.run(cell, ROOT / "data", 500, cache=digits_classifier_cache)
    assert stopped.get(cell, ROOT / "data") is None                       # nothing stored for a stopped cell
    resumed = stopped.run(cell, ROOT / "data", 500, cache=digits_classifier_cache)
    assert resumed["resumed_from"] == [20]
    assert resumed["generators"] == whole["generators"]                    # the same generator, evaluated alike
    assert stopped.get(cell, ROOT / "data") is not None
    # a longer cell of the same settings continues the shorter one's run, and ends as if never cut short
    grown = Results(tmp_path / "grown.json", tmp_path / "grown")
    short = Cell("digits", "iid", "centralized", "spectral", 0, 20, extra=QUICK)
    grown.run(short, ROOT / "data", 500, cache=digits_classifier_cache)
    longer = grown.run(cell, ROOT / "data", 500, cache=digits_classifier_cache)
    assert longer["continued"] == short.name and longer["resumed_from"] == [20]
    assert longer["generators"] == whole["generators"]
    assert grown.get(short, ROOT / "data") is not None                     # the shorter cell keeps its own run
    # --again: a stored cell is trained anew, or (its run still here) its last checkpoint scored again
    again = Results(tmp_path / "grown.json", tmp_path / "grown", only=[short.name], again=True)
    assert again.run(cell, ROOT / "data", 500, cache=digits_classifier_cache) == grown.get(cell, ROOT / "data")
    before = grown.get(short, ROOT / "data")
    rescored = again.run(short, ROOT / "data", 500, cache=digits_classifier_cache)
    assert rescored["resumed_from"] == [20] and "resumed_from" not in before      # not one step trained again
    assert rescored["generators"] == before["generators"] and grown.get(short, ROOT / "data") == rescored
    shutil.rmtree(tmp_path / "grown" / short.name)            # asked again, it would train from scratch ...
    assert again.run(short, ROOT / "data", 500, cache=digits_classifier_cache) == rescored   # ... but once is enough
    with pytest.raises(SystemExit, match="--again trains stored cells anew: name them with --only"):
        Results.of(Namespace(again=True, only=["*"], quick=False, store=tmp_path / "x.json", out=tmp_path))


OLD = """`python bench/x.py`, 2026-11-28, 2 CPU cores.

| data | rule | seeds | fid |
| --- | --- | --- | --- |
| mnist | f2u | 2 | 168.3 (164.3-172.4) |
| mnist | f2a | 1 | 131.0 |
| mnist | gman | not run: `python bench/x.py --rules gman` |
| mnist | f2u | seed 1 | 236.0 |"""


def test_a_rebuilt_table_keeps_measured_rows_whose_cells_are_gone_and_marks_them():
    new = """| data | rule | seeds | fid |
| --- | --- | --- | --- |
| mnist | f2u | not run: `python bench/x.py --rules f2u` |
| mnist | f2a | 2 | 120.0 (119.0-121.0) |
| mnist | gman | not run: `python bench/x.py --rules gman` |
| mnist | f2u | seed 1 | %s |
| mnist | f2a | seed 1 | %s |""" % (OPTIONAL, OPTIONAL)
    rows = keep_measured(OLD, new).splitlines()
    assert rows[2] == f"| mnist | f2u | 2 {KEPT} | 168.3 (164.3-172.4) |"        # lost cells: the old row, marked
    assert rows[3] == "| mnist | f2a | 2 | 120.0 (119.0-121.0) |"                 # measured now: the new row wins
    assert rows[4].startswith("| mnist | gman | not run")                         # never measured: still says how
    assert rows[5] == f"| mnist | f2u | seed 1 | 236.0 {KEPT} |"                 # an optional row kept ...
    assert not any("| f2a | seed 1" in r for r in rows)                           # ... or dropped
    assert rows[-1] == KEPT_NOTE and "\n".join(rows).count(KEPT_NOTE) == 1
    again = keep_measured("\n".join(rows), new)                                   # rebuilt twice: one mark, one note
    assert again.count(f"2 {KEPT}") == 1 and again.count(KEPT_NOTE) == 1


def test_a_row_is_kept_only_from_its_own_table_when_two_tables_share_labels():
    header = "| data | split | metric | f2a <= f2u | values |\n| --- | --- | --- | --- | --- |\n"
    other = "| data | split | metric | centralized | best rule |\n| --- | --- | --- | --- | --- |\n"
    old = header + "| mnist | iid | fid | holds | 1 / 2 |\n\n" + other + "| mnist | non_ovl | fid | 28.6 | f2a 25.3 |"
    gap = "| mnist | non_ovl | fid | incomplete | | `python bench/x.py` |"
    new = header + gap + "\n\n" + other + "| mnist | non_ovl | fid | 28.6 | f2a 25.3 |"
    assert keep_measured(old, new) == new                    # the upper bound's row is no ordering


def test_a_row_is_kept_only_from_its_own_table_when_two_tables_share_a_header_and_labels():
    header = "| data | rule | seeds | fid |\n| --- | --- | --- | --- |\n"
    old = "**lambda**\n\n" + header + "| mnist | f2a | 1 | 126.5 |\n\n**mnist**\n\n" + header + \
        "| mnist | f2a | 2 | 119.7 (112.9-126.5) |"
    new = old.replace("| 1 | 126.5 |", "| not run: `x` | |").replace("| 2 | 119.7 (112.9-126.5) |", "| not run: `x` | |")
    assert keep_measured(old, new).split("\n\n")[:4] == old.replace(" | 1 | ", f" | 1 {KEPT} | ").replace(
        " | 2 | ", f" | 2 {KEPT} | ").split("\n\n")         # each table keeps its own row, not the first match


def test_a_table_with_nothing_lost_is_left_as_built():
    new = OLD.split("\n\n", 1)[1].replace("not run: `python bench/x.py --rules gman`", "1 | 2048.7")
    assert keep_measured(OLD, new) == new


def test_a_stored_cell_is_found_from_another_checkout_whose_data_lies_elsewhere(tmp_path):
    cell = Cell("digits", "non_ovl", "f2u", "spectral", 0, 600)
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    results.add(cell.name, {"config": resolved(cell, Path("/one/machine/data"))})
    assert results.get(cell, Path("/another/checkout/data")) is not None
    changed = Cell("digits", "non_ovl", "f2u", "spectral", 0, 600, "lr", ("train.lr_g=0.001",))
    results.add(changed.name, {"config": resolved(cell, Path("/x"))})      # stored under settings it no longer has
    assert results.get(changed, Path("/x")) is None


def test_the_f2u_table_names_the_cells_it_lacks_and_the_command_that_trains_them(tmp_path):
    root = Path("/data")
    args = Namespace(datasets=["mnist"], splits=["non_ovl", "mod_ovl"], rules=["f2u", "gman"], quick=False, root=root)
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    for cell in [*cells("mnist", "non_ovl", "f2u", False), *cells("mnist", "mod_ovl", "f2u", False),
                 *cells("mnist", "mod_ovl", "gman", False)]:
        if cell.seed == 0:
            results.add(cell.name, {"config": resolved(cell, root)})
    lines = untrained(results, args)
    assert lines[2] == ("- mnist non_ovl (f2u s1; gman s0, s1): "
                        "`python bench/reproduce_f2u.py --datasets mnist --splits non_ovl`")
    assert not any("mod_ovl" in line for line in lines)            # a complete row is not listed
    for cell in cells("mnist", "non_ovl", "f2u", False) + cells("mnist", "non_ovl", "gman", False):
        results.add(cell.name, {"config": resolved(cell, root)})
    assert untrained(results, args) == []


def test_the_iid_control_is_tabled_beside_the_centralized_gan_only_once_it_ran(tmp_path):
    from bench.convergence import RULES, curve_cell, has_table, table_cells
    root = Path("/data")
    args = Namespace(datasets=["mnist"], splits=["non_ovl"], rules=RULES, seeds=[0], quick=False, root=root, every=1500)
    results = Results(tmp_path / "results.json", tmp_path / "runs")

    def store(cell: Cell) -> None:
        results.add(cell.name, {"config": resolved(cell, root), "curve": {"15000": {"fid_classifier": 1.0}}})

    store(curve_cell("mnist", "centralized", 1500, False))
    assert list(table_cells(results, args, "mnist", "non_ovl")) == RULES        # every rule, run or not
    assert list(table_cells(results, args, "mnist", "iid")) == ["centralized"]
    assert not has_table(results, args, "mnist", "iid")              # the shared centralized cell alone: no table
    iid = curve_cell("mnist", "f2a", 1500, False, split="iid")
    assert iid.name.startswith("mnist_iid_f2a_") and "partition.scheme=iid" in iid.overrides(root)
    store(iid)
    cells = table_cells(results, args, "mnist", "iid")
    assert list(cells) == ["centralized", "f2a"] and has_table(results, args, "mnist", "iid")
    assert cells["centralized"] == table_cells(results, args, "mnist", "non_ovl")["centralized"]
    assert cells["f2a"] == iid


def test_the_fake_weights_probe_trains_the_uniform_curve_with_one_setting_changed_and_tables_it_beside(tmp_path):
    from bench.fake_weights import rows, table
    root = Path("/data")
    args = Namespace(steps=3000, every=1500, root=root)
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    cells = rows("f2a", 1, 3000, 1500)
    uniform, weighted = resolved(cells["uniform"], root), resolved(cells["rule"], root)
    assert weighted["algo"].pop("fake_weights") == "rule" and uniform["algo"].pop("fake_weights") == "uniform"
    for config in (uniform, weighted):       # the length and what it logs aside, nothing else differs
        config["train"].pop("steps"), config.pop("run")
    assert weighted == uniform
    assert "not run" in table(results, "f2a", 1, args)
    point = {"fid_classifier": 50.0, "precision": 0.5, "recall": 0.6, "classes": 10, "confident": 9}
    for name, recall in (("uniform", 0.6), ("rule", 0.8)):
        results.add(cells[name].name, {"config": resolved(cells[name], root), "curve": {
            "1500": point, "3000": {**point, "recall": recall, "recall_per_class": [recall] * 10}}})
    shown = table(results, "f2a", 1, args)
    assert "| rule | 50.0, 0.50 / 0.60 | 50.0, 0.50 / 0.80 |" in shown
    assert "| IID control (f2a, seed 0) | not run | not run |" in shown
    assert "| rule, 3,000 steps | 0.80 | 0.80 |" in shown         # recall within each class at its budget
    assert "Inception FID" not in shown
    stored = results.get(cells["rule"], root)
    stored["curve"]["3000"]["inception_fid"] = 17.5
    results.add(cells["rule"].name, stored)
    shown = table(results, "f2a", 1, args)       # where --inception-at scored it, beside the poster's F2A
    assert "| rule | 17.50 (0.50 / 0.80) | 18.96 |" in shown and "| uniform | - | 18.96 |" in shown
    assert "| centralized (seed 0) | not run | not run |" in shown
    assert "IID control" not in shown.split("Inception FID")[1].split("Recall within")[0]   # no Non-OVL poster for it


def test_the_default_job_with_rule_weights_is_paired_with_the_configured_job_by_seed(tmp_path):
    """Each rule-weighted run is its seed's configured default job (the co-hosting bench's 5-rank
    run) with algo.fake_weights=rule alone changed, and the notes compare the pairs."""
    from bench.co_hosted_quality import BASE
    from bench.co_hosted_quality import job as default_job
    from bench.fake_weights_default_job import LONGER, RULE, UNIFORM, job, section
    from bench.named_runs import NamedRuns

    uniform, rule = job(UNIFORM, 3), job(RULE, 3)
    assert uniform == default_job(BASE, 3)
    configs = [run.resolved() for run in (uniform, rule)]
    assert configs[1]["algo"].pop("fake_weights") == "rule" and configs[0]["algo"].pop("fake_weights") == "uniform"
    assert configs[0] == configs[1] and rule.dir != uniform.dir
    longer = job(RULE, 3, steps=LONGER)
    assert longer.resolved()["train"].pop("steps") == LONGER and longer.dir not in (rule.dir, uniform.dir)
    runs = NamedRuns(tmp_path / "named_runs.json", train=False, evaluate=False)
    assert "Not run yet:" in section(runs, (0, 1), None)
    for (weights, seed, steps), (fid, confident) in {
            (UNIFORM, 0, None): (30.0, 8), (UNIFORM, 1, None): (28.0, 8), (RULE, 0, None): (25.0, 9),
            (RULE, 1, None): (29.0, 7), (UNIFORM, 0, LONGER): (20.0, 9), (UNIFORM, 0, 3600): (16.0, 10),
            (RULE, 0, 3600): (14.5, 10)}.items():
        generator = {"n": 10000, "fid_classifier": fid, "classes_covered": 10, "confident_classes_covered": confident}
        run = job(weights, seed, steps=steps)
        runs.store.add(run.name, {"config": run.resolved(), "step": steps or 600,
                                  "evals": {"averaged": {"generators": {"0": generator}}}})
    shown = section(runs, (0, 1), None)
    assert "| rule | 10 (9), 25.0 | 10 (7), 29.0 | 27.0 (25.0-29.0) |" in shown
    assert "| uniform (the default) | 10 (9), 20.0 | 20.0 (20.0-20.0) |" in shown
    assert shown.count("`python bench/fake_weights_default_job.py --only") == 1       # the longer rule run alone
    assert "Trained longer, 3,600 steps:" in shown and "| rule | 10 (10), 14.5 | 14.5 (14.5-14.5) |" in shown
    assert "- 3,600 steps: rule minus uniform, fid_classifier -1.5 (seed 0)." in shown
    assert "- 1,800 steps:" not in shown                                            # its rule run is missing
    assert "rule below uniform in 1 of 2 seeds; mean change -2.0." in shown
    assert "uniform (the default) 10 (8), rule 10 (7)" in shown


def test_the_shard_size_probe_changes_one_thing_of_the_default_job_per_setting(tmp_path):
    """Each setting is the default job with its data changed (MNIST, its size, its shards capped) and nothing
    else; the rule run of a setting differs from its uniform run in fake_weights alone; the longer
    runs in steps alone; the digits pairs are the default-job bench's; the notes compare the pairs."""
    from bench.fake_weights_default_job import LONGER, RULE, UNIFORM
    from bench.fake_weights_default_job import job as digits_job
    from bench.fake_weights_shard_size import SETTINGS, SMALL, job, section
    from bench.named_runs import NamedRuns

    digits, mnist, small, small16 = SETTINGS
    assert job(digits, RULE, 1) == digits_job(RULE, 1) and job(digits, RULE, 0, steps=LONGER) == digits_job(
        RULE, 0, steps=LONGER)
    base = digits_job(UNIFORM, 1).resolved()
    for setting, changed in ((mnist, {("data", "name"): "mnist", ("data", "image_size"): 28}),
                             (small, {("data", "name"): "mnist", ("data", "image_size"): 28,
                                      ("partition", "samples_per_client"): SMALL}),
                             (small16, {("data", "name"): "mnist", ("partition", "samples_per_client"): SMALL})):
        uniform, rule = job(setting, UNIFORM, 1).resolved(), job(setting, RULE, 1).resolved()
        assert rule["algo"].pop("fake_weights") == "rule" and uniform["algo"]["fake_weights"] == "uniform"
        assert rule == {**uniform, "algo": {k: v for k, v in uniform["algo"].items() if k != "fake_weights"}}
        assert {(section_, key): value for section_, keys in uniform.items() for key, value in keys.items()
                if base[section_][key] != value} == changed
        longer = job(setting, RULE, 1, steps=LONGER)
        assert longer.resolved()["train"].pop("steps") == LONGER and longer.dir != job(setting, RULE, 1).dir
    runs = NamedRuns(tmp_path / "named_runs.json", train=False, evaluate=False)
    assert section(runs, (0,), None).count("`python bench/fake_weights_shard_size.py --only") == 16
    for (setting, weights), (fid, recall) in {(small, UNIFORM): (40.0, 0.5), (small, RULE): (55.5, 0.3),
                                              (mnist, UNIFORM): (90.0, 0.4)}.items():
        generator = {"n": 10000, "fid_classifier": fid, "recall": recall, "classes_covered": 10,
                     "confident_classes_covered": 9}
        run = job(setting, weights, 0)
        runs.store.add(run.name, {"config": run.resolved(), "step": 600, "lambda": {"550": 2.0, "600": 4.25},
                                  "evals": {"averaged": {"generators": {"0": generator}}}})
    shown = section(runs, (0,), None)
    assert f"| MNIST, 28 px, {SMALL} per client: rule | 10 (9), 55.5 | 55.5 (55.5-55.5) |" in shown
    assert (f"- MNIST, 28 px, {SMALL} per client, 600 steps: rule minus uniform, fid_classifier +15.5 (seed 0); "
            "recall 0.50 -> 0.30; lambda at the end uniform 4.2, rule 4.2.") in shown
    assert "- MNIST, 28 px, whole shards," not in shown                          # its rule run is missing
    assert shown.count("`python bench/fake_weights_shard_size.py --only") == 13
    assert f"MNIST, 28 px, {SMALL} per client, 600 steps: rule minus uniform, fid_classifier +15.5 (seed 0);" in \
        section(runs, (0, 1), None)                                                 # seed 1 not run: seed 0 alone


def test_the_f2u_reproduction_scores_a_stored_non_ovl_curve_cell_with_what_convergence_reads(tmp_path):
    """reproduce_f2u hands its Non-OVL curve cells to bench/convergence.py's score: a stored cell
    comes back as stored, with nothing trained or scored (no run directory), and no key is missing."""
    from bench.convergence import score
    from bench.reproduce_f2u import curve_scoring
    root = Path("/data")
    cell = next(c for c in cells("mnist", "non_ovl", "f2a", False))
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    point = {"fid_classifier": 25.8, "classes": 10, "confident": 10, "precision": 0.59, "recall": 0.68,
             "inception_fid": 26.2}
    evaluated = {"generators": {"0": {"fid_classifier": 25.8, "classes_covered": 10, "confident_classes_covered": 10,
                                      "precision": 0.59, "recall": 0.68}}, "inception_fid": {"value": {"0": 26.2}}}
    results.add(cell.name, {"config": resolved(cell, root), "step": cell.steps, "curve": {str(cell.steps): point},
                            **evaluated})
    scored = score(results, cell, curve_scoring(cell, root))
    assert scored["curve"] == {str(cell.steps): point} and not (tmp_path / "runs").exists()


def test_the_upper_bound_compares_the_centralized_gan_with_the_best_rule_and_says_why_where_it_is_behind(tmp_path):
    """Per metric, the centralized GAN against the decentralized rule with the lowest mean over seeds;
    where it is behind with higher recall and lower precision, a line says so; no centralized cell, no row."""
    from bench.reproduce_f2u import upper_bound
    root = Path("/data")
    args = Namespace(datasets=["mnist", "fashion_mnist"], splits=["non_ovl"], rules=["f2u", "f2a", "centralized"],
                     quick=False, root=root)
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    for rule, seed, fid, inception, precision, recall in (("centralized", 0, 28.6, 15.3, 0.48, 0.86),
                                                          ("f2a", 0, 25.0, 26.0, 0.60, 0.66),
                                                          ("f2a", 1, 26.0, None, 0.58, 0.68),
                                                          ("f2u", 0, 24.0, 28.0, 0.56, 0.68)):
        cell = cells("mnist", "non_ovl", rule, False)[seed]
        results.add(cell.name, {"config": resolved(cell, root), "step": cell.steps, "inception_fid": {
            "value": {"0": inception} if inception else {}}, "generators": {"0": {
                "fid_classifier": fid, "precision": precision, "recall": recall}}})
    table = upper_bound(results, args)
    assert "| mnist | non_ovl | 15,000 | fid_classifier | 28.6 | f2u 24.0 | no | no: one seed | 1 / 1 | " \
        "0.48 / 0.86; 0.56 / 0.68 |" in table
    # f2a's seed 1 has no Inception FID: its precision and recall stay out of that row
    assert "| mnist | non_ovl | 15,000 | inception_fid | 15.30 | f2a 26.00 | yes | no: one seed | 1 / 1 | " \
        "0.48 / 0.86; 0.60 / 0.66 |" in table
    assert "fashion_mnist" not in table and "higher recall" in table
    results.add(cells("mnist", "non_ovl", "centralized", False)[0].name, {
        "config": resolved(cells("mnist", "non_ovl", "centralized", False)[0], root), "step": 15000,
        "inception_fid": {"value": {"0": 15.3}}, "generators": {"0": {"fid_classifier": 28.6, "precision": 0.70,
                                                                      "recall": 0.86}}})
    assert "| no |" in upper_bound(results, args) and "higher recall" not in upper_bound(results, args)


def test_an_ordering_over_a_collapsed_baseline_says_the_baseline_collapsed(tmp_path):
    from bench.reproduce_f2u import orderings
    root = Path("/data")
    args = Namespace(datasets=["mnist"], splits=["mod_ovl"], quick=False, root=root)
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    for rule, fid, recall in (("f2a", 84.3, 0.62), ("f2u", 98.4, 0.59), ("mdgan", 218.3, 0.29),
                              ("gman", 1597.9, 0.0)):
        cell = cells("mnist", "mod_ovl", rule, False)[0]
        results.add(cell.name, {"config": resolved(cell, root), "step": cell.steps, "inception_fid": {"value": {}},
                                "generators": {"0": {"fid_classifier": fid, "precision": 0.4, "recall": recall}}})
    table = orderings(results, args)
    assert "| mnist | mod_ovl | 1,500 | fid_classifier | holds | holds | holds (gman collapsed: recall < 0.01) | " \
        "84.3 / 98.4 / 218.3 / 1597.9 |" in table
    assert "broken, not because the rule is better" in table


def store_non_ovl(results: Results, rule: str, seed: int, fid: float = 20.0, **result) -> None:
    """A stored MNIST Non-OVL cell of ``rule`` with fid_classifier ``fid``, precision and recall 0.5,
    no Inception FID unless ``result`` gives one, and ``result``'s other keys."""
    cell = cells("mnist", "non_ovl", rule, False)[seed]
    results.add(cell.name, {"config": resolved(cell, Path("/data")), "step": cell.steps, "inception_fid": {"value": {}},
                            "generators": {"0": {"fid_classifier": fid, "precision": 0.5, "recall": 0.5}}, **result})


def upper_bound_test(tmp_path, rules: list[str]):
    """An empty MNIST Non-OVL store for ``rules``; a function storing a cell's Inception FID; one giving the
    cells of the upper bound's Inception FID row."""
    from bench.reproduce_f2u import upper_bound
    args = Namespace(datasets=["mnist"], splits=["non_ovl"], rules=rules, quick=False, root=Path("/data"))
    results = Results(tmp_path / "results.json", tmp_path / "runs")

    def store(rule, seed, inception):
        store_non_ovl(results, rule, seed, inception_fid={"value": {"0": inception}})

    def row():
        return cells_of(next(line for line in upper_bound(results, args).splitlines() if "inception_fid" in line))
    return args, store, row


def test_the_upper_bound_is_settled_only_by_two_seeds_each_that_do_not_overlap(tmp_path):
    args, store, row = upper_bound_test(tmp_path, ["f2a", "centralized"])

    def settled():
        return row()[6:8]

    store("centralized", 0, 22.4), store("centralized", 1, 23.7), store("f2a", 0, 23.8)
    assert settled() == ["yes", "no: one seed"]                   # both centralized seeds lower, one of F2A's
    store("f2a", 1, 23.5)
    assert settled() == ["yes", "no: seeds overlap"]              # 23.7 > 23.5
    store("f2a", 1, 25.0)
    assert settled() == ["yes", "yes"]
    store("centralized", 1, 26.0), store("centralized", 0, 27.0)
    assert settled() == ["no", "yes"]                             # settled the other way
    args.rules = ["f2a", "mdgan", "gman", "centralized"]
    assert settled() == ["no", "no: mdgan, gman not scored"]      # the best rule so far is not yet the best
    store("centralized", 1, 24.5)
    assert settled() == ["no", "no: mdgan, gman not scored; seeds overlap"]


def test_that_the_centralized_gan_is_behind_is_settled_by_any_rule_that_beats_it_apart(tmp_path):
    """The best rule in the mean may overlap the centralized GAN while another rule beats it on every seed."""
    _, store, row = upper_bound_test(tmp_path, ["f2a", "f2u_balanced", "centralized"])
    store("centralized", 0, 18.2), store("centralized", 1, 19.2)
    store("f2a", 0, 17.3), store("f2a", 1, 17.9)                  # every seed below both centralized ones
    store("f2u_balanced", 0, 16.8), store("f2u_balanced", 1, 18.2)  # lower mean, overlapping seeds
    assert row()[5:8] == ["f2u_balanced 17.50", "no", "yes, by f2a 17.60 (f2u_balanced: seeds overlap)"]
    store("f2a", 1, 18.4)
    assert row()[5:8] == ["f2u_balanced 17.50", "no", "no: seeds overlap"]


def test_the_forgiveness_targets_name_no_best_rule_until_every_rule_is_measured(tmp_path):
    """The centralized GAN is the best only against every decentralized rule: measured against the
    collapsed baselines alone (the forgivers' cells not run, or stale) it must not be said to win."""
    from bench.forgiveness import TARGET_RULES, rule_cell, targets
    root = Path("/data")
    results = Results(tmp_path / "results.json", tmp_path / "runs")

    def store(rule, fid):
        for seed in (0, 1):
            cell = rule_cell("mnist", rule, "spectral", seed, 1500)
            results.add(cell.name, {"config": resolved(cell, root), "step": cell.steps, "generators": {"0": {
                "fid_classifier": fid, "classes_covered": 9, "confident_classes_covered": 8}}})

    def centralized_row():
        return next(line for line in targets(results, root).splitlines() if line.startswith("| centralized"))

    store("centralized", 118.3), store("mdgan", 930.4), store("gman", 2097.9)
    assert "not run" in centralized_row() and "| yes |" not in centralized_row()
    for rule, fid in zip(TARGET_RULES[:3], (163.4, 119.7, 94.9)):
        store(rule, fid)
    assert cells_of(centralized_row())[1:] == ["118.3 / 94.9", "no"]


def test_a_robustness_row_whose_shared_cell_lacks_the_honest_classes_keeps_the_previous_tables_row(tmp_path):
    """The honest undefended cell is the forgiveness bench's: stored by that table without the fid on
    the honest classes and its run cleared, it cannot fill the robustness row, so the row is incomplete
    (the previous table's row stands in) and training the table trains that cell again."""
    from bench.robustness import cell, lacks_classes, row
    root, args = Path("/data"), Namespace(shape=("mnist", 1500, 200), start=200, dataset="mnist")
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    honest = cell("mdgan", "honest", "none")
    metrics = {"fid_classifier": 930.4, "classes_covered": 5, "confident_classes_covered": 0,
               "class_histogram": [0.2] * 5 + [0.0] * 5}
    results.add(honest.name, {"config": resolved(honest, root), "step": 1500, "generators": {"0": metrics}})
    assert lacks_classes(results.get(honest, root)) and not lacks_classes(None)
    built = row(results, "mdgan", "honest", "none", root, args)
    assert cells_of(built)[4] == "incomplete"
    old = "| rule | attack | defence | seed | classes | fid |\n| --- | --- | --- | --- | --- | --- |\n"
    kept = keep_measured(old + "| mdgan | honest | none | 0 | 2 / 1 | 877.9 | 0, 1 | - | 0 |",
                         old + built).splitlines()[2]
    assert kept == f"| mdgan | honest | none | 0 | 2 / 1 {KEPT} | 877.9 | 0, 1 | - | 0 |"
    results.add(honest.name, {"config": resolved(honest, root), "step": 1500, "generators": {"0": {
        **metrics, "fid_classifier_classes": 812.0}}})          # measured on the honest classes: the row is built
    assert cells_of(row(results, "mdgan", "honest", "none", root, args))[4:6] == ["5 / 0", "812.0"]


def test_the_kosmopoulos_grid_names_the_cells_it_lacks_and_the_command_that_trains_them(tmp_path):
    from bench.reproduce_kosmopoulos import cell, grid
    root = Path("/data")
    args = Namespace(seeds=[0, 1], steps=2000, image_size=28, d_norm="batch", svm_train=10000, svm_cap=60000,
                     svm_test=10000, svm_features="raw", quick=False, root=root, train=(),
                     grid_command="python bench/reproduce_kosmopoulos.py --parts grid")
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    assert ("Not run yet: standalone seed 0, standalone seed 1, uniform seed 0, uniform seed 1, info-gain seed 0, "
            "info-gain seed 1. `python bench/reproduce_kosmopoulos.py --parts grid --seeds 0 1 --root <dataset root>` "
            "fills them") in grid(results, args)
    for select, seed, error in (("none", 0, 0.03), ("none", 1, 0.02), ("uniform", 0, 0.02), ("infogain", 0, 0.01)):
        c = cell(select, seed, 2000)
        results.add(c.name, {"config": resolved(c, root),
                             "evals": {"10k-raw": {"svm": {"test_error": {"0": error, "1": error}},
                                                   "classes_covered": [10, 9]}}})
    table = grid(results, args)
    assert "| standalone | 3.00 % | 2.00 % | 2.50 % | 0.50 |" in table
    assert "| uniform | 2.00 % | not run | 2.00 % | - (one seed) |" in table
    assert ("Not run yet: uniform seed 1, info-gain seed 1. "
            "`python bench/reproduce_kosmopoulos.py --parts grid --seeds 1 --root <dataset root>` fills them") in table
    assert "| info-gain < uniform | 1.00 | - | yes (one seed: no standard error yet) |" in table
    for select in ("uniform", "infogain"):
        c = cell(select, 1, 2000)
        results.add(c.name, {**results.get(cell(select, 0, 2000), root), "config": resolved(c, root)})
    table = grid(results, args)
    assert "Not run yet" not in table
    assert "| uniform < standalone | 0.50 | 1.00 | yes (within noise) (2 seeds) |" in table


def test_a_cell_stored_before_the_averaged_generator_is_stale_unless_it_asks_for_the_raw_g():
    """Its samples came from the raw G: it matches g_ema = 0, not the new default."""
    from bench.cells import same_config
    cell = Cell("digits", "non_ovl", "f2a", "spectral", 0, 40)
    now = resolved(cell, Path("/data"))
    before = json.loads(json.dumps(now))
    del before["train"]["g_ema"]
    assert not same_config(before, now)
    raw = resolved(Cell("digits", "non_ovl", "f2a", "spectral", 0, 40, "raw", ("train.g_ema=0",)), Path("/data"))
    assert same_config(before, raw) and same_config(now, now)


def test_a_key_only_f2a_reads_does_not_make_another_rules_cell_stale():
    """Before F2A's lambda saw refreshed copies of the Ds it saw them every step (lambda_refresh 1):
    an F2A cell stored then is stale, a gossip cell (which has no lambda, and whose grids come from the
    raw G) stored before both keys existed is not."""
    from bench.cells import same_config
    from bench.reproduce_kosmopoulos import cell as gossip_cell
    for c, dropped, stale in ((Cell("digits", "non_ovl", "f2a", "spectral", 0, 40), [("algo", "lambda_refresh")], True),
                              (gossip_cell("infogain", 0, 40), [("algo", "lambda_refresh"), ("train", "g_ema")], False)):
        now = resolved(c, Path("/data"))
        before = json.loads(json.dumps(now))
        for section, key in dropped:
            del before[section][key]
        assert same_config(before, now) is not stale, c.name


@pytest.mark.dist
def test_exchange_bytes_quick_measures_every_mode():
    proc = subprocess.run([sys.executable, "bench/exchange_bytes.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [l for l in proc.stdout.splitlines() if l.startswith("| feedback") or l.startswith("| params")]
    assert len(rows) == 3 and rows[-1].endswith("| 1.000 |")
    refreshed, every_step = (float(r.split("|")[2]) for r in rows[:2])
    assert 0 < refreshed < every_step             # refreshing the copies sends fewer bytes


@pytest.mark.dist
@pytest.mark.parametrize("script, expect", [
    ("averaged_generator.py", ["| raw G | ", "| averaged, `train.g_ema=0.99` | ", "g_ema does not touch training"]),
    ("lambda_refresh.py", ["| run | refresh 1, seed 0 | refresh 2, seed 0 |", "raw G (refresh 1: the stored cells",
                           "lambda on the default job, seed 0"]),
    ("co_hosted_quality.py", ["| one client per rank | ", "| every client on one rank | ", "co-hosted runs inside"]),
])
def test_named_run_scripts_quick_smoke_run(digits_classifier_cache, script, expect):
    """Tiny runs trained with launch/run.sh (and torchrun), both evaluations, the section printed;
    nothing tracked is touched."""
    tracked = [ROOT / "BENCHMARKS.md", ROOT / "bench" / "results.json", ROOT / "bench" / "named_runs.json"]
    before = [p.read_bytes() if p.exists() else None for p in tracked]
    proc = subprocess.run([sys.executable, f"bench/{script}", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "DDGAN_BENCH_CLASSIFIERS": str(digits_classifier_cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expect:
        assert text in proc.stdout, (text, proc.stdout[-3000:])
    assert "missing" not in proc.stdout and "Not run yet" not in proc.stdout      # every quick run was made
    assert [p.read_bytes() if p.exists() else None for p in tracked] == before


def test_a_named_run_is_reused_from_its_checkpoint_and_its_evaluations_kept_apart(tmp_path, monkeypatch):
    """A run directory is reused when its newest checkpoint trained with the declared config (its
    config.yaml aside), its eval.json is filed by kind, a lost run keeps its numbers, and a directory
    holding other settings is refused, not overwritten."""
    from bench import named_runs
    from bench.named_runs import LAUNCHER, NamedRun, NamedRuns
    from ddgan.core.config import load_config

    run = NamedRun(tmp_path / "run", ("train.seed=1", "train.steps=40"))

    def finished(overrides: tuple[str, ...]) -> Path:
        where = run.path / "checkpoints" / "step_0000040"
        where.mkdir(parents=True, exist_ok=True)
        config = load_config(run.config, [*LAUNCHER, *overrides, f"run.dir={run.dir}"]).to_dict()
        (where / "manifest.json").write_text(json.dumps({"format": "ddgan-checkpoint-1", "step": 40, "world_size": 5,
                                                         "files": {}, "config": config}))
        return where

    where = finished(run.overrides)
    (run.path / "config.yaml").write_text("data: {name: mnist}\n")      # a later launch that failed rewrote it
    (run.path / "metrics.jsonl").write_text('{"step": 20, "lambda": 1.5, "g_loss": 0.7}\n')
    (run.path / "eval.json").write_text(json.dumps({"step": 40, "checkpoint": str(where), "raw_generator": True,
                                                    "generators": {"0": {"n": 200, "fid_classifier": 33.1}}}))
    monkeypatch.setattr(named_runs.subprocess, "run", lambda *a, **k: pytest.fail(f"nothing to train or run: {a}"))
    store = tmp_path / "named_runs.json"
    assert NamedRuns(store, evaluate=False).get(run, ("raw",)) is None            # scored on other sample counts
    entry = NamedRuns(store, n=200, evaluate=False).get(run, ("raw",))
    assert entry["evals"]["raw"]["generators"]["0"]["fid_classifier"] == 33.1 and entry["lambda"] == {"20": 1.5}
    assert NamedRuns(store, n=200, evaluate=False).get(run, ("raw", "averaged")) is None   # never scored averaged
    shutil.rmtree(run.path)
    assert NamedRuns(store, n=200, train=False, evaluate=False).get(run, ("raw",)) == entry  # the numbers stay
    finished(("train.seed=2", "train.steps=40"))
    with pytest.raises(SystemExit, match="holds a run of other settings"):
        NamedRuns(tmp_path / "other.json", n=200).get(run, ("raw",))
    assert (run.path / "checkpoints" / "step_0000040").is_dir()


def unwritten_sections(text: str, scripts: dict[str, str]) -> list[str]:
    """What in a BENCHMARKS.md text no bench script writes: a ``## `` heading outside a marker pair,
    a marker pair whose name no script passes to update_section / publish_table / section_main (as a quoted
    literal), a pair whose first line is not its heading, and anything outside the pairs but the header."""
    from bench.report import HEADER

    pairs = list(re.finditer(r"<!-- ([\w-]+) -->\n(.*?)<!-- /\1 -->", text, re.DOTALL))
    writers = [src for src in scripts.values() if re.search(r"\b(update_section|publish_table|section_main)\(", src)]
    problems = [f"<!-- {m.group(1)} -->: no bench script writes it" for m in pairs
                if not any(f'"{m.group(1)}"' in src for src in writers)]
    problems += [f"<!-- {m.group(1)} -->: starts with {m.group(2).splitlines()[0]!r}, not its ## heading" for m in pairs
                 if not m.group(2).startswith("## ") or m.group(2).count("\n## ") > 0]
    outside = re.sub(r"<!-- ([\w-]+) -->\n.*?<!-- /\1 -->", "", text, flags=re.DOTALL)
    problems += [f"outside every marker pair: {line!r}" for line in outside.splitlines()
                 if line.strip() and line not in HEADER.splitlines()]
    return problems


def test_every_benchmarks_section_is_written_by_a_bench_script():
    scripts = {p.name: p.read_text() for p in (ROOT / "bench").glob("*.py") if p.name != "report.py"}
    assert unwritten_sections((ROOT / "BENCHMARKS.md").read_text(), scripts) == []


def test_a_hand_written_section_fails_the_section_check():
    from bench.report import HEADER
    scripts = {"x.py": 'publish_table("x", "X", table, quick)'}
    written = HEADER + "\n<!-- x -->\n## X\n\n| a |\n<!-- /x -->\n"
    assert unwritten_sections(written, scripts) == []
    assert unwritten_sections(written + "\n## By hand\n\n28.3\n", scripts) == [
        "outside every marker pair: '## By hand'", "outside every marker pair: '28.3'"]
    assert unwritten_sections(written + "\n<!-- by_hand -->\n## By hand\n<!-- /by_hand -->\n", scripts) == [
        "<!-- by_hand -->: no bench script writes it"]


@pytest.mark.dist
def test_the_yardstick_scores_the_samples_eval_scores_under_classifiers_of_three_seeds(tmp_path,
                                                                                      digits_classifier_cache):
    """bench/yardstick.py's seed-0 number for a checkpoint is ddgan.eval's fid_classifier of it (the
    same samples, real images and classifier); the other seeds' classifiers are other yardsticks."""
    from bench.yardstick import SEEDS, measure, section
    run = tmp_path / "cells" / "digits_tiny"
    train = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             "-m", "ddgan.train", "partition.scheme=classes", *QUICK_CLIENTS, *QUICK, "train.steps=20",
             "run.log_every=10", f"run.dir={run}"]
    assert subprocess.run(train, cwd=ROOT, capture_output=True, text=True).returncode == 0
    evaluate = [sys.executable, "-m", "ddgan.eval", "--run", str(run), "--n", "300", "--cache",
                str(digits_classifier_cache), "--svm-train", "0"]
    assert subprocess.run(evaluate, cwd=ROOT, capture_output=True).returncode == 0
    points = measure(tmp_path / "cells", Path("/data"), digits_classifier_cache, 300, ("digits",))
    fake, real = points["digits_tiny: step_0000020"], points["digits: real training images"]
    assert set(fake["fid"]) == set(real["fid"]) == {str(s) for s in SEEDS}
    evaluated = json.loads((run / "eval.json").read_text())
    assert fake["fid"]["0"] == pytest.approx(evaluated["generators"]["0"]["fid_classifier"], abs=1e-3)
    assert fake["classifiers"]["0"]["sha256"] == evaluated["classifier"]["sha256"]
    assert len({c["sha256"] for c in fake["classifiers"].values()}) == len(SEEDS)     # three different yardsticks
    assert all(real["fid"][s] < fake["fid"][s] for s in real["fid"])     # 20 steps of G: far from real images
    assert "| digits_tiny: step_0000020 |" in section(points)


def test_the_f2u_table_says_when_its_rows_were_scored_by_different_classifiers(tmp_path):
    from bench.reproduce_f2u import yardsticks
    args = Namespace(datasets=["mnist"], splits=["non_ovl"], rules=["f2a", "centralized"], quick=False,
                     root=Path("/data"))
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    store_non_ovl(results, "f2a", 0, classifier={"accuracy": 0.9922})
    store_non_ovl(results, "centralized", 0, classifier={"accuracy": 0.9922})
    assert yardsticks(results, args) == []                               # one classifier: nothing to say
    store_non_ovl(results, "centralized", 1, classifier={"accuracy": 0.9923, "sha256": "7cf55f1d" + "0" * 56})
    note = "\n".join(yardsticks(results, args))
    assert "- mnist: its cells were scored by 2 domain classifiers (test accuracy 0.9922, 0.9923 (7cf55f1d))" in note


def test_the_upper_bound_on_fid_classifier_is_settled_only_beyond_the_spread_of_the_classifiers_that_scored_it(
        tmp_path, monkeypatch):
    import bench.reproduce_f2u as f2u
    args = Namespace(datasets=["mnist"], splits=["non_ovl"], rules=["f2a", "centralized"], quick=False,
                     root=Path("/data"))
    results = Results(tmp_path / "results.json", tmp_path / "runs")

    def store(rule, seed, fid, accuracy):
        store_non_ovl(results, rule, seed, fid, classifier={"accuracy": accuracy})

    def settled():
        row = next(line for line in f2u.upper_bound(results, args).splitlines() if "fid_classifier" in line)
        return cells_of(row)[7]

    store("f2a", 0, 24.8, 0.9922), store("f2a", 1, 25.8, 0.9922)
    store("centralized", 0, 28.6, 0.9922), store("centralized", 1, 29.6, 0.9922)
    assert settled() == "yes"                                       # one classifier: apart is enough
    store("centralized", 0, 28.6, 0.9917)
    monkeypatch.setattr(f2u, "widest", lambda dataset: None)
    assert settled() == "no: scored by different classifiers, their spread not measured"
    monkeypatch.setattr(f2u, "widest", lambda dataset: 0.05)
    assert settled() == "yes"                                       # 25.8 x 1.05 < 28.6
    monkeypatch.setattr(f2u, "widest", lambda dataset: 0.15)
    assert settled() == "no: seeds apart by less than the classifiers' spread (15.0%)"


def test_the_tables_score_with_the_tracked_classifiers_on_every_machine(tmp_path, shared_data, monkeypatch):
    """Each tracked classifier is the current recipe's file, verifies and classifies its real test
    images; pinning puts it in a cache that holds another machine's (which would move fid_classifier
    by the yardstick's spread) and leaves a cache that holds it alone."""
    import hashlib

    import numpy as np

    from bench.cells import PINNED, pin_classifiers, pinned
    from ddgan.core.config import DataConfig
    from ddgan.eval import classifier
    metas = {meta: json.loads(meta.read_text()) for meta in sorted(PINNED.glob("*.json"))}
    assert {m["dataset"] for m in metas.values()} == {"mnist", "fashion_mnist"}
    cache = tmp_path / "cache"
    cache.mkdir()
    for meta, m in metas.items():
        data = DataConfig(name=m["dataset"], root=str(shared_data))
        assert meta.stem == classifier.cache_name(data, m["seed"])        # a new recipe must be pinned anew
        assert hashlib.sha256(meta.with_suffix(".pt").read_bytes()).hexdigest() == m["sha256"]
        assert pinned(m["dataset"]) == f"{m['accuracy']:.4f} ({m['sha256'][:8]})"
        (cache / meta.name).write_text(json.dumps({**m, "sha256": "0" * 64}))      # another machine's
        (cache / meta.with_suffix(".pt").name).write_bytes(b"another machine's weights")
    pin_classifiers(cache)
    monkeypatch.setattr(classifier, "train", lambda *a, **k: pytest.fail("the pinned classifier was retrained"))
    for meta, m in metas.items():
        data = DataConfig(name=m["dataset"], root=str(shared_data))
        clf = classifier.load_or_train(data, cache, m["seed"])
        assert clf.sha256 == m["sha256"] and clf.accuracy == m["accuracy"]
        images, labels = classifier.real_split(data, train=False, limit=1000, seed=0)
        assert np.mean(clf.run(images)[0].argmax(1) == labels) > m["accuracy"] - 0.03
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    pin_classifiers(cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before


def test_an_ordering_on_fid_classifier_is_open_within_the_spread_of_the_classifiers_that_scored_it(
        tmp_path, monkeypatch):
    import bench.reproduce_f2u as f2u
    args = Namespace(datasets=["mnist"], splits=["non_ovl"], quick=False, root=Path("/data"))
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    for rule, fid in (("f2a", 25.3), ("f2u", 30.0), ("mdgan", 215.4), ("gman", 246.7)):
        store_non_ovl(results, rule, 0, fid, classifier={"accuracy": 0.9922})

    def verdicts():
        row = next(line for line in f2u.orderings(results, args).splitlines() if "fid_classifier" in line)
        return cells_of(row)[4:7]

    assert verdicts() == ["holds", "holds", "holds"]                    # one classifier: the means decide
    store_non_ovl(results, "f2u", 0, 30.0, classifier={"accuracy": 0.9917})
    monkeypatch.setattr(f2u, "widest", lambda dataset: None)
    assert verdicts() == ["holds (open: different classifiers, their spread not measured)"] * 3
    monkeypatch.setattr(f2u, "widest", lambda dataset: 0.333)
    assert verdicts() == ["holds (open: within the classifiers' spread, 33.3%)", "holds", "holds"]   # 30.0 < 25.3 x 1.333
    monkeypatch.setattr(f2u, "widest", lambda dataset: 0.15)
    assert verdicts() == ["holds", "holds", "holds"]


def test_a_convergence_table_names_every_classifier_behind_its_curves_including_a_continued_cells(tmp_path):
    """The classifiers of a table's curves: each cell's evaluation, its points', and the shorter
    cell's it continued (its early points were scored where that one ran); more than one: a note."""
    from bench.convergence import curve_cell, scored_by, table, table_cells
    root = Path("/data")
    args = Namespace(datasets=["mnist"], splits=["non_ovl"], rules=["f2a"], seeds=[0], every=1500, quick=False,
                     root=root)
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    point = {"fid_classifier": 30.0, "classes": 10, "confident": 10}
    short, full = curve_cell("mnist", "f2u", 1500, False, steps=6000), curve_cell("mnist", "f2u", 1500, False)
    results.add(short.name, {"config": resolved(short, root), "step": 6000, "curve": {"6000": point},
                             "classifier": {"accuracy": 0.9917}})
    results.add(full.name, {"config": resolved(full, root), "step": 15000, "continued": short.name,
                            "curve": {"6000": point, "15000": {**point, "classifier": "0.9923 (7cf55f1d)"}},
                            "classifier": {"accuracy": 0.9923, "sha256": "7cf55f1d" + "0" * 56}})
    cells = table_cells(results, args, "mnist", "non_ovl")
    assert scored_by(results, cells, root) == ["0.9917", "0.9923 (7cf55f1d)"]
    f2a = curve_cell("mnist", "f2a", 1500, False)
    results.add(f2a.name, {"config": resolved(f2a, root), "step": 15000, "curve": {"15000": point},
                           "classifier": {"accuracy": 0.9922}})
    assert scored_by(results, cells, root) == ["0.9917", "0.9922", "0.9923 (7cf55f1d)"]
    assert "- mnist: its cells were scored by 3 domain classifiers" in table(results, cells, args, "non_ovl")


def test_a_table_gets_a_classifier_note_per_dataset_whose_cells_more_than_one_classifier_scored():
    from bench.yardstick import mixed_notes

    def result(dataset, accuracy):
        return {"config": {"data": {"name": dataset}}, "classifier": {"accuracy": accuracy}}

    assert mixed_notes([result("mnist", 0.9922), result("mnist", 0.9922), result("fashion_mnist", 0.9081)]) == []
    notes = mixed_notes([result("mnist", 0.9922), result("mnist", 0.9917), result("fashion_mnist", 0.9081),
                         {"config": {"data": {"name": "fashion_mnist"}}}])       # one that does not say: no name
    assert len(notes) == 1 and notes[0].startswith("- mnist: its cells were scored by 2 domain classifiers "
                                                   "(test accuracy 0.9917, 0.9922)")


def test_an_ordering_between_rules_whose_seeds_overlap_is_open(tmp_path):
    from bench.reproduce_f2u import orderings
    args = Namespace(datasets=["mnist"], splits=["non_ovl"], quick=False, root=Path("/data"))
    results = Results(tmp_path / "results.json", tmp_path / "runs")
    for rule, seed, fid in (("f2a", 0, 17.0), ("f2a", 1, 18.2), ("f2u", 0, 17.5), ("mdgan", 0, 387.4),
                            ("gman", 0, 432.5)):
        store_non_ovl(results, rule, seed, fid)

    def verdicts():
        row = next(line for line in orderings(results, args).splitlines() if "fid_classifier" in line)
        return cells_of(row)[4:7]

    assert verdicts() == ["does not hold (open: seeds overlap)", "holds", "holds"]     # 17.6 > 17.5, within 17.0-18.2
    store_non_ovl(results, "f2u", 0, 18.3)
    assert verdicts() == ["holds", "holds", "holds"]


def test_each_baselines_best_setting_is_trained_at_the_budget_and_tabled_beside_the_tables_paper_config_cells(tmp_path):
    """The MNIST sweep's best setting per rule becomes a 15,000-step Non-OVL curve cell of its own (seed 0,
    checkpointed like the table's curves, the setting's overrides last); the paper configs' row is the F2U
    table's own cells, never retrained here, so only the best settings' cells (and those tried at the budget alone)
    are named as not run; a second seed joins its row once stored."""
    from bench.baselines import SWEEP, budget_cell, budget_table, cell
    root = Path("/data")
    results = Results(tmp_path / "results.json", tmp_path / "runs")

    def store(c: Cell, fid: float, recall: float = 0.4, inception: float | None = None, curve: dict | None = None) -> None:
        results.add(c.name, {"config": resolved(c, root), "step": c.steps, **({"curve": curve} if curve else {}),
                             "inception_fid": {"value": {"0": inception} if inception else {}},
                             "generators": {"0": {"fid_classifier": fid, "classes_covered": 9, "confident_classes_covered": 3,
                                                  "precision": 0.3, "recall": recall}}})
    for rule, best_label in (("mdgan", "swap every 10"), ("gman", "batchnorm Ds")):
        for label, norm, overrides in SWEEP[rule]:
            store(cell(rule, norm, overrides, 0, False), 150.0 if label == best_label else 900.0)
    paper = cells("fashion_mnist", "non_ovl", "mdgan", False)
    assert budget_cell("fashion_mnist", "mdgan", "spectral", (), False) == paper[0]
    swap = budget_cell("fashion_mnist", "mdgan", "spectral", ("algo.swap_every=10",), False)
    assert (swap.steps, swap.seed, swap.name) == (15000, 0, "fashion_mnist_non_ovl_mdgan_spectral_swap_every10-curve_s0_15000")
    assert swap.overrides(root)[-2:] == ["run.checkpoint_every=1500", "algo.swap_every=10"]
    gman = budget_cell("fashion_mnist", "gman", "batch", (), False)
    assert gman.name == "fashion_mnist_non_ovl_gman_batch_curve_s0_15000" and "model.d_norm=batch" in gman.overrides(root)
    store(paper[0], 387.4, recall=0.005, inception=101.68)
    store(swap, 120.0, inception=60.5)
    text, missing, _ = budget_table(results, root, False)
    assert "| fashion_mnist | mdgan | swap every 100 (paper configs) | 1 | 387.4 | 9.0 | 3.0 | 0.30 | 0.01 | 101.68 | 56.09 |" in text
    assert "| fashion_mnist | mdgan | swap every 10 | 1 | 120.0 | 9.0 | 3.0 | 0.30 | 0.40 | 60.50 | 56.09 |" in text
    assert "| fashion_mnist | gman | batchnorm Ds | not run | | | | | | | 56.79 |" in text
    assert ("- fashion_mnist mdgan, swap every 100 (paper configs): collapsed (recall < 0.01 on every seed); its best "
            "checkpoint on the curve: seed 0, no curve.") in text
    assert "swap every 10: collapsed" not in text
    assert swap.name not in missing and gman.name in missing
    assert not any(c.name in missing for c in paper)
    # a late collapse shows where its curve was best: the lowest fid_classifier, not the last point
    point = {"fid_classifier": 1237.4, "classes": 1, "recall": 0.0}
    store(gman, 1237.4, recall=0.0, curve={"1500": {**point, "fid_classifier": 300.0, "classes": 7, "recall": 0.05},
                                           "4500": {**point, "fid_classifier": 210.46, "classes": 9, "recall": 0.21},
                                           "15000": point})
    text, missing, _ = budget_table(results, root, False)
    assert ("- fashion_mnist gman, batchnorm Ds: collapsed (recall < 0.01 on every seed); its best checkpoint on the curve: "
            "seed 0, step 4,500: fid_classifier 210.5, 9 classes, recall 0.21.") in text
    assert gman.name not in missing
    # a setting tried only at the budget, where the sweep's choice did not hold, has a row on that dataset alone
    layer = budget_cell("fashion_mnist", "gman", "layer", (), False)
    assert layer.name == "fashion_mnist_non_ovl_gman_layer_curve_s0_15000" and layer.name in missing
    assert "| fashion_mnist | gman | layernorm Ds | not run | | | | | | | 56.79 |" in text
    assert "| mnist | gman | layernorm Ds |" not in text
    store(layer, 140.0, inception=52.0, curve={"6000": {**point, "fid_classifier": 130.0, "classes": 8, "recall": 0.45},
                                               "15000": {**point, "fid_classifier": 140.0, "classes": 9, "recall": 0.4}})
    text, missing, _ = budget_table(results, root, False)
    assert "| fashion_mnist | gman | layernorm Ds | 1 | 140.0 | 9.0 | 3.0 | 0.30 | 0.40 | 52.00 | 56.79 |" in text
    assert ("- fashion_mnist gman, layernorm Ds (tried at the budget alone): its best checkpoint on the curve: seed 0, "
            "step 6,000: fid_classifier 130.0, 8 classes, recall 0.45.") in text
    assert layer.name not in missing
    # a row short of 8 classes that is not collapsed says which classes it draws too rarely, whether at all, and
    # GMAN*'s lambda at the end
    thin = {"classes_covered": 6, "class_histogram": [0.2, 0.015, 0.2, 0.15, 0.15, 0.039, 0.2, 0.034, 0.005, 0.007],
            "recall_per_class": [0.5, 0.49, 0.5, 0.5, 0.5, 0.37, 0.5, 0.85, None, 0.28], "confident_fraction": 0.136}
    store(layer, 237.3, inception=46.7, curve={"15000": {**point, "fid_classifier": 237.3, "classes": 6, "recall": 0.51}})
    stored = results.cells[layer.name]
    results.add(layer.name, {**stored, "algo": "gman", "lambda_end": 0.0,
                             "generators": {"0": {**stored["generators"]["0"], **thin}}})
    text, _, _ = budget_table(results, root, False)
    assert ("- fashion_mnist gman, layernorm Ds (tried at the budget alone): its best checkpoint on the curve: seed 0, "
            "step 15,000: fid_classifier 237.3, 6 classes, recall 0.51. Under 8 classes by argmax: seed 0, classes 1, 5, 7, "
            "8, 9 under the 1/(2C) line (0.015, 0.039, 0.034, 0.005, 0.007 of the samples), recall within them 0.49, 0.37, "
            "0.85, -, 0.28; 13.6 % of the samples confident; lambda ends at 0.00.") in text
    # a second seed (--seeds 1) joins its setting's row once stored; a seed 1 not run is not asked for
    swap1 = budget_cell("fashion_mnist", "mdgan", "spectral", ("algo.swap_every=10",), False, seed=1)
    assert swap1.name == "fashion_mnist_non_ovl_mdgan_spectral_swap_every10-curve_s1_15000"
    assert "train.seed=1" in swap1.overrides(root) and swap1.name not in missing
    store(swap1, 110.0, inception=58.5, curve={"15000": {**point, "fid_classifier": 110.0, "classes": 10, "recall": 0.4}})
    text, missing, _ = budget_table(results, root, False)
    assert ("| fashion_mnist | mdgan | swap every 10 | 2 | 115.0 (110.0-120.0) | 9.0 (9.0-9.0) | 3.0 (3.0-3.0) | 0.30 (0.30-0.30) "
            "| 0.40 (0.40-0.40) | 59.50 (58.50-60.50) | 56.09 |") in text
    assert budget_cell("fashion_mnist", "mdgan", "spectral", (), False, seed=1) == paper[1]
