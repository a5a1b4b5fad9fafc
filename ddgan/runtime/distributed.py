"""Process-group setup and teardown in one place, from the environment torchrun sets.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/default.yaml

reads RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (plus MASTER_ADDR/MASTER_PORT); run as a
plain ``python -m ddgan.train`` it is a world of one. The device is ``cuda:LOCAL_RANK`` with
NCCL when CUDA is present, else the CPU with gloo (``comm.backend`` and ``train.device``
override; over gloo, ranks may share a GPU). Every collective times out after ``comm.timeout_s``; the group is destroyed on every
exit path, error included, so that peers blocked on this rank fail fast instead of hanging. A
program that already initialised the default group keeps it (and its teardown).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist

from ddgan.core.config import Config
from ddgan.core.errors import ConfigError, TrainingError
from ddgan.runtime.watchdog import group_timeout_s


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where tensors meet the backend: the GPU under NCCL; the CPU under gloo, whose collectives
        take CPU tensors (ranks that train on GPUs over gloo stage their messages through it)."""
        return self.device if self.backend == "nccl" else torch.device("cpu")


def _device_and_backend(cfg: Config, local_rank: int, existing: str | None = None) -> tuple[torch.device, str]:
    """``cuda:LOCAL_RANK`` with NCCL where CUDA is, else the CPU with gloo; ``train.device`` and
    ``comm.backend`` override, and a group that already ``existing`` keeps its backend. NCCL wants a
    GPU of its own per rank; over gloo, ranks may share GPUs (rank r on ``cuda:(LOCAL_RANK mod
    GPUs)``), at the cost of staging every message on the CPU."""
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda': CUDA is not available on this machine")
    cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    backend = existing or (cfg.comm.backend if cfg.comm.backend != "auto" else ("nccl" if cuda else "gloo"))
    if backend == "nccl" and not cuda:
        raise ConfigError("comm.backend = 'nccl': NCCL needs CUDA devices; use gloo on the CPU")
    if not cuda:
        return torch.device("cpu"), backend
    gpus = torch.cuda.device_count()
    if backend == "nccl" and local_rank >= gpus:
        raise ConfigError(f"LOCAL_RANK = {local_rank} but this node has {gpus} GPU(s): NCCL needs one GPU per "
                          f"rank on a node; start at most {gpus} ranks per node, or use comm.backend=gloo to "
                          f"let ranks share GPUs", same_on_all_ranks=False)
    device = torch.device("cuda", local_rank % gpus)
    torch.cuda.set_device(device)
    return device, backend


def _store(rank: int, world: int, timeout: timedelta) -> dist.Store:
    """The env:// rendezvous store, with a key prefix per torchrun restart.

    torchrun keeps one store across restarts; without a fresh prefix a restarted rank can read a
    dead predecessor's gloo address and fail to connect ("connectFullMesh ... Connection refused"),
    which burns every remaining restart.
    """
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=timeout))
    return dist.PrefixStore(f"ddgan/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def usable_cores() -> int:
    """The cores this process may run on: its affinity (under SLURM the task's ``--cpus-per-task``,
    not the node's count), where the platform has one."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_share(processes: int) -> int:
    """Threads for one of ``processes`` processes sharing :func:`usable_cores`: oversubscribed, a
    multi-threaded op waits for a core another process holds, and every process slows down."""
    return max(1, usable_cores() // max(1, processes))


def make_deterministic() -> None:
    """Kernels that give the same bits on every run (train.deterministic): on a GPU, no TF32, cuDNN's
    deterministic algorithms without autotuning, and cuBLAS on a fixed workspace; an op with no
    deterministic kernel raises instead of running. The CPU's kernels already are deterministic."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


@contextmanager
def process_group(cfg: Config) -> Iterator[Dist]:
    """Join (or, alone, create) the default process group; always destroy it on the way out."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    device, backend = _device_and_backend(cfg, local_rank, dist.get_backend() if dist.is_initialized() else None)
    if device.type == "cpu":
        torch.set_num_threads(cpu_share(local_world))
    if cfg.train.deterministic:
        make_deterministic()
    if dist.is_initialized():
        # Called from a program that owns the group already (tests, notebooks): use it, leave it.
        yield Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)
        return
    timeout = timedelta(seconds=group_timeout_s(cfg, backend, world))
    if "RANK" in os.environ:
        dist.init_process_group(backend, store=_store(rank, world, timeout), rank=rank, world_size=world,
                                timeout=timeout, device_id=device if device.type == "cuda" else None)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    if backend == "nccl":
        # NCCL wants the group's first collective to include every rank; gossip's first transfer is
        # a point-to-point batch between neighbours only.
        dist.barrier(device_ids=[device.index])
    try:
        yield Dist(rank, world, local_rank, device, backend)
        # Leave together: a gloo rank that tears down while a peer still flushes its last
        # messages can abort the peer at exit ("terminate called without an active exception").
        try:
            dist.barrier()
        except (RuntimeError, dist.DistError) as exc:
            raise TrainingError(f"training finished, but a peer did not reach the final barrier within "
                                f"comm.timeout_s = {cfg.comm.timeout_s:g}s: {str(exc).strip()[:200]}") from None
    finally:
        dist.destroy_process_group()
