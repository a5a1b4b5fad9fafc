"""Which rank holds what in the forgiver-first trainer (``train.generator_rank``, ``train.client_ranks``).

* ``shared`` (default): rank 0 holds G *and* the first clients, the other ranks the rest.
* ``dedicated``: one more rank; rank 0 holds only G, its optimiser and lambda (no data), and the
  clients live on ranks 1, 2, ... It frees the generator's device and lets ``train.pipeline``
  overlap G's update with the clients' next D step.

The K clients (``partition.clients``) are hosted by R client ranks (``train.client_ranks``; 0, the
default, means R = K: one client per rank). Each client rank hosts a contiguous group of clients,
the first K mod R ranks one more than the others: 5 clients on 2 ranks are {0, 1, 2} and {3, 4}. A
rank's clients train together (:class:`ddgan.roles.ClientGroup`), and every gather carries
``per_rank`` rows per rank (padded where a rank hosts fewer), from which :meth:`Layout.client_rows`
keeps the K clients' rows in client order.

The gossip and fedavg trainers have one node per rank and no generator rank.

    python -m ddgan.layout --config configs/default.yaml train.client_ranks=1   # prints the plan
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
    client_ranks: int = 0         # 0: one rank per client

    @classmethod
    def of(cls, cfg: "Config") -> "Layout":
        return cls(cfg.partition.clients, cfg.train.generator_rank == "dedicated", cfg.train.client_ranks)

    @property
    def hosts(self) -> int:
        """The number of ranks that host clients."""
        return self.client_ranks or self.clients

    @property
    def world(self) -> int:
        return self.hosts + int(self.dedicated)

    @property
    def first_client_rank(self) -> int:
        return int(self.dedicated)

    @property
    def per_rank(self) -> int:
        """The most clients one rank hosts: the rows each rank contributes to a gather."""
        return -(-self.clients // self.hosts)

    def clients_of(self, rank: int) -> range:
        """The clients ``rank`` hosts (empty on the dedicated generator rank)."""
        host = rank - self.first_client_rank
        if not 0 <= host < self.hosts:
            return range(0)
        base, extra = divmod(self.clients, self.hosts)
        start = host * base + min(host, extra)
        return range(start, start + base + int(host < extra))

    def rank_of(self, client: int) -> int:
        """The rank that hosts ``client``."""
        base, extra = divmod(self.clients, self.hosts)
        big = extra * (base + 1)          # the clients of the ranks that host one more
        host = client // (base + 1) if client < big else extra + (client - big) // base
        return host + self.first_client_rank

    def _slots(self) -> list[int]:
        """Where client k's row sits among the world x per_rank rows of a gather."""
        return [self.rank_of(k) * self.per_rank + k - self.clients_of(self.rank_of(k)).start
                for k in range(self.clients)]

    def client_rows(self, rows):
        """The K clients' rows, in client order, of a gather to which every rank contributed
        ``per_rank`` rows: ``rows`` is world x per_rank x ..., rank-major."""
        return rows.flatten(0, 1)[self._slots()]

    def rank_rows(self, rows):
        """Inverse of :meth:`client_rows`: K client rows as world x per_rank x ... (zeros where a
        rank hosts fewer), ready to scatter."""
        out = rows.new_zeros(self.world * self.per_rank, *rows.shape[1:])
        out[self._slots()] = rows
        return out.view(self.world, self.per_rank, *rows.shape[1:])

    def plan(self) -> str:
        """The layout in words, one line per rank (``python -m ddgan.layout``)."""
        lines = []
        for rank in range(self.world):
            hosted = self.clients_of(rank)
            what = [] if rank != GENERATOR_RANK else ["the generator"]
            if hosted:
                what.append(f"client {hosted.start}" if len(hosted) == 1 else
                            f"clients {hosted.start}-{hosted.stop - 1} ({len(hosted)})")
            lines.append(f"rank {rank}: {' and '.join(what)}")
        return "\n".join(lines)


def world_size(cfg: "Config") -> int:
    """Ranks a run of ``cfg`` needs: one per client rank (one per client unless ``train.client_ranks``
    says fewer), plus a dedicated generator rank if asked for."""
    from ddgan.core.config import TRAINERS

    if TRAINERS[cfg.algo.name] != "forgiver":
        return cfg.partition.clients
    return Layout.of(cfg).world


def fit(cfg: "Config", ranks: int) -> list[str]:
    """The overrides that run ``cfg`` on ``ranks`` ranks (a machine with fewer GPUs than clients, a
    SLURM allocation): none when it needs exactly that many; ``train.client_ranks`` when its
    clients can share fewer ranks. ConfigError when it cannot fit."""
    from ddgan.core.config import TRAINERS
    from ddgan.core.errors import ConfigError

    need = world_size(cfg)
    if need == ranks:
        return []
    if TRAINERS[cfg.algo.name] != "forgiver":
        raise ConfigError(f"{cfg.algo.name} runs one node per rank: its {need} nodes need {need} ranks, not {ranks}")
    dedicated = int(cfg.train.generator_rank == "dedicated")
    hosts, clients = ranks - dedicated, cfg.partition.clients
    if not 1 <= hosts <= clients:
        raise ConfigError(f"{clients} clients{' and a dedicated generator rank' if dedicated else ''} cannot run on "
                          f"{ranks} rank(s): they need {1 + dedicated} to {clients + dedicated}")
    return [f"train.client_ranks={hosts}"]
