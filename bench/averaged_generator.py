"""The averaged generator (``train.g_ema``) against the trained G itself, on the default job.

    python bench/averaged_generator.py              # train and evaluate what is missing, into BENCHMARKS.md
    python bench/averaged_generator.py --report     # only rebuild the section from bench/named_runs.json
    python bench/averaged_generator.py --quick      # tiny runs in a temporary directory, printed only

The default job (``launch/run.sh``: F2A on digits, 5 clients, 600 steps) once per seed and decay,
each in a run directory of its own (bench/named_runs.py: a run already there with the same config
is reused, never trained again), scored by ``python -m ddgan.eval --run RUN`` (the averaged
generator) and ``--raw`` (the trained G), 10,000 samples each. The runs were trained before
``algo.lambda_refresh`` (0.3.0) and pin it at 1, what they ran with. ``train.g_ema`` does not touch
training, so the raw rows are the 0.999 runs (the 0.99 runs' logged losses and lambda are compared
to theirs, step by step).
"""
from __future__ import annotations

import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import QUICK, QUICK_CLIENTS  # noqa: E402
from bench.named_runs import NamedRun, NamedRuns, not_run, section_main, shown  # noqa: E402

DECAYS = (0.999, 0.99)              # the default first
SEEDS = (0, 1)
DIRS = {(0.999, 0): "runs/default", (0.999, 1): "runs/ema_s1", (0.99, 0): "runs/ema099", (0.99, 1): "runs/ema099_s1"}
# --quick: 2 clients, small models, 20 steps (the plumbing, not the numbers)
QUICK_JOB = ("partition.scheme=classes", *QUICK_CLIENTS, *QUICK, "train.steps=20", "run.log_every=5",
             "run.sample_every=20", "run.checkpoint_every=10")


def job(decay: float, seed: int, quick: Path | None = None) -> NamedRun:
    """The default job with ``seed`` and ``train.g_ema=decay`` (algo.lambda_refresh 1: how these runs trained)."""
    where = quick / f"g_ema{decay}_s{seed}" if quick else Path(DIRS[decay, seed])
    return NamedRun(where, (f"train.seed={seed}", f"train.g_ema={decay}", "algo.lambda_refresh=1",
                            *(QUICK_JOB if quick else ())))


# a table cell without its run: not "not run", which bench/report.py would fill with the previous table's
# number (the cells lost before 2026-12-01); the runs it lacks are listed under the table, with their commands
MISSING = "missing"


def generator(entry: dict | None, kind: str) -> dict | None:
    return entry["evals"][kind]["generators"]["0"] if entry else None


def cell(g: dict | None) -> str:
    return MISSING if g is None else f"{g['classes_covered']} ({g['confident_classes_covered']}), {g['fid_classifier']:.1f}"


def ramp_end(decay: float) -> int:
    """The first update n at which the ramp (1 + n) / (10 + n) reaches ``decay``: before it, the
    average moves by 1 - (1 + n) / (10 + n) whatever the decay."""
    return next(n for n in range(10 ** 7) if (1 + n) / (10 + n) >= decay)


