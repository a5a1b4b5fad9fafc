"""Per-node GANs, shared by the gossip and fedavg trainers: every node has its own shard, G_k and
D_k, its own noise stream, and the upkeep (metrics, per-node sample grids, checkpoints).

A rank hosts one node, or a contiguous group of them (``train.client_ranks``, the grouping of
:class:`ddgan.core.layout.Layout`). A co-hosted node trains exactly as it would on a rank of its
own: every random stream it draws from is seeded by its number, and nothing it computes depends on
the other nodes of its rank, so K nodes on R ranks give the K-rank run's updates.

A node's D step follows Kosmopoulos' defaults: separate real-only and fake-only batches, targets
1 and 0 plus Gaussian label noise N(0, ``algo.label_noise``) drawn per sample from a stream seeded by
(seed, node, cycle), so nothing but the shard position and G's noise stream is state to checkpoint.
A rank file is ``{"step", "nodes": {"K": {"step", "client": Client.state_dict(), "generator":
GeneratorSide.state_dict()}}}`` with an entry per hosted node K, so a checkpoint resumes on another
``train.client_ranks`` (each rank reads the files of the ranks that hosted its nodes). A file
written before co-hosting is its rank's one node's entry itself. :func:`saved_node` finds a node's
entry in any of them: ``python -m ddgan.sample --node K`` and the evaluation read its
``generator.G`` and ``client.D``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.config import Config, config_from_dict
from ddgan.core.errors import CheckpointError, TrainingError
from ddgan.core.layout import Layout
from ddgan.core.losses import g_loss
from ddgan.core.models import Discriminator, frozen_forward
from ddgan.core.transfer import upload
from ddgan.data.shard import client_shards, load_shard
from ddgan.roles import (
    DTYPES,
    Client,
    Drawn,
    GeneratorSide,
    load_role_state,
    role_state,
)
from ddgan.runtime import checkpoint, rundir
from ddgan.runtime.comm import Comm
from ddgan.runtime.distributed import Dist
from ddgan.runtime.preemption import StopRequest


@dataclass
class Node:
    k: int
    client: Client
    generator: GeneratorSide
    cfg: Config

    @classmethod
    def build(cls, cfg: Config, k: int, device: torch.device, same_init: bool = False, source=None,
              shards=None) -> "Node":
        """Node ``k``; ``same_init``: every node starts from node 0's weights (fedavg's replicas);
        ``source`` and ``shards`` as :func:`ddgan.data.shard.client_shards` returned them."""
        init = 0 if same_init else k
        shard = load_shard(cfg, k, device, DTYPES[cfg.train.dtype], source, shards)
        return cls(k, Client.build(cfg, k, shard, device, init), GeneratorSide.build(cfg, device, False, k, init), cfg)

    def fakes(self) -> Tensor:
        """A generated batch for D (no graph; G's batchnorm statistics do not move)."""
        z = torch.randn(self.cfg.train.batch_size, self.generator.G.spec.z_dim, generator=self.generator.noise)
        with torch.no_grad():
            return frozen_forward(self.generator.G, upload(z, self.device).to(self.generator.fixed_z.dtype))

    @property
    def device(self) -> torch.device:
        return self.generator.fixed_z.device

    def train_d(self, cycle: int, threshold: float, max_steps: int) -> tuple[Tensor, int]:
        """D steps on fresh real and fake batches until the loss is at most ``threshold`` (at least
        one step, at most ``max_steps``); returns (the last step's loss, steps taken)."""
        labels = seeds.torch_generator(self.cfg.train.seed, "labels", self.k, cycle)
        sigma, n = self.cfg.algo.label_noise, self.cfg.train.batch_size
        steps = 0
        while True:
            noise = upload(torch.randn(2, n, generator=labels), self.device).to(self.generator.fixed_z.dtype) * sigma
            loss = self.client.d_step(self.fakes(), 1.0 + noise[0], noise[1])
            steps += 1
            # Gossip's rule: D trains on while its loss is above the threshold, so the host reads
            # the loss after each D step that another may follow (never with one step: fedavg).
            if steps >= max_steps or float(loss) <= threshold:
                return loss, steps

    def g_step(self, D: Discriminator, drawn: Drawn | None = None) -> Tensor:
        """One G_k update against ``D`` on ``drawn`` (a fresh batch of G_k by default); D itself does
        not change."""
        drawn = self.generator.draw(self.cfg.train.batch_size) if drawn is None else drawn
        loss = g_loss(self.cfg.algo.loss, frozen_forward(D, drawn.x)).mean()
        self.generator.step(drawn, loss=loss)
        return loss.detach()

    def state(self, step: int) -> dict:
        return role_state(step, self.client, self.generator)

    def load(self, state: dict) -> int:
        return load_role_state(state, self.client, self.generator)


def build_nodes(cfg: Config, ids: range, device: torch.device, same_init: bool = False) -> list[Node]:
    """The nodes ``ids`` (the ones a rank hosts), from one reading of the partition."""
    source, shards = client_shards(cfg)
    return [Node.build(cfg, k, device, same_init, source, shards) for k in ids]


def gather_rows(comm: Comm, layout: Layout, rows: Tensor, what: str) -> Tensor:
    """Collective: every node's row in node order (K x ...), from each rank's rows of the nodes it
    hosts (hosted x ..., padded to ``layout.per_rank`` for the all_gather)."""
    padded = rows.new_zeros(layout.per_rank, *rows.shape[1:])
    padded[:len(rows)] = rows
    return layout.client_rows(comm.all_gather(padded, what))


class NodeLog:
    """The hosted nodes' per-cycle numbers, averaged over the log interval; rank 0 gathers every
    node's (one small all_gather per record: monitoring, never training data) and writes
    metrics.jsonl, one list entry per node."""

    def __init__(self, run: Path, ctx: Dist, comm: Comm, layout: Layout, graph: list[list[int]] | None = None):
        self.log, self.comm, self.layout, self.graph = rundir.MetricsLog(run, ctx.is_main), comm, layout, graph
        self.nodes = list(layout.clients_of(comm.rank))
        self.sums: dict[int, dict[str, float]] = {k: {} for k in self.nodes}
        self.cycles, self.start = 0, time.perf_counter()
        self.last: dict = {}              # the newest record (what the trainers return)

    def add(self, values: dict[int, dict[str, float]]) -> None:
        """One cycle's numbers, ``values[k]`` for each hosted node k."""
        for k, numbers in values.items():
            sums = self.sums[k]
            for key, value in numbers.items():
                sums[key] = sums.get(key, 0.0) + value
        self.cycles += 1

    def _row(self, k: int, last: dict[str, float], kl: Tensor | list[float]) -> list[float]:
        """Node k's numbers as floats: the losses and KLs stay on the device between records and
        are read here, once per record."""
        width = max(map(len, self.graph)) if self.graph else 0
        return ([float(v) / self.cycles for v in self.sums[k].values()] + list(last.values())
                + [float(v) for v in kl] + [math.nan] * (width - len(kl)))

    def write(self, step: int, last: dict[int, dict[str, float]], kl: dict[int, list[float]] | None = None) -> dict:
        """Collective: one record with every node's interval means, ``last[k]`` (node k's values of
        this cycle) and ``kl[k]`` (its KL per neighbour this cycle, NaN when not computed)."""
        elapsed = time.perf_counter() - self.start
        first = last[self.nodes[0]]
        names = list(self.sums[self.nodes[0]]) + list(first)
        rows = torch.tensor([self._row(k, last[k], (kl or {}).get(k, [])) for k in self.nodes], dtype=torch.float64)
        rows = gather_rows(self.comm, self.layout, rows, "node metrics").tolist()
        for i, n in enumerate(names):
            bad = [k for k, r in enumerate(rows) if n.endswith("loss") and not math.isfinite(r[i])]
            if bad:
                raise TrainingError(f"step {step}: {n} of node(s) {bad} is not finite; the newest complete "
                                    f"checkpoint is kept", same_on_all_ranks=True)
        record = {"step": step, "steps_per_s": self.cycles / elapsed, "step_time": elapsed / self.cycles}
        ints = {n for n, v in first.items() if isinstance(v, int)}
        record.update({n: [int(r[i]) if n in ints else r[i] for r in rows] for i, n in enumerate(names)})
        if self.graph is not None:
            record["neighbours"] = self.graph
            record["kl"] = [[None if math.isnan(v) else v for v in r[len(names):len(names) + len(nbrs)]]
                            for r, nbrs in zip(rows, self.graph)]
        self.log.write(record)
        self.last = record
        self.sums, self.cycles, self.start = {k: {} for k in self.nodes}, 0, time.perf_counter()
        return record

    def close(self) -> None:
        self.log.close()


def node_entries(state: dict, rank: int) -> dict[str, dict]:
    """The node states in rank ``rank``'s file, by node number. A file written before co-hosting
    (no ``nodes``) is the state of its rank's one node, whose number is the rank's."""
    return state["nodes"] if "nodes" in state else {str(rank): state}


def rank_state(step: int, nodes: list[Node]) -> dict:
    """This rank's checkpoint: every hosted node's state under its own number."""
    return {"step": step, "nodes": {str(node.k): node.state(step) for node in nodes}}


def saved_node(where: Path, k: int, manifest: dict | None = None) -> dict:
    """Node ``k``'s state ``{"step", "client", "generator"}`` in checkpoint ``where``, from the file
    of whichever rank hosted it."""
    manifest = manifest or checkpoint.read_manifest(where)
    layout = Layout.of(config_from_dict(manifest["config"], source=str(Path(where) / "manifest.json")))
    if not 0 <= k < layout.clients:
        raise CheckpointError(f"node {k}: the run has nodes 0..{layout.clients - 1}")
    rank = layout.rank_of(k)
    return node_entries(checkpoint.load_rank_file(where, rank, manifest), rank)[str(k)]


def start(cfg: Config, ctx: Dist, comm: Comm, same_init: bool = False) -> tuple[Path, list[Node], int]:
    """Collective: the run directory, the nodes this rank hosts and the step to continue after (0 =
    fresh), from the newest checkpoint of any ``train.client_ranks``: each rank reads the files of
    the ranks that hosted its nodes then."""
    run, layout = rundir.prepare(cfg, ctx.is_main), Layout.of(cfg)
    nodes = build_nodes(cfg, layout.clients_of(ctx.rank), ctx.device, same_init)

    def files(saved: Config) -> list[int]:
        before = Layout.of(saved)
        return sorted({before.rank_of(node.k) for node in nodes})

    loaded = checkpoint.resume_or_start(run, cfg, comm, files)
    if loaded is None:
        return run, nodes, 0
    entries = {}
    # Files written before co-hosting come from one node per rank, so ``files`` listed this rank's
    # nodes' own ranks, in node order: the i-th file holds nodes[i] (a newer file names its nodes).
    for node, state in zip(nodes, loaded):
        entries.update(node_entries(state, node.k))
    for node in nodes:
        node.load(entries[str(node.k)])
    return run, nodes, int(loaded[0]["step"])


def upkeep(cfg: Config, run: Path, comm: Comm, nodes: list[Node], log: NodeLog, stop: StopRequest, step: int,
           last: dict[int, dict[str, float]], kl: dict[int, list[float]] | None = None) -> bool:
    """Collective, end of every cycle: metrics and progress, each hosted node K's sample grid
    (samples/node_K/step_N.png), stop check and checkpoint; True when the run stops here."""
    final = step == cfg.train.steps
    if step % cfg.run.log_every == 0 or final:
        record = log.write(step, last, kl)
        if comm.rank == 0:
            mean = {k: sum(record[k]) / len(record[k]) for k in ("d_loss", "g_loss", "d_steps")}
            print(rundir.progress_line(step, cfg.train.steps, record["steps_per_s"], mean), flush=True)
    if step % cfg.run.sample_every == 0 or final:
        for node in nodes:
            rundir.save_grid(node.generator.samples(), run / "samples" / f"node_{node.k}" / f"step_{step:07d}.png")
    return checkpoint.at_step_end(run, cfg, comm, stop, step, lambda: rank_state(step, nodes))


def finish(cfg: Config, run: Path, comm: Comm, log: NodeLog, step: int) -> None:
    log.close()
    if comm.rank == 0:
        print(rundir.final_line(step, cfg.train.steps, run), flush=True)
