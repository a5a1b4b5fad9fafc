"""End to end: real torchrun launches on digits, exact resume, and launch-time errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (
    ROOT,
    flat_state,
    free_port,
    saved_client,
    spawn,
    train_in_one_group,
)
from ddgan.core.config import load_config
from ddgan.core.errors import ConfigError
from ddgan.runtime import checkpoint
from ddgan.runtime.checkpoint import complete_checkpoints, load_rank_file
from ddgan.runtime.distributed import usable_cores
from ddgan.runtime.rundir import read_metrics, save_grid

SMALL = ["model.g_width=16", "model.d_width=16", "model.z_dim=32", "train.batch_size=32", "comm.timeout_s=60"]
TWO_CLIENTS = ["partition.clients=2", "partition.scheme=classes", "partition.classes=[[0,1,2,3,4],[5,6,7,8,9]]"]


def torchrun(nproc: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "ddgan.train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.dist
def test_two_rank_run_on_digits_writes_every_output(tmp_path):
    run = tmp_path / "run"
    proc = torchrun(2, "--config", "configs/default.yaml", *TWO_CLIENTS, *SMALL, "algo.name=f2u_balanced",
                    "train.steps=40", "run.log_every=10", "run.sample_every=20", "run.checkpoint_every=20",
                    f"run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith("step ")]
    assert len(lines) == 4 and lines[-1].startswith("step 40/40 |") and "steps/s" in lines[-1] and "ETA" in lines[-1]
    assert load_config(run / "config.yaml").algo.name == "f2u_balanced"
    records = read_metrics(run)
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    last = records[-1]
    for key in ("d_loss", "forgiver_share", "weight_share", "bytes_sent", "cpu_seconds"):
        assert len(last[key]) == 2, key
    assert sum(last["forgiver_share"]) == pytest.approx(1) and sum(last["weight_share"]) == pytest.approx(1)
    assert all(b > 0 for b in last["bytes_sent"]) and last["step_time"] > 0 and "lambda" in last
    # a rank's CPU time per step: some, and no more than the machine's cores give in the step's wall time
    assert all(0 < c <= 1.1 * usable_cores() * last["step_time"] for c in last["cpu_seconds"]), (last["cpu_seconds"], last["step_time"])
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000020.png", "step_0000040.png"]
    found = complete_checkpoints(run)
    assert [p.name for p in found] == ["step_0000040", "step_0000020"]
    manifest = json.loads((found[0] / "manifest.json").read_text())
    assert manifest["step"] == 40 and set(manifest["files"]) == {"rank_0.pt", "rank_1.pt"}
    assert "generator" in load_rank_file(found[0], 0) and "generator" not in load_rank_file(found[0], 1)
    out = tmp_path / "s.npz"
    sample = subprocess.run([sys.executable, "-m", "ddgan.sample", "--run", str(run), "--n", "70", "--out", str(out)],
                            capture_output=True, text=True)
    assert sample.returncode == 0, sample.stderr
    images = np.load(out)["images"]
    assert images.shape == (70, 1, 16, 16) and images.dtype == np.uint8 and images.std() > 10
    # the default is the averaged generator (train.g_ema); --raw draws from the trained one itself
    raw = subprocess.run([sys.executable, "-m", "ddgan.sample", "--run", str(run), "--n", "70", "--raw", "--out",
                          str(tmp_path / "raw.npz")], capture_output=True, text=True)
    assert raw.returncode == 0, raw.stderr
    assert not np.array_equal(np.load(tmp_path / "raw.npz")["images"], images)


def test_wrong_world_size_is_a_clear_error_said_once(tmp_path):
    proc = torchrun(2, "--config", "configs/default.yaml", f"run.dir={tmp_path}", timeout=120)
    assert proc.returncode != 0
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert errors == ["error: partition.clients = 5 but 2 rank(s) were started (WORLD_SIZE=2); "
                      "launch with torchrun --nproc_per_node 5 or set partition.clients=2 (or train.client_ranks=2 to host "
                      "the 5 clients on fewer ranks)"]
    # torchrun reports the failed workers with a traceback of its own; ours print none
    assert "/ddgan/" not in proc.stderr.replace(f"{tmp_path}", "")
    assert "exitcode  : 2" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.dist
@pytest.mark.parametrize("world, extra", [
    (2, ["algo.name=f2a", "comm.exchange=feedback"]),
    # CI time: the params exchange keeps no state across steps, and f2a-feedback resumes a lambda too
    pytest.param(2, ["algo.name=gman", "comm.exchange=params"], marks=pytest.mark.slow),
    (2, ["algo.name=f2a", "comm.exchange=secure", "algo.lambda_objective=generator", "algo.lambda_max=20"]),
    (2, ["algo.name=f2u", "comm.robust=true", "defence.seed=5", "defence.warmup=2", "attack.kind=noise",
         "attack.client=1", "attack.start=3"]),
    (3, ["algo.name=f2u_balanced", "train.generator_rank=dedicated", "train.pipeline=true"]),
    (1, ["algo.name=f2a", "train.client_ranks=1", "train.stack_clients=always"]),
], ids=["f2a-feedback", "gman-params", "f2a-secure", "f2u-robust-attacked", "dedicated-pipeline", "co-hosted"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, world, extra):
    args = [*TWO_CLIENTS, *SMALL, *extra, "algo.swap_every=3", "run.checkpoint_every=5", "run.log_every=5"]
    straight = load_config("configs/default.yaml", [*args, "train.steps=12", f"run.dir={tmp_path / 'a'}"])
    first = load_config("configs/default.yaml", [*args, "train.steps=6", f"run.dir={tmp_path / 'b'}"])
    resumed = load_config("configs/default.yaml", [*args, "train.steps=12", f"run.dir={tmp_path / 'b'}"])
    spawn(train_in_one_group, world, [straight, first, resumed])
    a, b = complete_checkpoints(tmp_path / "a")[0], complete_checkpoints(tmp_path / "b")[0]
    assert a.name == b.name == "step_0000012"
    for rank in range(world):
        sa, sb = load_rank_file(a, rank), load_rank_file(b, rank)
        flat_a, flat_b = flat_state(sa), flat_state(sb)
        assert flat_a.keys() == flat_b.keys()
        for key, value in flat_a.items():
            same = torch.equal(value, flat_b[key]) if isinstance(value, torch.Tensor) else value == flat_b[key]
            assert same, (rank, key)
    steps = [r["step"] for r in read_metrics(tmp_path / "b")]
    assert steps == [5, 6, 10, 12]                      # the second launch continued after step 6 (a swap step)


@pytest.mark.dist
def test_a_checkpoint_resumes_on_another_number_of_client_ranks(tmp_path):
    """Each client is saved under its own number: 3 clients trained on 1 rank continue on 3 ranks
    (and back on 2) as a run that never moved them, to float64 tolerance (batched and looped
    discriminators round differently); another change of layout is refused, naming the field."""
    args = [*SMALL, "partition.clients=3", "partition.scheme=classes", "partition.classes=[[0,1,2],[3,4,5],[6,7,8,9]]",
            "algo.name=f2a", "algo.swap_every=3", "train.dtype=float64", "train.stack_clients=always",
            "run.checkpoint_every=4", "run.log_every=4"]
    straight = load_config("configs/default.yaml", [*args, "train.steps=8", f"run.dir={tmp_path / 'a'}"])
    one = load_config("configs/default.yaml", [*args, "train.steps=4", "train.client_ranks=1", f"run.dir={tmp_path / 'b'}"])
    three = load_config("configs/default.yaml", [*args, "train.steps=6", f"run.dir={tmp_path / 'b'}"])
    two = load_config("configs/default.yaml", [*args, "train.steps=8", "train.client_ranks=2", f"run.dir={tmp_path / 'b'}"])
    spawn(train_in_one_group, 1, [one])
    spawn(train_in_one_group, 3, [straight, three])
    spawn(train_in_one_group, 2, [two])
    a, b = complete_checkpoints(tmp_path / "a")[0], complete_checkpoints(tmp_path / "b")[0]
    assert a.name == b.name == "step_0000008"
    for k in range(3):
        for key, value in flat_state(saved_client(a, k)).items():
            other = flat_state(saved_client(b, k))[key]
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                torch.testing.assert_close(other, value, rtol=1e-6, atol=1e-9, msg=f"client {k} {key}")
            else:
                assert torch.equal(other, value) if isinstance(value, torch.Tensor) else other == value, (k, key)
    for key, value in flat_state(load_rank_file(a, 0)["generator"]).items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            torch.testing.assert_close(flat_state(load_rank_file(b, 0)["generator"])[key], value, rtol=1e-6,
                                       atol=1e-9, msg=key)
    dedicated = load_config("configs/default.yaml", [*args, "train.steps=10", "train.generator_rank=dedicated",
                                                     f"run.dir={tmp_path / 'b'}"])
    with pytest.raises(ConfigError, match="train.generator_rank"):
        checkpoint.check_compatible(checkpoint.read_manifest(b), dedicated, 4, b, regroups=True)


@pytest.mark.dist
def test_both_exchange_modes_log_the_same_losses_and_real_byte_counts(tmp_path):
    """The metrics a user reads must not depend on the wire format (a misaligned stats slot once
    logged zero D losses and bytes in params mode)."""
    args = [*TWO_CLIENTS, *SMALL, "algo.name=f2u", "train.steps=6", "run.log_every=3"]
    cfgs = [load_config("configs/default.yaml", [*args, f"comm.exchange={mode}", f"run.dir={tmp_path / mode}"])
            for mode in ("feedback", "params")]
    spawn(train_in_one_group, 2, cfgs)
    fb, pm = read_metrics(tmp_path / "feedback"), read_metrics(tmp_path / "params")
    for a, b in zip(fb, pm):
        np.testing.assert_allclose(a["d_loss"], b["d_loss"], rtol=1e-4)
        assert min(a["d_loss"]) > 0
    # from the second interval on, every rank has sent something; params mode sends D itself
    assert all(v > 0 for v in fb[1]["bytes_sent"] + pm[1]["bytes_sent"])
    assert min(pm[1]["bytes_sent"]) > max(fb[1]["bytes_sent"][1:])


HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


def _host_reads_by_ddgan(monkeypatch, cfg) -> int:
    """Run ``cfg`` in this process (a world of one) and count the calls from ddgan's own code that
    read a tensor on the host (each one a stall of a GPU's stream)."""
    import inspect

    from ddgan.train import run
    count = 0
    package = str(Path(__file__).resolve().parents[1] / "ddgan")

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            nonlocal count
            if inspect.currentframe().f_back.f_code.co_filename.startswith(package):
                count += 1
            return original(self, *args, **kwargs)
        return wrapper

    with monkeypatch.context() as patch:
        for name in HOST_READS:
            patch.setattr(torch.Tensor, name, counting(name))
        run(cfg)
    return count


@pytest.mark.parametrize("extra", [
    ["algo.name=f2a", "comm.exchange=feedback"],
    ["algo.name=f2a", "comm.exchange=params", "algo.lambda_objective=discriminator"],
    ["algo.name=f2u_balanced", "comm.exchange=feedback"],
])
def test_a_steady_state_step_reads_nothing_on_the_host(tmp_path, monkeypatch, extra):
    """A run of 12 steps reads as often as one of 6: every read belongs to the start, the one log
    record, grid and checkpoint at the end, not to the steps in between."""
    args = ["partition.clients=1", "partition.scheme=iid", *SMALL, *extra, "run.log_every=1000",
            "run.sample_every=1000", "run.checkpoint_every=1000", "run.stop_check_every=1000"]
    reads = [_host_reads_by_ddgan(monkeypatch, load_config(None, [*args, f"train.steps={steps}",
                                                                  f"run.dir={tmp_path / str(steps)}"]))
             for steps in (6, 12)]
    assert reads[0] > 0                      # the counter sees ddgan's reads (e.g. the log record's)
    assert reads[1] == reads[0]


@pytest.mark.parametrize("shape", [(70, 1, 16, 16), (5, 3, 32, 32), (1, 1, 28, 28)])
def test_sample_grids_are_torchvisions_pixel_for_pixel(tmp_path, shape):
    from PIL import Image
    from torchvision.utils import save_image

    images = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2     # some out of range
    save_grid(images, tmp_path / "ours.png")
    big = torch.nn.functional.interpolate(images, scale_factor=32 // shape[-1], mode="nearest") \
        if shape[-1] < 32 else images
    save_image(big, tmp_path / "theirs.png", nrow=int(np.ceil(np.sqrt(shape[0]))), normalize=True,
               value_range=(-1.0, 1.0), padding=2)
    ours, theirs = (np.asarray(Image.open(tmp_path / f).convert("RGB")) for f in ("ours.png", "theirs.png"))
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


def test_a_missing_dataset_is_one_line_before_any_rank_starts_and_said_once_under_bare_torchrun(tmp_path):
    missing = ["data.name=mnist", f"data.root={tmp_path / 'nowhere'}", f"run.dir={tmp_path / 'run'}"]
    launcher = subprocess.run(["launch/cpu.sh", "configs/default.yaml", *missing], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
    assert launcher.returncode == 2
    errors = [l for l in launcher.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: data.root = ") and "mnist not found" in errors[0]
    assert "Traceback" not in launcher.stderr and not (tmp_path / "run").exists()     # torchrun never started
    bare = torchrun(2, "--config", "configs/default.yaml", "partition.clients=2", "partition.scheme=iid", *missing,
                    timeout=120)
    assert bare.returncode != 0
    assert len([l for l in bare.stderr.splitlines() if l.startswith("error:")]) == 1
