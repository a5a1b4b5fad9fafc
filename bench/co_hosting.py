"""Many clients per rank (``train.client_ranks``): steps/s, bytes and memory per rank against one
client per rank and against a loop over the clients' discriminators.

    python bench/co_hosting.py            # every row (about 15 minutes on 2 quiet cores)
    python bench/co_hosting.py --quick    # K = 5 only, fewer steps: a smoke run, printed only

Run it on a quiet machine: every number is a time. MNIST (28 x 28, widths 64, batch 64, F2U) under
torchrun with gloo on the CPU, split Dirichlet(0.5) over K clients (every shard at least a batch,
``partition.min_samples``); each rank gets the cores divided by the ranks on the machine. Rows, all
from one run:

* K = 5, 20 and 100 clients on 1 and 2 ranks, the discriminators of a rank on stacked storage
  (``train.stack_clients=always``) and, for K = 5 and 20, one after another (``never``, what
  ``auto`` does on the CPU); one client
  per rank for K = 5 (20 or 100 processes on 2 cores measure the machine, not ddgan); target: K = 5
  on one rank at least 1.5x the steps/s of 5 ranks;
* K = 5 on one rank pinned to one core (``taskset``): the step's work with nothing in parallel. Its
  speed times the cores is the most any one-rank schedule could reach, the ceiling beside the target;
* K = 100 end to end: ``train.steps`` steps on one rank, then ``ddgan.eval`` on the checkpoint.

Results go to stdout and to the ``co_hosting`` section of BENCHMARKS.md (ratios are only comparable
within one run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.report import update_section  # noqa: E402
from bench.step_time import MNIST, _range, distributed, model_args, peak_rss_kb  # noqa: E402
from ddgan.runtime.distributed import usable_cores  # noqa: E402

DIRICHLET = ["partition.scheme=dirichlet", "partition.alpha=0.5"]


def row(k: int, ranks: int, batched: bool, steps: int, warmup: int, one_core: bool = False) -> dict:
    """One torchrun run: K clients on ``ranks`` ranks (``ranks == k``: one client per rank); with
    ``one_core``, pinned to one core (so one thread): the step's work with nothing run in parallel."""
    hosts = [] if ranks == k else [f"train.client_ranks={ranks}"]
    extra = [*model_args(), *DIRICHLET, *hosts, f"train.stack_clients={'always' if batched else 'never'}"]
    result = distributed(k, steps, warmup, extra, "cpu", cores=1 if one_core else None)
    mode = "one per rank" if ranks == k else ("batched" if batched else "loop")
    return {**result, "mode": mode + (", one core" if one_core else "")}


