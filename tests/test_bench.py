"""Every benchmark script's --quick smoke run: real training cells on digits, evaluated, tabled."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("classifiers")


@pytest.mark.dist
@pytest.mark.parametrize("script, expect", [
    ("forgiveness.py", ["| digits | f2u | spectral |", "| digits | f2a | batch |"]),
    ("reproduce_f2u.py", ["| digits | classes | f2u | 1 |", "**Orderings**", "f2u_digits_classes.png"]),
    ("reproduce_kosmopoulos.py", ["| standalone |", "| info-gain < uniform |", "kosmopoulos_nodes.png"]),
    ("robustness.py", ["| f2u | honest | robust |", "| f2u | always_real | robust |"]),
])
def test_quick_smoke_run(tmp_path, classifier_cache, script, expect):
    proc = subprocess.run([sys.executable, f"bench/{script}", "--quick", "--out", str(tmp_path / "cells")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "DDGAN_BENCH_CLASSIFIERS": str(classifier_cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expect:
        assert text in proc.stdout, (text, proc.stdout[-3000:])
    assert "not run" not in proc.stdout.split("**Orderings**")[0]      # every quick cell was trained
    assert not (tmp_path / "cells").exists()                           # a quick run keeps its cells aside
    assert (ROOT / "BENCHMARKS.md").read_text().count("<!-- reproduce_f2u -->") <= 1
