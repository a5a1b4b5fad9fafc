"""What the reproduction scripts share: train one cell of a table for real, evaluate it, and keep
its result in a JSON file so that an interrupted table resumes where it stopped."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ddgan.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


class Results:
    """``{cell name: result}`` in one JSON file, rewritten after every cell."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.cells = json.loads(self.path.read_text()) if self.path.exists() else {}

    def __contains__(self, name: str) -> bool:
        return name in self.cells

    def add(self, name: str, result: dict) -> None:
        self.cells[name] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.cells, indent=1))
        tmp.replace(self.path)

    def run(self, name: str, config: Path, root: Path, steps: int, extra: list[str], n: int, svm_train: int,
            cache: Path) -> None:
        """Train and evaluate cell ``name`` under ``self.path``'s folder unless it is already done."""
        if name in self:
            return
        print(f"[{self.path.parent.name}] {name} ...", flush=True)
        overrides = [f"data.root={root}", f"train.steps={steps}", *extra, f"run.log_every={max(1, steps // 20)}",
                     f"run.checkpoint_every={steps}", f"run.sample_every={steps}"]
        self.add(name, train_and_evaluate(config, overrides, self.path.parent / name, n, svm_train, cache))


def train_and_evaluate(config: Path, overrides: list[str], run_dir: Path, n: int, svm_train: int,
                       cache: Path) -> dict:
    """Train ``config`` with as many torchrun ranks as it has clients, then ``ddgan.eval`` it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--config", str(config), *overrides, f"run.dir={run_dir}"]
    clients = load_config(config, overrides).partition.clients
    if clients == 1:
        cmd = [sys.executable, "-m", "ddgan.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(clients),
               "-m", "ddgan.train", *args]
    start = time.perf_counter()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.with_name(run_dir.name + ".log")       # beside the run: a retried cell starts clean
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        errors = [line for line in log.read_text().splitlines() if line.startswith(("error:", "Traceback", "terminate"))]
        raise SystemExit(f"training failed (exit {proc.returncode}), full log in {log}: {' '.join(cmd)}\n"
                         + "\n".join(errors[:20]))
    train_seconds = time.perf_counter() - start
    proc = subprocess.run([sys.executable, "-m", "ddgan.eval", "--run", str(run_dir), "--n", str(n),
                           "--cache", str(cache), "--svm-train", str(svm_train)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"evaluation of {run_dir} failed:\n{proc.stderr[-3000:]}")
    result = json.loads((run_dir / "eval.json").read_text())
    result["train_seconds"] = round(train_seconds, 1)
    return result
