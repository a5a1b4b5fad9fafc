"""Faults: dead and stuck peers, NaN losses, elastic restarts under SIGKILL, damaged checkpoints, full disks.

Each test runs the real trainer in real processes (plain ranks or torchrun) and checks what the
user sees (exit code, one error line naming step and rank) and that no checkpoint is lost.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import ROOT, free_port
from ddgan.core.config import load_config
from ddgan.core.errors import CheckpointError, ConfigError
from ddgan.runtime.checkpoint import complete_checkpoints, load_rank_file

pytestmark = pytest.mark.dist

SMALL = ["model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=16", "partition.scheme=iid"]


def ranks(world: int, args: list[str], timeout_s: float = 20) -> list[subprocess.Popen]:
    """``world`` plain ``python -m ddgan.train`` processes forming one gloo group (no torchrun)."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
               "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "ddgan.train", f"partition.clients={world}", *SMALL,
               f"comm.timeout_s={timeout_s}", *args]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def wait_for(predicate, timeout: float = 120, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("how, watchdog", [("dies", "auto"), ("hangs", "auto"), ("hangs", "always")])
def test_survivors_exit_with_step_and_missing_rank(tmp_path, how, watchdog):
    """A peer that dies (SIGKILL) or hangs (SIGSTOP): the others exit 1 within the timeout, naming it.

    With the watchdog on (NCCL's default; forced here on gloo, whose own timeout it then outlasts),
    the survivors are still blocked in a collective when ddgan's watchdog ends them: what NCCL
    ranks see, since their collectives return before they complete."""
    timeout_s = 6
    procs = ranks(3, ["train.steps=100000", "run.checkpoint_every=5", f"run.dir={tmp_path}",
                      f"comm.watchdog={watchdog}"], timeout_s=timeout_s)
    try:
        wait_for(lambda: complete_checkpoints(tmp_path))
        victim = procs[2]
        victim.send_signal(signal.SIGKILL if how == "dies" else signal.SIGSTOP)
        start = time.monotonic()
        outputs = [p.communicate(timeout=60) for p in procs[:2]]
        elapsed = time.monotonic() - start
    finally:
        for p in procs:
            p.kill()
    assert elapsed < timeout_s + 15
    for rank, (p, (_, err)) in enumerate(zip(procs[:2], outputs)):
        assert p.returncode == 1, err
        lines = error_lines(err)
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: [rank {rank}] step ") and "no word from rank(s) [2]" in lines[0], lines[0]
        assert ("the watchdog stopped this rank" in lines[0]) == (watchdog == "always"), lines[0]
        assert "Traceback" not in err
    assert complete_checkpoints(tmp_path)          # what was saved is still there


def test_nan_loss_stops_every_rank_and_keeps_the_last_good_checkpoint(tmp_path):
    procs = ranks(2, ["train.steps=40", "run.checkpoint_every=1", f"run.dir={tmp_path}", "train.lr_d=1e8",
                      "train.d_optimizer=sgd", "comm.exchange=params", "model.d_norm=none"])
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], outs[0][1][-1500:] + outs[1][1][-1500:]
    lines = error_lines(outs[0][1]) + error_lines(outs[1][1])
    assert lines == ["error: step 2: the generator loss is nan: client(s) [0, 1] scored the generated batch "
                     "with non-finite values; stopping, the newest complete checkpoint is kept"]
    newest = complete_checkpoints(tmp_path)[0]
    assert newest.name == "step_0000001"
    state = load_rank_file(newest, 0)
    assert all(torch.isfinite(v).all() for v in state["generator"]["G"].values() if v.is_floating_point())


