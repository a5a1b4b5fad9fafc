"""Graceful stops: checkpoint and exit cleanly when asked, on every rank at the same step.

A stop is requested by SIGUSR1 to any training process, or by a file named ``STOP`` in the run
directory (what ``slurm/*.sbatch`` creates when SLURM warns of the time limit, before requeueing
the job). Ranks agree on it with a one-integer all_reduce every ``run.stop_check_every`` steps, so
no rank leaves a collective its peers are still in, and act on the answer at the next check: by
then it has long arrived, so no host waits for it (on a GPU, reading it at once would drain the
queue of kernels). A request made just before a check is acted on one check later. After the final
checkpoint, rank 0 removes the STOP file so that the requeued job trains on.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from ddgan.runtime.comm import Comm

STOP_FILE = "STOP"


_signalled = threading.Event()


def _on_signal(signum, frame) -> None:
    _signalled.set()


def listen() -> None:
    """Catch SIGUSR1 from now on (its default action kills the process): called first thing by
    ``ddgan.train``, so a request sent while the data loads is kept, not fatal."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, _on_signal)


def _mark(device: torch.device) -> "torch.cuda.Event | None":
    """An event after the work queued so far on a GPU (None elsewhere: copies there are done at once)."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record()
    return event


class StopRequest:
    def __init__(self, run_dir: Path, every: int, is_main: bool):
        self.file, self.every, self.is_main = Path(run_dir) / STOP_FILE, every, is_main
        self._asked: tuple[torch.Tensor, torch.cuda.Event | None] | None = None    # the previous check's answer
        listen()

    def check(self, comm: Comm, step: int) -> bool:
        """Collective every ``every`` steps (all_reduce MAX): True when any rank had been asked to
        stop by the previous check (the same answer on every rank)."""
        if step % self.every:
            return False
        # Only rank 0 looks at the file: one stat per check on a shared filesystem, not K.
        local = _signalled.is_set() or (self.is_main and self.file.exists())
        flag = comm.all_reduce(torch.full((1,), int(local), device=comm.device), "stop request", op=dist.ReduceOp.MAX)
        previous, self._asked = self._asked, (flag.to("cpu", non_blocking=True), _mark(comm.device))
        if previous is None:
            return False
        answer, copied = previous
        if copied is not None:
            copied.synchronize()        # recorded a check ago: long done
        return bool(answer.item())

    def clear(self) -> None:
        """Rank 0, after the stop's checkpoint: forget the request so a requeued job trains on."""
        _signalled.clear()
        if self.is_main:
            self.file.unlink(missing_ok=True)
