"""Why the rule's weights on the fake term help on MNIST and hurt the digits default job: the same
job on MNIST with whole shards, on MNIST with shards as small as a digits client's, and on digits at
MNIST's image size, each with ``algo.fake_weights`` uniform and ``rule``.

    python bench/fake_weights_shard_size.py              # train and evaluate what is missing, into BENCHMARKS.md
    python bench/fake_weights_shard_size.py --report     # only rebuild the section from bench/named_runs.json
    python bench/fake_weights_shard_size.py --only 'shards_mnist290_*_s0'   # some runs only

Every run is the default job (``launch/run.sh``: F2A, Non-OVL, 5 clients, 600 steps) with the data
overridden, so the settings differ from the digits job in one respect each: the dataset and its
image size (MNIST, whole shards of about 12,000 images), the dataset at a digits client's shard size
(``partition.samples_per_client``), or the image size alone (digits upsampled to 28 px). The digits
pair is bench/fake_weights_default_job.py's. Each run is scored by ``python -m ddgan.eval --run RUN``
(the averaged generator) against its own dataset's classifier, so fid_classifier compares the two
weightings within a setting, not across datasets.
"""
from __future__ import annotations

import os
import shlex
import statistics
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.averaged_generator import QUICK_JOB  # noqa: E402
from bench.cells import ROOT, SHARED_DATA  # noqa: E402
from bench.co_hosted_quality import per_seed  # noqa: E402
from bench.fake_weights_default_job import RULE, UNIFORM  # noqa: E402
from bench.fake_weights_default_job import job as digits_job  # noqa: E402
from bench.named_runs import NamedRun, NamedRuns, not_run, section_main  # noqa: E402

SEEDS = (0, 1)
SMALL = 290            # images per client: about a digits client's shard in the default job (274-300)
MNIST = ("data.name=mnist", f"data.root={os.path.relpath(SHARED_DATA, ROOT)}", "data.image_size=28")
# setting -> (its run directories' infix, its overrides of the default job); None: the digits job's own runs
SETTINGS = {
    "digits, 16 px, about 290 per client (the default job)": None,
    "MNIST, 28 px, whole shards": ("mnist", MNIST),
    f"MNIST, 28 px, {SMALL} per client": (f"mnist{SMALL}", (*MNIST, f"partition.samples_per_client={SMALL}")),
    "digits, 28 px, about 290 per client": ("digits28", ("data.image_size=28",)),
}
WEIGHTS = {UNIFORM: "uniform", RULE: "rule"}


def job(setting: str, weights: str, seed: int, quick: Path | None = None) -> NamedRun:
    """The default job on ``setting``'s data with ``weights`` on the fake term."""
    if SETTINGS[setting] is None:
        return digits_job(weights, seed, quick)
    infix, data = SETTINGS[setting]
    name = f"shards_{infix}_{WEIGHTS[weights]}_s{seed}"
    rule = ("algo.fake_weights=rule",) if weights == RULE else ()
    return NamedRun(quick / name if quick else Path("runs") / name,
                    (f"train.seed={seed}", "train.g_ema=0.999", "algo.lambda_refresh=20", *data, *rule,
                     *(QUICK_JOB if quick else ())))


def section(runs: NamedRuns, seeds: tuple[int, ...], quick: Path | None) -> str:
    jobs = {f"{setting}: {weights}": partial(job, setting, weights, quick=quick)
            for setting in SETTINGS for weights in WEIGHTS}
    entries, got, shared, table = per_seed(runs, jobs, seeds, "setting: fake weights")
    lines = [f"The default job (`launch/run.sh`: F2A, Non-OVL, {shared['k']} clients, {shared['steps']} steps) on other "
             f"data, per seed, with `algo.fake_weights` uniform and `rule`, scored by `python -m ddgan.eval --run RUN` "
             f"(averaged generator, {shared['n']:,} samples, each against its own dataset's classifier): classes "
             "covered (confidently), fid_classifier.", "", *table, ""]
    for setting in SETTINGS:
        pairs = [(got[f"{setting}: {UNIFORM}", s], got[f"{setting}: {RULE}", s]) for s in seeds]
        if not all(u and r for u, r in pairs):
            continue
        change = [r["fid_classifier"] - u["fid_classifier"] for u, r in pairs]
        ends = [entries[f"{setting}: {w}", s].get("lambda", {}) for w in WEIGHTS for s in seeds]
        lam = [v[max(v, key=int)] for v in ends if v]
        lams = f"; lambda at the end {min(lam):.1f}-{max(lam):.1f} over its runs" if lam else ""
        lines.append(f"- {setting}: rule minus uniform, fid_classifier " + ", ".join(
            f"{c:+.1f} (seed {s})" for c, s in zip(change, seeds)) + f", mean {statistics.mean(change):+.1f}; recall "
            + ", ".join(f"{u['recall']:.2f} -> {r['recall']:.2f}" for u, r in pairs) + lams + ".")
    missing = [(jobs[label](s), ("averaged",)) for label in jobs for s in seeds if entries[label, s] is None]
    examples = [job(setting, RULE, seeds[0], quick) for setting in SETTINGS if SETTINGS[setting] is not None]
    return "\n".join([*lines, *not_run("fake_weights_shard_size.py", missing), "",
                      "Runs with rule weights, seed " + str(seeds[0]) + ": " + ", ".join(
                          f"`{shlex.join(run.train_command())}`" for run in examples) + "; the uniform ones leave out "
                      "`algo.fake_weights=rule`; each evaluated by `python -m ddgan.eval --run RUN`."])


def main() -> int:
    return section_main(__doc__, "fake_weights_shard_size", "The rule's weights on the fake term: dataset, shard size, "
                        "image size", section, SEEDS)


if __name__ == "__main__":
    sys.exit(main())
