"""Which rank holds what (``train.generator_rank``, ``train.client_ranks``), for every trainer.

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

The gossip and fedavg trainers have no generator rank: their clients are nodes, each with its own
G_k and D_k, hosted in the same contiguous groups (:mod:`ddgan.nodes.local_gan`). The layout lives
here, below both trainer packages, because they never import each other.

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
    nodes: bool = False           # gossip / fedavg: the clients are nodes with a generator each

    @classmethod
    def of(cls, cfg: "Config") -> "Layout":
        from ddgan.core.config import TRAINERS

        return cls(cfg.partition.clients, cfg.train.generator_rank == "dedicated", cfg.train.client_ranks,
                   TRAINERS[cfg.algo.name] != "forgiver")

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

    def client_rows(self, rows):
        """The K clients' rows, in client order, of a gather to which every rank contributed
        ``per_rank`` rows: ``rows`` is world x per_rank x ..., rank-major. Slices, not an index
        list, which a GPU would have to copy over at every gather."""
        if self.world * self.per_rank == self.clients:
            return rows.flatten(0, 1)
        out = rows.new_empty(self.clients, *rows.shape[2:])
        for r in range(self.world):
            hosted = self.clients_of(r)
            out[hosted.start:hosted.stop] = rows[r, :len(hosted)]
        return out

    def rank_rows(self, rows):
        """Inverse of :meth:`client_rows`: K client rows as world x per_rank x ... (zeros where a
        rank hosts fewer), ready to scatter."""
        out = rows.new_zeros(self.world, self.per_rank, *rows.shape[1:])
        for r in range(self.world):
            hosted = self.clients_of(r)
            out[r, :len(hosted)] = rows[hosted.start:hosted.stop]
        return out

    def plan(self) -> str:
        """The layout in words, one line per rank (``python -m ddgan.layout``)."""
        lines, name = [], "node" if self.nodes else "client"
        for rank in range(self.world):
            hosted = self.clients_of(rank)
            what = ["the generator"] if rank == GENERATOR_RANK and not self.nodes else []
            if hosted:
                what.append(f"{name} {hosted.start}" if len(hosted) == 1 else
                            f"{name}s {hosted.start}-{hosted.stop - 1} ({len(hosted)})")
            lines.append(f"rank {rank}: {' and '.join(what)}")
        return "\n".join(lines)


def world_size(cfg: "Config") -> int:
    """Ranks a run of ``cfg`` needs: one per client rank (one per client unless ``train.client_ranks``
    says fewer), plus a dedicated generator rank if asked for."""
    return Layout.of(cfg).world


def fit(cfg: "Config", ranks: int) -> list[str]:
    """The overrides that run ``cfg`` on ``ranks`` ranks (a machine with fewer GPUs than clients, a
    SLURM allocation): none when it needs exactly that many; ``train.client_ranks`` when its
    clients (gossip and fedavg: nodes) can share fewer ranks. ConfigError when it cannot fit."""
    from ddgan.core.errors import ConfigError

    layout = Layout.of(cfg)
    if layout.world == ranks:
        return []
    dedicated, clients = int(layout.dedicated), layout.clients
    hosts, name = ranks - dedicated, "nodes" if layout.nodes else "clients"
    if not 1 <= hosts <= clients:
        raise ConfigError(f"{clients} {name}{' and a dedicated generator rank' if dedicated else ''} cannot run on "
                          f"{ranks} rank(s): they need {1 + dedicated} to {clients + dedicated}")
    return [f"train.client_ranks={hosts}"]
