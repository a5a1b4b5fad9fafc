"""Everything that crosses the wire, called explicitly from the training loops.

:class:`Comm` wraps the few collectives and point-to-point transfers the trainers use. Each call
names what it carries (for error messages), counts the logical payload bytes this rank sends, and
times itself. When a peer dies or a collective exceeds ``comm.timeout_s``, it raises
:class:`TrainingError` naming the step, the operation and, where the survivors can tell, the
missing ranks. Every method that runs a collective must be called by every rank in the same order.

Byte accounting is the payload each rank hands to the network, independent of the algorithm
the backend uses: broadcast and scatter - the source sends (K-1) parts; all_gather - each rank
sends its part to K-1 peers; gather and reduce - each non-destination rank sends its tensor once;
send - its size.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from ddgan.core.compat import all_gather_into_tensor
from ddgan.core.errors import TrainingError

_FAILURES = (RuntimeError, dist.DistError, ConnectionError, TimeoutError)


def module_tensors(module: torch.nn.Module) -> dict[str, Tensor]:
    """Parameters then buffers, by name: what defines a network on the wire."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


_ALIGN = 16  # bytes; every tensor starts aligned so that unpacking can return views


def _padded(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


def _home(tensors: Sequence[Tensor]) -> torch.device:
    """Where a message of ``tensors`` lives: their accelerator if any has one. Optimisers keep small
    tensors on the CPU beside device weights (Adam's ``step``); those visit the accelerator."""
    return next((t.device for t in tensors if t.device.type != "cpu"), torch.device("cpu"))


def packed_size(tensors: Sequence[Tensor]) -> int:
    return sum(_padded(t.numel() * t.element_size()) for t in tensors)


def pack(tensors: Sequence[Tensor]) -> Tensor:
    """Tensors of any dtypes as one flat uint8 buffer (bit-exact, no conversion), on their accelerator
    if any of them has one."""
    parts, home = [], _home(tensors)
    for t in tensors:
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8).to(home)
        pad = _padded(raw.numel()) - raw.numel()
        parts += [raw, raw.new_zeros(pad)] if pad else [raw]
    return torch.cat(parts)


