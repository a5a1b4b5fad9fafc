"""A rank that stops making progress says so and exits, on every backend.

Under gloo a collective blocks the host until it completes or ``comm.timeout_s`` passes, so a dead
or stuck peer surfaces as an error in :class:`ddgan.runtime.comm.Comm`, with a message. Under NCCL
a collective returns once it is queued: a rank whose peer died blocks at its next host read, and
NCCL's own watchdog later aborts the process (SIGABRT) with no word of which step or which peer.

:class:`Watchdog` keeps ddgan's promise there: a thread watches the step counter of the rank's
:class:`Comm`, and when it has not moved for ``comm.timeout_s``, it marks the rank as stalled in
the rendezvous store, waits briefly for the other survivors' marks, prints one line naming the
step and the ranks that left none (dead or stuck), and exits 1. It is on under NCCL (``comm.watchdog:
auto``), and the process group's own timeout is then raised (:func:`group_timeout_s`) so that
ddgan speaks before NCCL aborts. It arms at step 1: loading data and resuming take their time.
"""
from __future__ import annotations

import os
import sys
import threading
import time

from ddgan.core.config import Config
from ddgan.runtime.comm import Comm


def watching(cfg: Config, backend: str, world: int) -> bool:
    """Whether ``cfg`` runs with the watchdog on this backend (alone, no peer can stall a rank)."""
    return world > 1 and (cfg.comm.watchdog == "always" or (cfg.comm.watchdog == "auto" and backend == "nccl"))


def group_timeout_s(cfg: Config, backend: str, world: int) -> float:
    """The process group's timeout: ``comm.timeout_s``, or with the watchdog on, twice that plus
    half a minute, so that the backend's own timeout fires only if the watchdog could not."""
    t = cfg.comm.timeout_s
    return 2 * t + 30 if watching(cfg, backend, world) else t


class Watchdog:
    def __init__(self, comm: Comm, timeout_s: float, poll_s: float = 0.5):
        self.comm, self.timeout_s, self.poll_s = comm, timeout_s, poll_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ddgan-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        step, since = self.comm.step, time.monotonic()
        while not self._done.wait(self.poll_s):
            now = time.monotonic()
            if self.comm.step != step:
                step, since = self.comm.step, now
            elif step >= 1 and now - since > self.timeout_s:
                self._stalled(step, since)

    def _stalled(self, step: int, since: float) -> None:
        comm = self.comm
        missing = comm.missing_ranks(since, "ddgan/stalled/")
        who = f"; no word from rank(s) {missing}" if missing else ""
        print(f"error: [rank {comm.rank}] step {step}: no progress for {self.timeout_s:g}s (comm.timeout_s) on rank "
              f"{comm.rank} of {comm.world}{who} (a peer died or hangs; the watchdog stopped this rank)",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)