def section(runs: NamedRuns, seeds: tuple[int, ...], quick: Path | None) -> str:
    rows = [("raw G", 0.999, "raw"), ("averaged, `train.g_ema=0.999` (default)", 0.999, "averaged"),
            ("averaged, `train.g_ema=0.99`", 0.99, "averaged")]
    need = {decay: tuple(k for _, d, k in rows if d == decay) for decay in DECAYS}
    entries = {(d, s): runs.get(job(d, s, quick), need[d]) for d in DECAYS for s in seeds}
    n = next((e["evals"][k]["generators"]["0"]["n"] for (d, _), e in entries.items() if e for k in need[d]), runs.n)
    steps = next((e["config"]["train"]["steps"] for e in entries.values() if e), None)
    clients = next((e["config"]["partition"]["clients"] for e in entries.values() if e), "-")
    lines = [f"The default job (`launch/run.sh`: F2A on digits, {clients} clients, {steps or '-'} steps) once per seed "
             "and decay, scored by `python -m ddgan.eval --run RUN` (the averaged generator) and `--raw` (the trained "
             f"G itself), {n:,} samples each: classes covered (confidently) and fid_classifier. The runs pin "
             "`algo.lambda_refresh=1`: they were trained before the refreshed copies of 0.3.0.", "",
             "| generator | " + " | ".join(f"seed {s}: classes (confidently), fid_classifier" if i == 0 else f"seed {s}"
                                          for i, s in enumerate(seeds)) + " | mean fid_classifier |",
             "| --- |" + " --- |" * (len(seeds) + 1)]
    got = {}
    for label, decay, kind in rows:
        gs = [generator(entries[decay, s], kind) for s in seeds]
        got[label] = gs
        mean = f"{statistics.mean(g['fid_classifier'] for g in gs):.1f}" if all(gs) else "-"
        lines.append(f"| {label} | " + " | ".join(cell(g) for g in gs) + f" | {mean} |")
    raw, avg, avg99 = got.values()
    notes = []
    if all(raw) and all(avg):
        fid = [g["fid_classifier"] for g in raw], [g["fid_classifier"] for g in avg]
        spread = [max(f) - min(f) for f in fid]
        better = statistics.mean(fid[1]) < statistics.mean(fid[0])
        spreads = f"the seeds spread by {spread[1]:.1f} against {spread[0]:.1f}, and " if len(seeds) > 1 else ""
        notes.append(f"- Averaged (0.999) against raw: {spreads}the mean is {'better' if better else 'not better'} "
                     f"({statistics.mean(fid[1]):.1f} against {statistics.mean(fid[0]):.1f}).")
        won = [s for s, r, a in zip(seeds, *fid) if r < a]
        if won:
            notes.append(f"  On seed {', '.join(map(str, won))} the raw G scores better than its average: the "
                         "average is taken over the last steps, the raw G is wherever the last step left it.")
        same = all((r["classes_covered"], r["confident_classes_covered"]) == (a["classes_covered"],
                                                                               a["confident_classes_covered"])
                   for r, a in zip(raw, avg))
        notes.append(f"- Classes covered (confidently): {'the same' if same else 'not the same'} for the averaged "
                     "and the raw G on every seed.")
    if all(avg) and all(avg99):
        logs = [(entries[0.999, s], entries[0.99, s]) for s in seeds]
        same_training = all(a.get(key) == b.get(key) and a.get(key) for a, b in logs for key in ("lambda", "g_loss"))
        same_scores = all(a == b for a, b in zip(avg, avg99))
        end = steps or 0
        horizon = (10 + end) / 9            # 1 / (1 - (1 + n) / (10 + n)) at the last update
        notes.append(
            f"- 0.99 and 0.999: {'every metric of the averaged generators is equal' if same_scores else 'the averaged generators score differently'}"
            f"; the runs logged {'the same' if same_training else 'different'} G losses and lambda at every logged "
            f"step ({'g_ema does not touch training' if same_training else 'training differed'}). Update n moves the "
            f"average by 1 - min(g_ema, (1 + n) / (10 + n)), and (1 + n) / (10 + n) stays below 0.99 until n = "
            f"{ramp_end(0.99):,} (0.999: n = {ramp_end(0.999):,}), so a {end:,}-step run "
            + (f"averages over about its last {horizon:.0f} steps whatever the decay" if end < ramp_end(0.99) else
               "reaches the decay before its end")
            + f". The decay matters for runs of thousands of steps: 0.999 averages over about "
            f"{1 / (1 - 0.999):,.0f} steps once the ramp has passed it.")
    commands = [f"`{shlex.join(job(d, s, quick).train_command())}`" for d in DECAYS for s in seeds]
    evals = list(dict.fromkeys(f"`python -m ddgan.eval --run {shown(job(d, s, quick).dir)}{' --raw' * (k == 'raw')}`"
                               for d in DECAYS for s in seeds for k in need[d]))
    missing = [(job(d, s, quick), need[d]) for d in DECAYS for s in seeds if entries[d, s] is None]
    return "\n".join([*lines, *not_run("averaged_generator.py", missing), "", *notes, "",
                      f"Runs: {', '.join(commands)}; evaluations: {', '.join(evals)}."])


def main() -> int:
    return section_main(__doc__, "averaged_generator", "Averaged generator", section, SEEDS)


if __name__ == "__main__":
    sys.exit(main())