def end_to_end(k: int, steps: int, n: int) -> dict:
    """K clients on one rank for ``steps`` steps, then ``ddgan.eval``: wall time and the eval's numbers."""
    with tempfile.TemporaryDirectory() as run:
        args = [*model_args(), *DIRICHLET, f"partition.clients={k}", "train.client_ranks=1", f"train.steps={steps}",
                "run.log_every=10", f"run.dir={run}"]
        start = time.perf_counter()
        train = subprocess.Popen([sys.executable, "-m", "ddgan.train", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        peak_mb = max(peak_rss_kb(train, lambda: [train.pid]).values(), default=0) / 1024
        trained = time.perf_counter() - start
        if train.returncode:
            raise SystemExit(f"K={k} end to end failed:\n{train.stderr.read()[-3000:]}")
        evaluated = subprocess.run([sys.executable, "-m", "ddgan.eval", "--run", run, "--n", str(n), "--svm-train", "0"],
                                   cwd=ROOT, capture_output=True, text=True)
        if evaluated.returncode:
            raise SystemExit(f"K={k} eval failed:\n{evaluated.stderr[-3000:]}")
        result = json.loads((Path(run) / "eval.json").read_text())
    g = result["generators"]["0"]
    return {"k": k, "steps": steps, "train_s": trained, "peak_mb": peak_mb, "fid_classifier": g["fid_classifier"],
            "classes": g["classes_covered"], "confident": g["confident_classes_covered"], "n": n}


def target(rows: list[dict]) -> list[str]:
    """K = 5 on one rank against 5 ranks, and the most one rank could gain on these cores: its
    one-core speed times the cores, were its work spread over them without loss."""
    five = {r["mode"] + str(r["ranks"]): r for r in rows if r["k"] == 5}
    base, cores = five["one per rank5"], usable_cores()
    ceiling = cores * five["loop, one core1"]["steps_per_s"] / base["steps_per_s"]
    out = [f"- {what}: **{five[mode]['steps_per_s'] / base['steps_per_s']:.2f}x** the steps/s of 5 ranks "
           f"({'met' if five[mode]['steps_per_s'] / base['steps_per_s'] >= 1.5 else 'not met'})"
           for mode, what in (("loop1", "one after another (train.stack_clients=auto on the CPU)"), ("batched1", "stacked"))]
    return ["Target: K = 5 on one rank >= 1.5x the steps/s of 5 ranks on the same cores.", "", *out,
            f"- the ceiling: one rank's work on one core, spread without loss over all {cores} cores, would run "
            f"**{ceiling:.2f}x** the steps/s of 5 ranks; 5 ranks keep {base['cores_busy']:.2f} cores busy. "
            "(A multi-threaded rank counts its OpenMP threads' spin-waits as busy.)"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="K = 5 only, fewer steps; printed, not stored")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per run (default 10)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps per run (default 5)")
    parser.add_argument("--e2e-steps", type=int, default=40, help="steps of the K = 100 end-to-end run (default 40)")
    args = parser.parse_args()
    if not (MNIST / "MNIST" / "raw").is_dir():
        raise SystemExit(f"MNIST is not at {MNIST}: this benchmark needs it")
    steps = 10 if args.quick else args.steps
    plan = [(5, 5, True, False), (5, 1, True, False), (5, 1, False, False), (5, 1, False, True), (5, 2, True, False),
            (5, 2, False, False)]
    if not args.quick:
        plan += [(20, 1, True, False), (20, 1, False, False), (20, 2, True, False), (100, 1, True, False),
                 (100, 2, True, False)]
    rows = []
    for k, ranks, batched, one_core in plan:
        rows.append(row(k, ranks, batched, steps, args.warmup, one_core))
        r = rows[-1]
        print(f"K={k} ranks={ranks} {r['mode']}: {r['steps_per_s']:.2f} steps/s", flush=True)
    lines = ["| K clients | ranks | discriminators | steps/s | vs one per rank | vs loop | CPU s per step (all ranks) "
             "| cores busy | bytes sent per step per rank | peak memory per rank (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next((b for b in rows if b["k"] == r["k"] and b["mode"] == "one per rank"), None)
        loop = next((b for b in rows if b["k"] == r["k"] and b["ranks"] == r["ranks"] and b["mode"] == "loop"), None)
        vs_base = f"{r['steps_per_s'] / base['steps_per_s']:.2f}x" if base and base is not r else "-"
        vs_loop = f"{r['steps_per_s'] / loop['steps_per_s']:.2f}x" if loop and loop is not r else "-"
        lines.append(f"| {r['k']} | {r['ranks']} | {r['mode']} | {r['steps_per_s']:.2f} | {vs_base} | {vs_loop} | "
                     f"{r['cpu_seconds']:.3f} | {r['cores_busy']:.2f} | "
                     f"{_range(r['bytes_per_rank'], ',.0f')} | {_range(r['peak_rss_mb'], ',.0f')} |")
    lines += ["", *target(rows)]
    if not args.quick:
        e2e = end_to_end(100, args.e2e_steps, 2000)
        lines += ["", "K = 100 end to end (Dirichlet(0.5) on MNIST, one rank, `train.stack_clients=auto`: one after "
                  f"another on the CPU): {e2e['steps']} steps in {e2e['train_s'] / 60:.1f} min, peak memory {e2e['peak_mb']:,.0f} MB; `ddgan.eval` on "
                  f"{e2e['n']} samples: fid_classifier {e2e['fid_classifier']:.1f}, classes {e2e['classes']} "
                  f"({e2e['confident']} confidently) after {e2e['steps']} steps."]
    table = "\n".join(lines)
    print(table)
    if not args.quick:
        import torch
        update_section("co_hosting", f"`python bench/co_hosting.py` on {os.cpu_count()} CPU cores "
                       f"({platform.processor() or platform.machine()}), torch {torch.__version__}, "
                       f"{time.strftime('%Y-%m-%d')}, nothing else running; {args.warmup} warm-up + {steps} measured "
                       f"steps per run, medians of 5-step intervals.\n\n" + table,
                       title="Many clients per rank")
    return 0


if __name__ == "__main__":
    sys.exit(main())
