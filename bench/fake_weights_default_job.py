"""The default job with the rule's weights on each discriminator's fake term against uniform ones,
over seeds: what ``algo.fake_weights: rule`` does where a user first meets ddgan.

    python bench/fake_weights_default_job.py              # train and evaluate what is missing, into BENCHMARKS.md
    python bench/fake_weights_default_job.py --report     # only rebuild the section from bench/named_runs.json
    python bench/fake_weights_default_job.py --quick      # tiny runs in a temporary directory, printed only

The default job (``launch/run.sh``: F2A on digits, Non-OVL, 5 clients, 600 steps) per seed, once as
configured (the uniform fake term: bench/co_hosted_quality.py's 5-rank runs, the same config) and
once with ``algo.fake_weights=rule``, each a named run scored by ``python -m ddgan.eval --run RUN``
(the averaged generator). A pair shares its seed, so its data order and initial weights: the rule's
weights are the one difference. bench/fake_weights.py measures the same option on MNIST.
"""
from __future__ import annotations

import shlex
import statistics
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.co_hosted_quality import BASE, per_seed  # noqa: E402
from bench.co_hosted_quality import job as default_job  # noqa: E402
from bench.named_runs import NamedRun, NamedRuns, not_run, section_main, shown  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
UNIFORM, RULE = "uniform (the default)", "rule"
LONGER, LONGER_QUICK = 1800, 40          # steps of the longer pair (seed 0)
# steps of the longest pair (seed 0): whether the rule's slower start is repaid on digits, as on MNIST by 1,800
LONGEST, LONGEST_QUICK = 3600, 60


def job(weights: str, seed: int, quick: Path | None = None, steps: int | None = None) -> NamedRun:
    """The default job with ``seed`` and ``weights``; ``steps``: trained longer, in a directory of its own."""
    run = default_job(BASE, seed, quick)
    if weights == RULE:
        run = replace(run, dir=Path(run.dir).with_name(f"fakes_rule_s{seed}"),
                      overrides=(*run.overrides, "algo.fake_weights=rule"))
    if steps:
        run = replace(run, dir=Path(run.dir).with_name(f"{Path(run.dir).name}_{steps}"),
                      overrides=(*run.overrides, f"train.steps={steps}"))
    return run


def section(runs: NamedRuns, seeds: tuple[int, ...], quick: Path | None) -> str:
    jobs = {weights: partial(job, weights, quick=quick) for weights in (UNIFORM, RULE)}
    entries, got, shared, table = per_seed(runs, jobs, seeds, "fake weights")
    lines = [f"The default job (`launch/run.sh`: F2A on digits, {shared['k']} clients, {shared['steps']} steps) per "
             f"seed, with `algo.fake_weights` uniform (as configured) and `rule`, scored by "
             f"`python -m ddgan.eval --run RUN` (averaged generator, {shared['n']:,} samples): classes covered "
             "(confidently), fid_classifier.", "", *table]
    notes = []
    pairs = [(got[UNIFORM, s], got[RULE, s]) for s in seeds]
    if all(u and r for u, r in pairs):
        lower = sum(r["fid_classifier"] < u["fid_classifier"] for u, r in pairs)
        notes.append(f"- fid_classifier: rule below uniform in {lower} of {len(seeds)} seeds; mean change "
                     f"{statistics.mean(r['fid_classifier'] - u['fid_classifier'] for u, r in pairs):+.1f}.")
        worst = {w: min((got[w, s]["classes_covered"], got[w, s]["confident_classes_covered"]) for s in seeds)
                 for w in jobs}
        notes.append("- Fewest classes over the seeds (confidently): " + ", ".join(
            f"{w} {c} ({confident})" for w, (c, confident) in worst.items()) + ". Sample grids: "
            + ", ".join(f"{shown(job(RULE, s, quick).dir)}/eval/samples_node_0.png" for s in seeds) + ".")
    missing = [(jobs[w](s), ("averaged",)) for w in jobs for s in seeds if entries[w, s] is None]
    for steps in (LONGER_QUICK, LONGEST_QUICK) if quick else (LONGER, LONGEST):
        long_jobs = {weights: partial(job, weights, quick=quick, steps=steps) for weights in (UNIFORM, RULE)}
        long_entries, long_got, _, long_table = per_seed(runs, long_jobs, seeds[:1], "fake weights")
        lines += ["", f"Trained longer, {steps:,} steps:", "", *long_table]
        missing += [(long_jobs[w](seeds[0]), ("averaged",)) for w in long_jobs if long_entries[w, seeds[0]] is None]
        if (u := long_got[UNIFORM, seeds[0]]) and (r := long_got[RULE, seeds[0]]):
            notes.append(f"- {steps:,} steps: rule minus uniform, fid_classifier "
                         f"{r['fid_classifier'] - u['fid_classifier']:+.1f} (seed {seeds[0]}).")
    commands = [f"`{shlex.join(job(RULE, s, quick).train_command())}`" for s in seeds]
    return "\n".join([*lines, *not_run("fake_weights_default_job.py", missing), "", *notes, "",
                      f"Runs with rule weights: {', '.join(commands)}; each evaluated by "
                      "`python -m ddgan.eval --run RUN`; the longer ones add `train.steps`. The uniform runs at the "
                      "default's steps: bench/co_hosted_quality.py's."])


def main() -> int:
    return section_main(__doc__, "fake_weights_default_job", "The default job with the rule's weights on the fake term",
                        section, SEEDS)


if __name__ == "__main__":
    sys.exit(main())
