"""Why the rule's weights on the fake term help on MNIST and hurt the digits default job: the same
job on MNIST with whole shards and on MNIST with shards as small as a digits client's, each with
``algo.fake_weights`` uniform and ``rule``, at the default job's steps and trained 3 times longer.

    python bench/fake_weights_shard_size.py              # train and evaluate what is missing, into BENCHMARKS.md
    python bench/fake_weights_shard_size.py --report     # only rebuild the section from bench/named_runs.json
    python bench/fake_weights_shard_size.py --only 'shards_mnist290_*_s0'   # some runs only

Every run is the default job (``launch/run.sh``: F2A, Non-OVL, 5 clients, 600 steps) with the data
overridden: MNIST at 28 px with whole shards (about 12,000 images per client), and the same with
each client capped at a digits client's shard size (``partition.samples_per_client``), and the
capped shards at the digits job's 16 px (the default job's model size, so only the images differ
from the digits runs: MNIST's 28 x 28 strokes downscaled against 8 x 8 digits upscaled). The digits
pairs, at both budgets, are bench/fake_weights_default_job.py's. Each run is scored by
``python -m ddgan.eval --run RUN`` (the averaged generator) against its own dataset's classifier, so
fid_classifier compares the two weightings within a setting, not across datasets.
"""
from __future__ import annotations

import os
import shlex
import statistics
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import ROOT, SHARED_DATA  # noqa: E402
from bench.co_hosted_quality import per_seed  # noqa: E402
from bench.fake_weights_default_job import LONGER, LONGER_QUICK, RULE, UNIFORM  # noqa: E402
from bench.fake_weights_default_job import job as digits_job  # noqa: E402
from bench.lambda_refresh import lambdas  # noqa: E402
from bench.named_runs import NamedRun, NamedRuns, not_run, section_main  # noqa: E402

SEEDS = (0, 1)
SMALL = 290            # images per client: about a digits client's shard in the default job (274-300)
MNIST = ("data.name=mnist", f"data.root={os.path.relpath(SHARED_DATA, ROOT)}")
CAP = f"partition.samples_per_client={SMALL}"
# setting -> (its run directories' infix, its overrides of the default job); None: the digits job's own runs
SETTINGS = {
    "digits, 16 px, about 290 per client (the default job)": None,
    "MNIST, 28 px, whole shards": ("mnist", (*MNIST, "data.image_size=28")),
    f"MNIST, 28 px, {SMALL} per client": (f"mnist{SMALL}", (*MNIST, "data.image_size=28", CAP)),
    f"MNIST, 16 px, {SMALL} per client": (f"mnist16px{SMALL}", (*MNIST, "data.image_size=16", CAP)),
}
WEIGHTS = {UNIFORM: "uniform", RULE: "rule"}


def job(setting: str, weights: str, seed: int, quick: Path | None = None, steps: int | None = None) -> NamedRun:
    """The default job on ``setting``'s data with ``weights`` on the fake term: the digits run of the
    same weights, seed and ``steps`` (trained longer) with the setting's data, in a directory of its own."""
    run = digits_job(weights, seed, quick, steps)
    if SETTINGS[setting] is None:
        return run
    infix, data = SETTINGS[setting]
    name = f"shards_{infix}_{WEIGHTS[weights]}_s{seed}" + (f"_{steps}" if steps else "")
    return replace(run, dir=Path(run.dir).with_name(name), overrides=(*run.overrides, *data))


def budget(runs: NamedRuns, seeds: tuple[int, ...], quick: Path | None, steps: int | None) -> tuple[list, list, dict]:
    """The table and notes of one budget (``steps``: None, the default job's), and the runs it lacks."""
    jobs = {f"{setting}: {weights}": partial(job, setting, weights, quick=quick, steps=steps)
            for setting in SETTINGS for weights in WEIGHTS}
    entries, got, shared, table = per_seed(runs, jobs, seeds, "setting: fake weights")
    notes = []
    for setting in SETTINGS:
        both = [s for s in seeds if got[f"{setting}: {UNIFORM}", s] and got[f"{setting}: {RULE}", s]]
        if not both:
            continue
        pairs = [(got[f"{setting}: {UNIFORM}", s], got[f"{setting}: {RULE}", s]) for s in both]
        change = [r["fid_classifier"] - u["fid_classifier"] for u, r in pairs]
        lam = {w: [v[max(v)] for s in both if (v := lambdas(entries[f"{setting}: {w}", s]))] for w in WEIGHTS}
        lams = ("; lambda at the end " + ", ".join(f"{WEIGHTS[w]} {statistics.mean(v):.1f}" for w, v in lam.items())
                if all(lam.values()) else "")
        notes.append(f"- {setting}, {shared['steps']:,} steps: rule minus uniform, fid_classifier " + ", ".join(
            f"{c:+.1f} (seed {s})" for c, s in zip(change, both)) + "; recall " + ", ".join(
            f"{u['recall']:.2f} -> {r['recall']:.2f}" for u, r in pairs) + lams + ".")
    missing = [(jobs[label](s), ("averaged",)) for label in jobs for s in seeds if entries[label, s] is None]
    return table, notes, {"missing": missing, **shared}


def section(runs: NamedRuns, seeds: tuple[int, ...], quick: Path | None) -> str:
    longer = LONGER_QUICK if quick else LONGER
    table, notes, shared = budget(runs, seeds, quick, None)
    long_table, long_notes, long_shared = budget(runs, seeds[:1], quick, longer)
    examples = [job(setting, RULE, seeds[0], quick) for setting in SETTINGS if SETTINGS[setting] is not None]
    return "\n".join([
        f"The default job (`launch/run.sh`: F2A, Non-OVL, {shared['k']} clients, {shared['steps']} steps) on MNIST, "
        f"per seed, with `algo.fake_weights` uniform and `rule`, scored by `python -m ddgan.eval --run RUN` (averaged "
        f"generator, {shared['n']:,} samples, each against its own dataset's classifier, so compare within a "
        "setting): classes covered (confidently), fid_classifier.", "", *table, "",
        f"Trained longer, {longer:,} steps:", "", *long_table,
        *not_run("fake_weights_shard_size.py", shared["missing"] + long_shared["missing"]), "", *notes, *long_notes, "",
        f"Runs with rule weights, seed {seeds[0]}: " + ", ".join(f"`{shlex.join(run.train_command())}`"
                                                               for run in examples)
        + "; the uniform ones leave out `algo.fake_weights=rule`, the longer ones add `train.steps`; each evaluated "
        "by `python -m ddgan.eval --run RUN`. The digits runs: bench/fake_weights_default_job.py's."])


def main() -> int:
    return section_main(__doc__, "fake_weights_shard_size", "The rule's weights on the fake term: shard size",
                        section, SEEDS)


if __name__ == "__main__":
    sys.exit(main())
