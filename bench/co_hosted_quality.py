"""The default job with its 5 clients co-hosted on one rank against one client per rank: does
co-hosting change what G learns beyond what a seed changes?

    python bench/co_hosted_quality.py              # train and evaluate what is missing, into BENCHMARKS.md
    python bench/co_hosted_quality.py --report     # only rebuild the section from bench/named_runs.json
    python bench/co_hosted_quality.py --quick      # tiny runs in a temporary directory, printed only

The default job (``launch/run.sh``: F2A on digits, 5 clients, 600 steps) per seed, once as 5 ranks
and once with ``train.client_ranks=1`` (one process, its discriminators one after another on the
CPU), each a named run (bench/named_runs.py: a run already there with the same config is reused),
scored by ``python -m ddgan.eval --run RUN`` (the averaged generator). In float64 the two layouts
give the same generator update (tests/test_equivalence.py); in float32 with other thread counts the
sums round differently, and a GAN amplifies that like a change of seed. The claim is therefore
statistical: the co-hosted runs fall inside the spread of the 5-rank runs over seeds.
"""
from __future__ import annotations

import shlex
import statistics
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.averaged_generator import QUICK_JOB, cell, generator  # noqa: E402
from bench.named_runs import NamedRun, NamedRuns, not_run, section_main, shown  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
BASE, HOSTED = "one client per rank", "every client on one rank"
LAYOUTS = {BASE: "refresh", HOSTED: "cohosted"}             # layout -> its run directories' prefix


def job(layout: str, seed: int, quick: Path | None = None) -> NamedRun:
    """The default job as it is configured (seeds 0 and 1 of the 5-rank layout are
    bench/lambda_refresh.py's refresh-20 runs: the same config)."""
    prefix = LAYOUTS[layout]
    where = quick / f"{prefix}_s{seed}" if quick else Path(f"runs/{prefix}_s{seed}")
    hosts = ("train.client_ranks=1",) if layout == HOSTED else ()
    return NamedRun(where, (f"train.seed={seed}", "train.g_ema=0.999", "algo.lambda_refresh=20", *hosts,
                            *(QUICK_JOB if quick else ())))


def per_seed(runs: NamedRuns, jobs: dict, seeds: tuple[int, ...], column: str) -> tuple[dict, dict, dict, list[str]]:
    """The averaged generator's evaluation of each ``jobs[label](seed)`` run: the entries, their
    generators by (label, seed), what the runs share (clients, steps, samples) and the table's
    lines, the labels in the first ``column``."""
    entries = {(label, s): runs.get(jobs[label](s), ("averaged",)) for label in jobs for s in seeds}
    got = {key: generator(e, "averaged") for key, e in entries.items()}
    shared = {"n": next((g["n"] for g in got.values() if g), runs.n),
              "steps": next((e["config"]["train"]["steps"] for e in entries.values() if e), None) or "-",
              "k": next((e["config"]["partition"]["clients"] for e in entries.values() if e), "-")}
    lines = [f"| {column} | " + " | ".join(f"seed {s}" for s in seeds) + " | fid_classifier: mean (range) |",
             "| --- |" + " --- |" * (len(seeds) + 1)]
    for label in jobs:
        gs = [got[label, s] for s in seeds]
        fids = [g["fid_classifier"] for g in gs if g]
        summary = f"{statistics.mean(fids):.1f} ({min(fids):.1f}-{max(fids):.1f})" if len(fids) == len(seeds) else "-"
        lines.append(f"| {label} | " + " | ".join(cell(g) for g in gs) + f" | {summary} |")
    return entries, got, shared, lines


def section(runs: NamedRuns, seeds: tuple[int, ...], quick: Path | None) -> str:
    entries, got, shared, table = per_seed(runs, {layout: partial(job, layout, quick=quick) for layout in LAYOUTS},
                                           seeds, "layout")
    k, n = shared["k"], shared["n"]
    lines = [f"The default job (`launch/run.sh`: F2A on digits, {k} clients, {shared['steps']} steps) per seed, as {k} "
             f"ranks and with the {k} clients on one rank (`train.client_ranks=1`), scored by `python -m ddgan.eval --run RUN` "
             f"(averaged generator, {n:,} samples): classes covered (confidently), fid_classifier.", "", *table]
    notes = []
    base, hosted = [got[BASE, s] for s in seeds], [got[HOSTED, s] for s in seeds]
    if all(base) and all(hosted):
        lo, hi = min(g["fid_classifier"] for g in base), max(g["fid_classifier"] for g in base)
        inside = sum(lo <= g["fid_classifier"] <= hi for g in hosted)
        classes = min(g["classes_covered"] for g in base), min(g["confident_classes_covered"] for g in base)
        fewer = [s for s, g in zip(seeds, hosted) if (g["classes_covered"], g["confident_classes_covered"]) < classes]
        notes.append(f"- fid_classifier: {inside} of {len(seeds)} co-hosted runs inside the range of one client per rank "
                     f"({lo:.1f}-{hi:.1f}); means {statistics.mean(g['fid_classifier'] for g in hosted):.1f} co-hosted "
                     f"against {statistics.mean(g['fid_classifier'] for g in base):.1f}.")
        notes.append("- Classes: " + (f"co-hosted seed {', '.join(map(str, fewer))} covers fewer than every run of one client per rank"
                                      if fewer else "no co-hosted run covers fewer (confidently) than the worst run of one client per rank")
                     + f" ({classes[0]} ({classes[1]}))." + (" Its sample grid: "
                     + ", ".join(f"{shown(job(HOSTED, s, quick).dir)}/eval/samples_node_0.png"
                                 for s in fewer) + "." if fewer else ""))
    missing = [(job(layout, s, quick), ("averaged",)) for layout in LAYOUTS for s in seeds if entries[layout, s] is None]
    commands = [f"`{shlex.join(job(layout, s, quick).train_command())}`" for layout in LAYOUTS for s in seeds]
    return "\n".join([*lines, *not_run("co_hosted_quality.py", missing), "", *notes, "",
                      f"Runs: {', '.join(commands)}; each evaluated by `python -m ddgan.eval --run RUN`."])


def main() -> int:
    return section_main(__doc__, "co_hosted_quality", "Co-hosted clients: the default job's quality", section, SEEDS)


if __name__ == "__main__":
    sys.exit(main())
