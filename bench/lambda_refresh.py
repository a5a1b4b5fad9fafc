"""F2A's lambda on copies of the discriminators refreshed every ``algo.lambda_refresh`` steps,
against every step (1: every client gathers every D every step, as before 0.3.0).

    python bench/lambda_refresh.py              # train and evaluate what is missing, into BENCHMARKS.md
    python bench/lambda_refresh.py --report     # only rebuild the section from the stored results
    python bench/lambda_refresh.py --quick      # tiny runs in a temporary directory, printed only

F2A with lambda on the discriminator side (the default rule), 2 seeds per refresh:

* MNIST Non-OVL, 1,500 steps: refresh 1 is the stored cells of bench/results.json (trained before
  the averaged generator, so they pin ``train.g_ema=0``, and before ``algo.lambda_refresh``: 1);
  refresh 20 is a named run each (bench/named_runs.py), torchrun of the paper config. Both are
  scored on the raw G (``ddgan.eval --raw``), so that only the refresh differs (the section lists
  the settings that differ); the refresh-20 runs' averaged G as well.
* the default job (digits, 600 steps), averaged G: refresh 1 is bench/averaged_generator.py's
  ``train.g_ema=0.999`` runs, refresh 20 a named run each.

A run already in its directory with the same config is reused, never trained again; what is
missing is trained and evaluated (``--only`` picks which), or listed with its command.
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.averaged_generator import MISSING, QUICK_JOB, job  # noqa: E402
from bench.cells import (  # noqa: E402
    CLASSIFIERS,
    QUICK,
    QUICK_CLIENTS,
    ROOT,
    SHARED_DATA,
    STORE,
    Cell,
    Results,
    generator_metrics,
    resolved,
)
from bench.forgiveness import DEFAULT_NORM, LAMBDA  # noqa: E402
from bench.named_runs import DEFAULT_JOB, NamedRun, NamedRuns, arguments, not_run  # noqa: E402
from bench.report import publish_table  # noqa: E402

SEEDS = (0, 1)
MNIST_STEPS = 1500
MNIST_CONFIG = ROOT / "configs" / "paper" / "mnist_non_ovl_f2a.yaml"


def refreshed(quick: Path | None) -> int:
    return 2 if quick else 20          # a quick run has 20 steps


def default_job(refresh: int, seed: int, quick: Path | None) -> NamedRun:
    if refresh == 1:
        return job(0.999, seed, quick)
    where = quick / f"refresh_s{seed}" if quick else Path(f"runs/refresh_s{seed}")
    return NamedRun(where, (f"train.seed={seed}", "train.g_ema=0.999", f"algo.lambda_refresh={refresh}",
                            *(QUICK_JOB if quick else ())))


def mnist_run(seed: int, root: Path, quick: Path | None) -> NamedRun:
    """The refresh-20 MNIST run (--quick: digits, under torchrun all the same)."""
    if quick:
        return NamedRun(quick / f"refresh_torchrun_s{seed}", (f"train.seed={seed}", "train.g_ema=0.999",
                                                             f"algo.lambda_refresh={refreshed(quick)}", *QUICK_JOB),
                        DEFAULT_JOB, "torchrun")
    return NamedRun(Path(f"runs/refresh_mnist_s{seed}"),
                    (f"data.root={os.path.relpath(root, ROOT)}", f"train.seed={seed}", f"train.steps={MNIST_STEPS}",
                     f"run.log_every={MNIST_STEPS // 20}", f"run.sample_every={MNIST_STEPS}",
                     f"run.checkpoint_every={MNIST_STEPS}", "train.g_ema=0.999", "algo.lambda_refresh=20"),
                    MNIST_CONFIG, "torchrun")


def stored_cell(seed: int, quick: Path | None) -> Cell:
    """The refresh-1 cell: forgiveness.py's F2A cell on MNIST (lambda on D's objective), as it trained."""
    then = ("train.g_ema=0", "algo.lambda_refresh=1")
    if quick:
        return Cell("digits", "classes", "f2a", DEFAULT_NORM, seed, 20, "refresh1", (*QUICK, *QUICK_CLIENTS, *then))
    return Cell("mnist", "non_ovl", "f2a", DEFAULT_NORM, seed, MNIST_STEPS, "lam-discriminator",
                (*LAMBDA["lam-discriminator"], *then))


def fmt(g: dict | None) -> str:
    return MISSING if g is None else f"{g['fid_classifier']:.1f}, {g['classes_covered']} ({g['confident_classes_covered']})"


def differences(a: dict, b: dict) -> list[str]:
    """The settings (outside section run) in which config ``b`` differs from ``a``."""
    return [f"{section}.{key} {a[section].get(key, '-')} -> {value}" for section, values in b.items() if section != "run"
            for key, value in values.items() if a.get(section, {}).get(key) != value]


def lambdas(entry: dict | None) -> dict[int, float]:
    return {int(s): v for s, v in (entry or {}).get("lambda", {}).items()}


def section(runs: NamedRuns, cells: Results, root: Path, quick: Path | None) -> str:
    seeds, fast = ((0,) if quick else SEEDS), refreshed(quick)
    columns = [(r, s) for r in (1, fast) for s in seeds]
    stored = {s: cells.run(stored_cell(s, quick), root, n=runs.n) if runs.train else cells.get(stored_cell(s, quick), root)
              for s in seeds}
    mnist = {s: runs.get(mnist_run(s, root, quick), ("raw", "averaged")) for s in seeds}
    job_runs = {(r, s): default_job(r, s, quick) for r, s in columns}
    jobs = {key: runs.get(run, ("averaged",)) for key, run in job_runs.items()}

    def named(entry, kind):
        return entry["evals"][kind]["generators"]["0"] if entry else None

    data = "digits (--quick), 20 steps" if quick else f"MNIST Non-OVL, {MNIST_STEPS:,} steps"
    steps = next((e["config"]["train"]["steps"] for e in jobs.values() if e), None)
    lines = ["| run | " + " | ".join(f"refresh {r}, seed {s}" for r, s in columns) + " |",
             "| --- |" + " --- |" * len(columns),
             f"| {data}, raw G (refresh 1: the stored cells of bench/results.json) | "
             + " | ".join(fmt(generator_metrics(stored[s]) if stored[s] else None) if r == 1 else fmt(named(mnist[s], "raw"))
                          for r, s in columns) + " |",
             f"| {data}, averaged G | " + " | ".join("- (trained without one)" if r == 1 else fmt(named(mnist[s], "averaged"))
                                                     for r, s in columns) + " |",
             f"| default job (digits, {steps or '-'} steps), averaged G | "
             + " | ".join(fmt(named(jobs[r, s], "averaged")) for r, s in columns) + " |"]
    n = next((g["n"] for e in [*mnist.values(), *jobs.values()] if e for k in e["evals"]
              for g in e["evals"][k]["generators"].values()), runs.n)
    head = [f"F2A with lambda on the discriminator side (the default rule), `algo.lambda_refresh` {fast} against 1 "
            f"(every client gathers every D every step, as before 0.3.0). Cells: fid_classifier of {n:,} samples, "
            "classes covered (confidently).", ""]
    cell_config, run_config = resolved(stored_cell(seeds[0], quick), root), mnist_run(seeds[0], root, quick).resolved()
    diff = differences(cell_config, run_config)
    head.append(f"The refresh-{fast} {data.split(',')[0]} runs differ from the stored cells in "
                f"{', '.join(f'`{d}`' for d in diff) or 'nothing'}"
                + (" (the raw row scores the trained G, so the average does not enter it)." if any(
                    d.startswith("train.g_ema") for d in diff) else "."))
    notes = []
    one = [generator_metrics(stored[s]) for s in seeds if stored[s]]
    twenty = [named(mnist[s], "raw") for s in seeds if mnist[s]]
    if len(one) == len(twenty) == len(seeds):
        lo, hi = min(g["fid_classifier"] for g in one), max(g["fid_classifier"] for g in one)
        inside = sum(lo <= g["fid_classifier"] <= hi for g in twenty)
        scores = " and ".join(f"{g['fid_classifier']:.1f}" for g in twenty)
        notes.append(f"- {data.split(',')[0]}, raw G: refresh {fast} scores {scores}, {inside} of {len(twenty)} inside "
                     f"the refresh-1 seeds' range ({lo:.1f}-{hi:.1f}); classes (confidently) per seed, refresh {fast} "
                     "against 1: " + "; ".join(f"seed {s} {b['classes_covered']} ({b['confident_classes_covered']}) "
                                              f"against {a['classes_covered']} ({a['confident_classes_covered']})"
                                              for s, a, b in zip(seeds, one, twenty)) + ".")
        averaged = [named(mnist[s], "averaged") for s in seeds]
        worse = sum(a["fid_classifier"] > b["fid_classifier"] for a, b in zip(averaged, twenty))
        end = mnist[seeds[0]]["config"]["train"]["steps"]
        notes.append(f"- The averaged G of the refresh-{fast} runs scores worse than their raw G on {worse} of "
                     f"{len(seeds)} seeds: at step {end:,} the average spans about the last {(10 + end) / 9:.0f} "
                     "steps ((10 + n) / 9 at update n), of a G that still moves fast.")
        ends = [(stored[s].get("lambda_end"), lambdas(mnist[s]).get(max(lambdas(mnist[s]), default=0))) for s in seeds]
        if all(a is not None and b is not None for a, b in ends):
            notes.append(f"- lambda at the end, {data.split(',')[0]}: " + "; ".join(
                f"seed {s} refresh {fast} {b:.3f}, refresh 1 {a:.3f}" for s, (a, b) in zip(seeds, ends)) + ".")
    if all(jobs.values()):
        for s in seeds:
            fresh, every = lambdas(jobs[fast, s]), lambdas(jobs[1, s])
            common = sorted(set(fresh) & set(every))
            if not common:
                continue
            shown_steps = [t for t in common if t % max(1, common[-1] // 6) == 0] or common
            notes.append(f"- lambda on the default job, seed {s}, at steps {' / '.join(map(str, shown_steps))}: "
                         f"refresh {fast} {' / '.join(f'{fresh[t]:.3f}' for t in shown_steps)}, refresh 1 "
                         f"{' / '.join(f'{every[t]:.3f}' for t in shown_steps)}; at most "
                         f"{max(abs(fresh[t] - every[t]) for t in common):.3f} apart over the {len(common)} logged steps.")
    notes.append("- Bytes: the section \"Bytes per step under the default rule\".")
    missing = [(mnist_run(s, root, quick), ("raw", "averaged")) for s in seeds if mnist[s] is None]
    missing += [(job_runs[key], ("averaged",)) for key in columns if jobs[key] is None]
    lost = [stored_cell(s, quick).name for s in seeds if stored[s] is None]
    if lost:
        missing_cells = ["", f"Not run yet (refresh-1 cells): {', '.join(lost)}; "
                         f"`python bench/lambda_refresh.py --only {' '.join(lost)}` trains and stores them."]
    else:
        missing_cells = []
    runs_shown = [*(mnist_run(s, root, quick) for s in seeds), *(job_runs[fast, s] for s in seeds),
                  *(job_runs[1, s] for s in seeds)]
    commands = ["Runs: " + ", ".join(f"`{shlex.join(r.train_command())}`" for r in runs_shown)
                + "; each evaluated by `python -m ddgan.eval --run RUN` (and `--raw` for the raw rows)."
                + f" The refresh-1 cells: {', '.join(stored_cell(s, quick).name for s in seeds)}."]
    return "\n".join([*head, "", *lines, *not_run("lambda_refresh.py", missing), *missing_cells, "", *notes, "",
                      *commands])


def main() -> int:
    args = arguments(__doc__, "only rebuild the section from the stored results", lambda parser: parser.add_argument(
        "--root", type=Path, default=SHARED_DATA, help="dataset root (MNIST under MNIST/raw)"))
    with tempfile.TemporaryDirectory() as tmp:
        quick = Path(tmp) if args.quick else None
        if quick:
            runs = NamedRuns(quick / "named_runs.json", n=200, cache=CLASSIFIERS)
            cells = Results(quick / "results.json", quick / "cells")
        else:
            runs = NamedRuns(only=tuple(args.only), train=not args.report, evaluate=not args.report)
            cells = Results(STORE, ROOT / "runs" / "bench" / "cells", tuple(args.only))
        body = section(runs, cells, args.root, quick)
    publish_table("lambda_refresh", "F2A's lambda on refreshed copies of the discriminators", body, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
