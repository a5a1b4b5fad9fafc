"""Shared test helpers: real gloo process groups on 127.0.0.1, and small configs."""
from __future__ import annotations

import os
import socket
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ddgan.runtime.checkpoint import flat_state  # noqa: F401  (the tests' exact comparisons)
from ddgan.runtime.distributed import cpu_share

# The suite's equivalences and bit-exact resumes are the CPU's (GPU kernels need train.deterministic,
# issue 35): hide any GPU from the tests and every process they start.
os.environ["CUDA_VISIBLE_DEVICES"] = ""

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The pytest-xdist workers share the cores: each computes (references, classifiers, evaluations) on
# its share of them, and so do the processes it starts. Beside a running benchmark,
# test_equivalence's float64 reference steps took 1.3-5.3 s per 3 steps at 2 threads, 0.1-0.3 s at 1.
THREADS = cpu_share(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1)))
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn, args, errors) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    try:
        fn(rank, *args)
    except BaseException:
        errors.put((rank, traceback.format_exc()))
        sys.exit(1)


def spawn(fn, world: int, *args, timeout: float = 240.0) -> None:
    """Run ``fn(rank, *args)`` in ``world`` fresh processes that form a real gloo group."""
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, fn, args, errors)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    if failures or alive:
        msg = "\n".join(f"--- rank {r}:\n{tb}" for r, tb in sorted(failures))
        pytest.fail(f"{len(alive)} rank(s) hung; failures:\n{msg}" if alive else msg)


def saved_client(where, k: int) -> dict:
    """Client k's state in a forgiver-first checkpoint, from whichever rank hosted it."""
    from ddgan.core.config import config_from_dict
    from ddgan.forgiver.layout import Layout
    from ddgan.runtime.checkpoint import load_rank_file, read_manifest

    manifest = read_manifest(where)
    layout = Layout.of(config_from_dict(manifest["config"]))
    return load_rank_file(where, layout.rank_of(k), manifest)["clients"][str(k)]


def train_in_one_group(rank: int, cfgs) -> None:
    """A spawn target: every rank runs ``ddgan.train.run`` on each config in turn, in one gloo
    group (re-creating groups costs seconds)."""
    import torch.distributed as dist

    from ddgan.train import run
    dist.init_process_group("gloo")
    try:
        for cfg in cfgs:
            run(cfg)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="session")
def digits_classifier_cache(tmp_path_factory) -> Path:
    """One classifier cache for the whole run, shared by the pytest-xdist workers: the digits
    classifier is trained once (under a lock), not once per worker and fixture."""
    import fcntl

    from ddgan.core.config import load_config
    from ddgan.eval.classifier import load_or_train

    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "classifiers"
    cache.mkdir(exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load_or_train(load_config(None, []).data, cache, log=lambda *_: None)
    return cache


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST/Fashion-MNIST not at {SHARED_DATA} (only the project's own machines have it)")
    return SHARED_DATA


def make_configs():
    """configs/paper/make_configs.py as a module (it is a script, not part of the package)."""
    sys.path.insert(0, str(ROOT / "configs" / "paper"))
    try:
        import make_configs
    finally:
        sys.path.pop(0)
    return make_configs
