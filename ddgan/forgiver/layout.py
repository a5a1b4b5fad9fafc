"""Which rank holds what in the forgiver-first trainer (``train.generator_rank``).

* ``shared`` (default): K ranks; rank 0 holds G *and* client 0, rank k holds client k.
* ``dedicated``: K + 1 ranks; rank 0 holds only G, its optimiser and lambda (no data), and
  client k lives on rank k + 1. It frees the generator's device and lets ``train.pipeline``
  overlap G's update with the clients' next D step.

The gossip and fedavg trainers have one node per rank and no generator rank.

    python -m ddgan.layout --config configs/default.yaml train.generator_rank=dedicated   # prints 6
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ddgan.core.config import Config

GENERATOR_RANKS = ("shared", "dedicated")       # ``train.generator_rank``
GENERATOR_RANK = 0


@dataclass(frozen=True)
class Layout:
    clients: int
    dedicated: bool = False

    @classmethod
    def of(cls, cfg: "Config") -> "Layout":
        return cls(cfg.partition.clients, cfg.train.generator_rank == "dedicated")

    @property
    def world(self) -> int:
        return self.clients + int(self.dedicated)

    @property
    def first_client_rank(self) -> int:
        return int(self.dedicated)

    def client_of(self, rank: int) -> int | None:
        """The client ``rank`` holds, or None (the dedicated generator rank)."""
        client = rank - self.first_client_rank
        return client if 0 <= client < self.clients else None

    def rank_of(self, client: int) -> int:
        return client + self.first_client_rank

    def client_rows(self, rows):
        """The clients' rows of something every rank contributed one row to (in rank order)."""
        return rows[self.first_client_rank:]


def world_size(cfg: "Config") -> int:
    """Ranks a run of ``cfg`` needs: one per client, plus a dedicated generator rank if asked for."""
    from ddgan.core.config import TRAINERS

    if TRAINERS[cfg.algo.name] != "forgiver":
        return cfg.partition.clients
    return Layout.of(cfg).world

