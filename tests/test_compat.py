"""The PyTorch range: torch names newer than the minimum go through ddgan.core.compat, and a PyTorch
older than the minimum is refused as one line by every command."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, spawn
from ddgan.core.compat import MIN_TORCH, _release, require_torch
from ddgan.core.config import load_config
from ddgan.core.errors import UserError
from ddgan.runtime.rundir import read_metrics

# torch.distributed names that only releases newer than MIN_TORCH have, with their older spelling
NEWER_NAMES = {"all_gather_single": "all_gather_into_tensor"}


def test_versions_are_compared_as_releases():
    assert _release("2.11.0+cu130") == (2, 11, 0) and _release("2.3.0a0+git1234") == (2, 3, 0)
    require_torch("2.3.0")
    require_torch("2.14.1+cu130")
    with pytest.raises(UserError, match=r"PyTorch 2\.2\.2 is installed, but ddgan needs PyTorch >= 2\.3"):
        require_torch("2.2.2")


@pytest.mark.parametrize("command", [
    ["ddgan.train", "--config", "configs/default.yaml", "partition.clients=1", "partition.scheme=iid"],
    ["ddgan.layout", "--config", "configs/default.yaml"],
    ["ddgan.eval", "--run", "runs/none"],
])
def test_a_too_old_pytorch_is_one_line_and_exit_2(tmp_path, command):
    """A torch distribution of version 2.2.0 found first on the path stands in for an old install."""
    info = tmp_path / "torch-2.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.2.0\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    need = ".".join(map(str, MIN_TORCH))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: PyTorch 2.2.0 is installed, but ddgan needs PyTorch >= {need} "
                                        f"(pip install 'torch>={need},<3', or load a newer module on the cluster)"]


def _without_newer_names(rank: int, cfgs, calls) -> None:
    """A spawn target: torch.distributed as an older release has it, then train ``cfgs``."""
    import torch.distributed as dist

    from conftest import train_in_one_group
    for new, old in NEWER_NAMES.items():
        if hasattr(dist, new):
            delattr(dist, new)
        original = getattr(dist, old)

        def counted(*args, _original=original, _old=old, **kwargs):
            calls.put(_old)
            return _original(*args, **kwargs)
        setattr(dist, old, counted)
    train_in_one_group(rank, cfgs)


@pytest.mark.dist
def test_two_ranks_train_on_a_torch_without_the_newer_names(tmp_path):
    tiny = ["data.image_size=8", "model.g_width=4", "model.d_width=4", "model.z_dim=8", "train.batch_size=8",
            "partition.clients=2", "partition.scheme=iid", "train.steps=4", "run.log_every=2",
            "comm.timeout_s=60"]
    runs = {"feedback": ["algo.name=f2a", "comm.exchange=feedback"],
            "params": ["algo.name=f2u", "comm.exchange=params"],
            "swap": ["algo.name=mean", "algo.swap_every=2"],
            "gossip": ["algo.name=gossip", "algo.max_d_steps=2", "topology.kind=ring"]}
    cfgs = [load_config(None, [*tiny, *extra, f"run.dir={tmp_path / name}"]) for name, extra in runs.items()]
    import torch.multiprocessing as mp
    calls = mp.get_context("spawn").SimpleQueue()
    spawn(_without_newer_names, 2, cfgs, calls)
    assert all(read_metrics(tmp_path / name)[-1]["step"] == 4 for name in runs)
    seen = set()
    while not calls.empty():
        seen.add(calls.get())
    assert seen == set(NEWER_NAMES.values())      # the older spelling carried the gathers
