"""bench/gpu_check.py's CPU mode: the same rows as on a GPU, tiny, so that the GPU check cannot rot."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.dist
def test_gpu_check_runs_every_row_in_cpu_mode(tmp_path, digits_classifier_cache):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--cpu", "--out", str(out),
                           "--cache", str(digits_classifier_cache)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {r["row"]: r for r in result["rows"]}
    for name in ("f2u", "f2a feedback", "f2a params", "f2a robust", "fedavg", "centralized", "f2a secure", "gossip",
                 "MD-GAN swap", "dedicated generator rank", "f2u, 2 clients", "robust MD-GAN, deterministic, resumed at its swap step"):
        assert rows[name]["ok"] and rows[name]["steps_per_s"] > 0, rows[name]
    assert rows["robust MD-GAN, deterministic, resumed at its swap step"]["bit_identical"] is True
    assert rows["plain PyTorch loop (bench/plain_loop.py)"]["steps_per_s"] > 0
    evals = [r for r in result["rows"] if r["row"].startswith("eval ")]
    assert [r["row"] for r in evals] == ["eval step_0000003", "eval step_0000006"]
    assert all(r["ok"] and r["device"] == "cpu" and r["fid_classifier"] > 0 for r in evals)
    assert result["machine"]["torch"] and "| row | ranks, backend, data | result | wall s |" in proc.stdout