def _torchrun(world: int, args: list[str], restarts: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(world),
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--max_restarts", str(restarts),
           "-m", "ddgan.train", f"partition.clients={world}", *SMALL, "comm.timeout_s=30", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _workers(agent: subprocess.Popen) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def test_elastic_restart_after_sigkill_ends_like_an_uninterrupted_run(tmp_path):
    """SIGKILL workers at random moments, one while a checkpoint is being written; torchrun restarts
    the group, it resumes from the newest complete checkpoint and ends bit-identical."""
    steps = 40
    common = [f"train.steps={steps}", "run.checkpoint_every=4", "run.log_every=10", "algo.name=f2u_balanced"]
    straight = _torchrun(2, [*common, f"run.dir={tmp_path / 'straight'}"], restarts=0)
    straight_out, straight_err = straight.communicate(timeout=600)
    assert straight.returncode == 0, straight_err[-2000:]
    agent = _torchrun(2, [*common, f"run.dir={tmp_path / 'killed'}"], restarts=4)
    kills = []
    ckpts = tmp_path / "killed" / "checkpoints"

    def newest_step() -> int:
        # by step, not by count: pruning keeps the count at run.keep_checkpoints
        return max((int(m.parent.name[5:]) for m in ckpts.glob("step_*/manifest.json")), default=0)

    def killer():
        # 1) kill a worker the moment a rank file is being written (a .tmp exists) ...
        try:
            wait_for(lambda: any(ckpts.glob("step_*/*.tmp")) or agent.poll() is not None, timeout=300, every=0.0005)
            for pid in _workers(agent)[-1:]:
                os.kill(pid, signal.SIGKILL)
                kills.append(("during checkpoint write", pid))
            # 2) ... then another at an arbitrary moment, once the restarted group has saved again
            seen = newest_step()
            wait_for(lambda: newest_step() > seen or agent.poll() is not None, timeout=300)
            time.sleep(0.37)
            wait_for(lambda: _workers(agent) or agent.poll() is not None, timeout=60)   # between restarts
            for pid in _workers(agent)[:1]:
                os.kill(pid, signal.SIGKILL)
                kills.append(("arbitrary moment", pid))
        except AssertionError:
            pass

    thread = threading.Thread(target=killer)
    thread.start()
    out, err = agent.communicate(timeout=900)
    thread.join()
    assert agent.returncode == 0, err[-3000:]
    assert len(kills) == 2, kills
    assert out.count("resumed from step") >= 1, out
    a, b = complete_checkpoints(tmp_path / "straight")[0], complete_checkpoints(tmp_path / "killed")[0]
    assert a.name == b.name == f"step_{steps:07d}"
    for rank in range(2):
        sa, sb = load_rank_file(a, rank), load_rank_file(b, rank)
        for name, value in sa["clients"][str(rank)]["D"].items():
            assert torch.equal(value, sb["clients"][str(rank)]["D"][name]), name
    for name, value in load_rank_file(a, 0)["generator"]["G"].items():
        assert torch.equal(value, load_rank_file(b, 0)["generator"]["G"][name]), name


def _train(world: int, args: list[str]) -> list[tuple[int, str, str]]:
    procs = ranks(world, args)
    outs = [p.communicate(timeout=180) for p in procs]
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs)]


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    args = ["run.checkpoint_every=5", f"run.dir={tmp_path}"]
    assert all(rc == 0 for rc, _, _ in _train(2, ["train.steps=10", *args]))
    newest = complete_checkpoints(tmp_path)[0]
    damaged = newest / "rank_1.pt"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    results = _train(2, ["train.steps=12", *args])
    assert all(rc == 0 for rc, _, _ in results), results
    assert "resumed from step 5" in results[0][1]
    assert "truncated" in results[1][2]                       # rank 1 says why it skipped step 10
    assert complete_checkpoints(tmp_path)[0].name == "step_0000012"


