"""Bytes per step of the exchange modes under the default rule (F2A, lambda on the discriminator side).

    python bench/exchange_bytes.py                   # MNIST 28 px, K = 5 (../shared/data), into BENCHMARKS.md
    python bench/exchange_bytes.py --quick           # digits, K = 2, printed only

Each row is a real run of 40 steps (two refreshes at the default algo.lambda_refresh = 20) under
torchrun, read from its metrics: the bytes every rank handed to the network per step, averaged over
the run. Bytes do not depend on the machine's speed, so this needs no quiet machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import ROOT, SHARED_DATA  # noqa: E402
from bench.gpu_check import free_port  # noqa: E402
from bench.report import publish_table  # noqa: E402
from ddgan.runtime.rundir import read_metrics  # noqa: E402

ROWS = [("feedback, lambda_refresh = 20 (default)", ["comm.exchange=feedback"]),
        ("feedback, lambda_refresh = 1 (every D every step, before 0.3.0)", ["comm.exchange=feedback",
                                                                              "algo.lambda_refresh=1"]),
        ("params", ["comm.exchange=params"])]


def bytes_per_step(k: int, data: list[str], extra: list[str], steps: int, run: Path) -> list[float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(k),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "ddgan.train",
           "--config", str(ROOT / "configs" / "default.yaml"), f"partition.clients={k}", *data, *extra,
           f"train.steps={steps}", f"run.log_every={steps}", f"run.sample_every={steps}",
           f"run.checkpoint_every={steps}", f"run.dir={run}", "train.resume=never"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return read_metrics(run)[-1]["bytes_sent"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHARED_DATA, help="dataset root (MNIST under MNIST/raw)")
    parser.add_argument("--quick", action="store_true", help="digits, 2 clients, printed only")
    args = parser.parse_args()
    k, steps = (2, 4) if args.quick else (5, 40)
    data = (["partition.scheme=iid", "model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=8",
             "algo.lambda_refresh=2"] if args.quick else
            ["data.name=mnist", f"data.root={args.root}", "data.image_size=28", "model.g_width=64",
             "model.d_width=64"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(ROWS):
            rows.append((name, bytes_per_step(k, data, extra, steps, Path(tmp) / str(i))))
    params = sum(rows[-1][1]) / k
    lines = [f"K = {k} clients, {'digits' if args.quick else 'MNIST 28 px, widths 64'}, F2A with lambda on the "
             f"discriminator side, {steps} steps; MB a rank sends per step (mean over ranks; rank 0 holds G).", "",
             "| exchange | mean MB / step | rank 0 | other ranks | x params |", "| --- | --- | --- | --- | --- |"]
    for name, sent in rows:
        mean = sum(sent) / k
        lines.append(f"| {name} | {mean / 1e6:.3f} | {sent[0] / 1e6:.3f} | {sum(sent[1:]) / (k - 1) / 1e6:.3f} | "
                     f"{mean / params:.3f} |")
    publish_table("exchange_bytes", "Bytes per step under the default rule", "\n".join(lines), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