def unpack(buffer: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Inverse of :func:`pack`: views into ``buffer`` with the shapes and dtypes of ``like``."""
    out, pos = [], 0
    for t in like:
        n = t.numel() * t.element_size()
        out.append(buffer[pos:pos + n].view(t.dtype).view(t.shape))
        pos += _padded(n)
    return out


class Comm:
    def __init__(self, rank: int, world: int, timeout_s: float, allowed_peers: Sequence[int] | None = None,
                 device: torch.device | str = "cpu"):
        self.rank, self.world, self.timeout_s = rank, world, timeout_s
        # The device the backend moves tensors from: every tensor visits it on its way to a collective.
        # NCCL moves CUDA tensors only (checksums and stop flags built on the CPU go there); gloo's
        # collectives take CPU tensors, so ranks that train on a GPU over gloo stage through the CPU.
        self.device = torch.device(device)
        # Point-to-point peers this rank may talk to (gossip: its one-hop neighbours); None = all.
        self.allowed_peers = None if allowed_peers is None else frozenset(allowed_peers)
        self.step = 0
        self.bytes_sent = 0
        self._seconds = 0.0
        self._timed: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []    # on a GPU, read at :attr:`seconds`
        self.log: list[tuple[str, int]] = []    # (operation, peer or -1) of every p2p transfer

    # ------------------------------------------------------------------ bookkeeping
    @property
    def seconds(self) -> float:
        """Time spent in collectives so far. On a GPU, NCCL's calls return once queued, so they are
        timed by CUDA events around them on the rank's stream, read here (a host sync: at log records)."""
        if self._timed:
            self._timed[-1][1].synchronize()
            self._seconds += sum(start.elapsed_time(end) for start, end in self._timed) / 1000
            self._timed.clear()
        return self._seconds

    def _run(self, what: str, sent_bytes: int, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) \
            if self.device.type == "cuda" else None
        if events is not None:
            events[0].record()
        try:
            fn()
        except _FAILURES as exc:
            raise TrainingError(self._failure_message(what, exc, start)) from exc
        if events is not None:
            events[1].record()
            self._timed.append(events)
        else:
            self._seconds += time.perf_counter() - start
        self.bytes_sent += sent_bytes

    def _failure_message(self, what: str, exc: BaseException, started: float) -> str:
        missing = self.missing_ranks(started)
        who = f"; no word from rank(s) {missing}" if missing else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"step {self.step}: {what} failed on rank {self.rank} of {self.world}{who} "
                f"(a peer died, or the collective exceeded comm.timeout_s = {self.timeout_s:g}s): {first[:300]}")

    def missing_ranks(self, started: float, prefix: str | None = None) -> list[int]:
        """Ranks that did not report this failure through the rendezvous store in time.

        Survivors of a failed collective each leave a mark; a rank that left none is gone or stuck.
        A survivor may see the failure late: one connected to the dead peer fails at once, while one
        waiting on a live peer only times out ``timeout_s`` after the collective began. So the poll
        lasts until then (plus a margin), and ends as soon as every rank is accounted for.
        """
        if self.world == 1:
            return []
        # Until the store says otherwise: rank 0 hosts it, so a store that cannot be reached at all
        # means rank 0 is gone; one that vanishes mid-poll leaves the last answer standing.
        missing = [r for r in range(self.world) if r != self.rank] if self.rank != 0 else []
        try:
            store = dist.distributed_c10d._get_default_store()
            prefix = prefix or f"ddgan/failed/{self.step}/"
            store.set(prefix + str(self.rank), "1")
            deadline = max(started + self.timeout_s + 2.0, time.perf_counter() + 1.0)
            while True:
                missing = [r for r in range(self.world) if not store.check([prefix + str(r)])]
                if not missing or time.perf_counter() > deadline:
                    return missing
                time.sleep(0.2)
        except Exception:
            return missing

    def _in_place(self, what: str, sent: int, tensor: Tensor, fn: Callable[[Tensor], None]) -> Tensor:
        """Run the in-place collective ``fn`` on ``tensor``, through the group's device if it lives elsewhere."""
        if tensor.device == self.device:
            self._run(what, sent, lambda: fn(tensor))
            return tensor
        moved = tensor.to(self.device)
        self._run(what, sent, lambda: fn(moved))
        tensor.copy_(moved)
        return tensor

    # ------------------------------------------------------------------ collectives
    def broadcast(self, tensor: Tensor, src: int, what: str) -> Tensor:
        """Collective: ``tensor`` from ``src`` to every rank (in place; returns it)."""
        sent = tensor.numel() * tensor.element_size() * (self.world - 1) if self.rank == src else 0
        return self._in_place(f"broadcast of {what}", sent, tensor, lambda t: dist.broadcast(t, src))

    def all_gather(self, tensor: Tensor, what: str) -> Tensor:
        """Collective: every rank's ``tensor`` (same shape everywhere), stacked in rank order."""
        flat = tensor.contiguous().reshape(-1).to(self.device)
        out = torch.empty(self.world * flat.numel(), dtype=tensor.dtype, device=self.device)
        sent = flat.numel() * flat.element_size() * (self.world - 1)
        self._run(f"all_gather of {what}", sent, lambda: all_gather_into_tensor(out, flat))
        return out.view(self.world, *tensor.shape).to(tensor.device)

    def gather(self, tensor: Tensor, dst: int, what: str) -> Tensor | None:
        """Collective: every rank's ``tensor`` (same shape everywhere), stacked in rank order on
        ``dst`` only (None elsewhere): unlike all_gather, no rank sees another's."""
        flat = tensor.contiguous().reshape(-1).to(self.device)
        out = [torch.empty_like(flat) for _ in range(self.world)] if self.rank == dst else None
        sent = flat.numel() * flat.element_size() if self.rank != dst else 0
        self._run(f"gather of {what}", sent, lambda: dist.gather(flat, out, dst))
        return torch.stack(out).view(self.world, *tensor.shape).to(tensor.device) if out is not None else None

    def scatter(self, rows: Tensor | None, like: Tensor, src: int, what: str) -> Tensor:
        """Collective: row r of ``rows`` (on ``src``; world x ``like``'s shape) lands on rank r."""
        out = torch.empty(like.numel(), dtype=like.dtype, device=self.device)
        parts = list(rows.reshape(self.world, -1).to(self.device).unbind()) if self.rank == src else None
        sent = out.numel() * out.element_size() * (self.world - 1) if self.rank == src else 0
        self._run(f"scatter of {what}", sent, lambda: dist.scatter(out, parts, src))
        return out.view(like.shape).to(like.device)

    def reduce_sum(self, tensor: Tensor, dst: int, what: str) -> Tensor:
        """Collective: the sum over ranks of ``tensor`` lands in place on ``dst``."""
        sent = tensor.numel() * tensor.element_size() if self.rank != dst else 0
        return self._in_place(f"reduce of {what}", sent, tensor, lambda t: dist.reduce(t, dst, op=dist.ReduceOp.SUM))

    def all_reduce(self, tensor: Tensor, what: str, op=dist.ReduceOp.SUM) -> Tensor:
        """Collective: ``op`` over ranks, result in place on every rank."""
        # what each rank sends in a ring all_reduce (reduce-scatter, then all-gather)
        sent = tensor.numel() * tensor.element_size() * 2 * (self.world - 1) // self.world
        return self._in_place(f"all_reduce of {what}", sent, tensor, lambda t: dist.all_reduce(t, op=op))

    # ------------------------------------------------------------------ point to point
    def send_recv(self, sends: dict[int, Tensor], recvs: dict[int, Tensor], what: str) -> None:
        """Point to point: send ``sends[peer]`` and receive into ``recvs[peer]`` in one batch.

        ``batch_isend_irecv`` posts every transfer before waiting on any, so no ordering of the
        peers' calls can deadlock; each side must post the matching recv/send for each pair.
        """
        peers = set(sends) | set(recvs)
        if self.allowed_peers is not None and not peers <= self.allowed_peers:
            raise TrainingError(f"step {self.step}: rank {self.rank} tried to reach non-neighbours "
                                f"{sorted(peers - self.allowed_peers)} for {what}")
        ops = [dist.P2POp(dist.isend, t.contiguous(), p) for p, t in sorted(sends.items())]
        ops += [dist.P2POp(dist.irecv, t, p) for p, t in sorted(recvs.items())]
        self.log += [("send", p) for p in sorted(sends)] + [("recv", p) for p in sorted(recvs)]
        if not ops:
            return
        sent = sum(t.numel() * t.element_size() for t in sends.values())

        def run() -> None:
            for req in dist.batch_isend_irecv(ops):
                req.wait()

        self._run(f"point-to-point {what}", sent, run)

    def send_recv_tensors(self, sends: dict[int, Sequence[Tensor]], recvs: dict[int, Sequence[Tensor]],
                          what: str) -> dict[int, list[Tensor]]:
        """Point to point: each peer of ``sends`` gets its tensors as one packed message; from each
        peer of ``recvs`` one message arrives, unpacked into tensors shaped like ``recvs[peer]``
        (returned as views of the receive buffer; nothing is copied into ``recvs``)."""
        packed: dict[int, Tensor] = {}      # one message per list, however many peers it goes to
        for tensors in sends.values():
            if id(tensors) not in packed:
                packed[id(tensors)] = pack(tensors).to(self.device)
        buffers = {peer: torch.empty(packed_size(like), dtype=torch.uint8, device=self.device)
                   for peer, like in recvs.items()}
        self.send_recv({peer: packed[id(tensors)] for peer, tensors in sends.items()}, buffers, what)
        return {peer: unpack(buffers[peer].to(_home(recvs[peer])), recvs[peer]) for peer in recvs}


@torch.no_grad()
def copy_into(targets: Sequence[Tensor], sources: Sequence[Tensor]) -> None:
    """Overwrite each target with its source, in place (a module's tensors with received ones)."""
    for target, source in zip(targets, sources, strict=True):
        target.copy_(source)