def test_checkpoint_from_another_config_is_refused_naming_the_fields(tmp_path):
    assert all(rc == 0 for rc, _, _ in _train(2, ["train.steps=4", f"run.dir={tmp_path}"]))
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    results = _train(2, ["train.steps=8", f"run.dir={tmp_path}", "model.d_width=16", "train.lr_g=0.001"])
    assert [rc for rc, _, _ in results] == [2, 2]
    (line,) = error_lines(results[0][2]) + error_lines(results[1][2])
    assert "checkpoint from another config" in line
    assert "model.d_width: 8 -> 16" in line and "train.lr_g: 0.0004 -> 0.001" in line
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_a_checkpoint_that_is_not_ours_is_never_unpickled(tmp_path):
    assert all(rc == 0 for rc, _, _ in _train(1, ["train.steps=2", "algo.name=centralized", f"run.dir={tmp_path}"]))
    where = complete_checkpoints(tmp_path)[0]
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = where / "rank_0.pt"
    evil.write_bytes(pickle.dumps({"step": 2, "client": Payload()}))
    manifest = json.loads((where / "manifest.json").read_text())
    import hashlib
    manifest["files"]["rank_0.pt"] = {"bytes": evil.stat().st_size, "sha256": hashlib.sha256(evil.read_bytes()).hexdigest()}
    (where / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_rank_file(where, 0)
    (rc, _, err), = _train(1, ["train.steps=4", "algo.name=centralized", f"run.dir={tmp_path}"])
    assert rc == 2 and "none of the 1 checkpoints verifies" in err and "cannot be loaded safely" in err
    assert not marker.exists()
    foreign = tmp_path / "other"
    (foreign / "checkpoints" / "step_0000001").mkdir(parents=True)
    (foreign / "checkpoints" / "step_0000001" / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    (rc, _, err), = _train(1, ["train.steps=4", "algo.name=centralized", f"run.dir={foreign}"])
    assert rc == 2 and error_lines(err) == [f"error: {foreign}/checkpoints/step_0000001: not a ddgan checkpoint "
                                            f"(manifest format 'something-else')"]


def test_unwritable_run_dir_and_missing_dataset_fail_before_training(tmp_path):
    (rc, out, err), = _train(1, ["algo.name=centralized", "run.dir=/proc/ddgan-run"])
    assert rc == 2 and error_lines(err) == [
        "error: run.dir = '/proc/ddgan-run': cannot create it (No such file or directory)"]
    (rc, out, err), = _train(1, ["algo.name=centralized", f"run.dir={tmp_path / 'r'}", "data.name=mnist",
                                 f"data.root={tmp_path / 'nodata'}"])
    assert rc == 2 and len(error_lines(err)) == 1 and "mnist not found in" in err and "data.download=true" in err


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (to fill a disk for real)")
    yield where
    subprocess.run(["umount", "-l", str(where)])


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(small_disk):
    run = small_disk / "run"
    args = [f"run.dir={run}", "run.checkpoint_every=5", "run.sample_every=1000"]
    assert all(rc == 0 for rc, _, _ in _train(2, ["train.steps=5", *args]))
    good = complete_checkpoints(run)[0]
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 20_000))      # room for metrics, not a checkpoint
    results = _train(2, ["train.steps=10", *args])
    assert [rc for rc, _, _ in results] == [1, 1]
    lines = error_lines(results[0][2]) + error_lines(results[1][2])
    assert any("step 10: checkpoint not written" in l and "No space left on device" in l for l in lines), lines
    assert complete_checkpoints(run)[0] == good
    assert load_rank_file(good, 0)["step"] == 5 and load_rank_file(good, 1)["step"] == 5
    assert not list(run.glob("checkpoints/*/*.tmp"))


@pytest.mark.parametrize("algo, how", [("f2u", "SIGUSR1"), ("gossip", "STOP file")])
def test_a_stop_request_checkpoints_every_rank_at_one_step_and_exits_cleanly(tmp_path, algo, how):
    """What the SLURM templates do before the time limit: ask, get one checkpoint, exit 0, resume later."""
    extra = ["topology.kind=path"] if algo == "gossip" else []
    args = [f"algo.name={algo}", *extra, "run.stop_check_every=5", "run.checkpoint_every=1000", "run.log_every=5",
            f"run.dir={tmp_path}"]
    procs = ranks(2, [*args, "train.steps=100000"])
    try:
        logged = lambda: (tmp_path / "metrics.jsonl").exists() and (tmp_path / "metrics.jsonl").stat().st_size > 0
        wait_for(lambda: logged() or any(p.poll() is not None for p in procs), timeout=120)
        if how == "SIGUSR1":
            procs[1].send_signal(signal.SIGUSR1)
        else:
            (tmp_path / "STOP").touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    newest = complete_checkpoints(tmp_path)[0]
    stopped_at = int(newest.name[5:])
    assert stopped_at % 5 == 0 and 0 < stopped_at < 100000
    assert not (tmp_path / "STOP").exists()          # cleared, so that a requeued job trains on
    (rc, out, err), _ = _train(2, [*args, f"train.steps={stopped_at + 3}"])
    assert rc == 0 and f"resumed from step {stopped_at}" in out, err[-2000:]
    assert complete_checkpoints(tmp_path)[0].name == f"step_{stopped_at + 3:07d}"


@pytest.mark.parametrize("backend, local_rank, expect", [
    ("nccl", 0, "cuda:0"),
    ("nccl", 1, "LOCAL_RANK = 1 but this node has 1 GPU(s): NCCL needs one GPU per rank on a node"),
    ("gloo", 3, "cuda:0"),          # gloo ranks share the node's GPUs, round robin
])
def test_ranks_beyond_the_gpu_count_are_a_clear_error_under_nccl_only(monkeypatch, backend, local_rank, expect):
    """A machine with one GPU, as torch.cuda would describe it (no GPU is touched: set_device is recorded)."""
    from ddgan.runtime.distributed import _device_and_backend
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    cfg = load_config(None, ["train.device=cuda", f"comm.backend={backend}"])
    if expect.startswith("cuda"):
        device, chosen_backend = _device_and_backend(cfg, local_rank)
        assert str(device) == expect and chosen == [device] and chosen_backend == backend
    else:
        with pytest.raises(ConfigError, match=re.escape(expect)):
            _device_and_backend(cfg, local_rank)
