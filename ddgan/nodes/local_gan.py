"""Per-node GANs, shared by the gossip and fedavg trainers: every rank is a node with its own shard,
G_k and D_k, its own noise stream, and the upkeep (metrics, per-node sample grids, checkpoints).

A node's D step follows Kosmopoulos' defaults: separate real-only and fake-only batches, targets
1 and 0 plus Gaussian label noise N(0, ``algo.label_noise``) drawn per sample from a stream seeded by
(seed, node, cycle), so nothing but the shard position and G's noise stream is state to checkpoint.
The rank file is ``{"step", "client": Client.state_dict(), "generator": GeneratorSide.state_dict()}``:
``python -m ddgan.sample --node K`` and the evaluation read ``generator.G`` and ``client.D`` of rank K.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.config import Config
from ddgan.core.errors import TrainingError
from ddgan.core.losses import g_loss
from ddgan.core.models import Discriminator, frozen_forward
from ddgan.data.shard import load_shard
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
    def build(cls, cfg: Config, k: int, device: torch.device, same_init: bool = False) -> "Node":
        """Node ``k``; ``same_init``: every node starts from node 0's weights (fedavg's replicas)."""
        init = 0 if same_init else k
        shard = load_shard(cfg, k, device, DTYPES[cfg.train.dtype])
        return cls(k, Client.build(cfg, k, shard, device, init), GeneratorSide.build(cfg, device, False, k, init), cfg)

    def fakes(self) -> Tensor:
        """A generated batch for D (no graph; G's batchnorm statistics do not move)."""
        z = torch.randn(self.cfg.train.batch_size, self.generator.G.spec.z_dim, generator=self.generator.noise)
        with torch.no_grad():
            return frozen_forward(self.generator.G, z.to(self.generator.fixed_z))

    def train_d(self, cycle: int, threshold: float, max_steps: int) -> tuple[float, int]:
        """D steps on fresh real and fake batches until the loss is at most ``threshold`` (at least
        one step, at most ``max_steps``); returns (the last step's loss, steps taken)."""
        labels = seeds.torch_generator(self.cfg.train.seed, "labels", self.k, cycle)
        sigma, n = self.cfg.algo.label_noise, self.cfg.train.batch_size
        steps, loss = 0, math.inf
        while steps < max_steps and (steps == 0 or loss > threshold):
            noise = torch.randn(2, n, generator=labels).to(self.generator.fixed_z) * sigma
            loss = float(self.client.d_step(self.fakes(), 1.0 + noise[0], noise[1]))
            steps += 1
        return loss, steps

    def g_step(self, D: Discriminator, drawn: Drawn | None = None) -> float:
        """One G_k update against ``D`` on ``drawn`` (a fresh batch of G_k by default); D itself does
        not change."""
        drawn = self.generator.draw(self.cfg.train.batch_size) if drawn is None else drawn
        loss = g_loss(self.cfg.algo.loss, frozen_forward(D, drawn.x)).mean()
        self.generator.step(drawn, loss=loss)
        return float(loss.detach())

    def state(self, step: int) -> dict:
        return role_state(step, self.client, self.generator)

    def load(self, state: dict) -> int:
        return load_role_state(state, self.client, self.generator)


class NodeLog:
    """This node's per-cycle numbers, averaged over the log interval; rank 0 gathers every node's
    (one small all_gather per record: monitoring, never training data) and writes metrics.jsonl."""

    def __init__(self, run: Path, ctx: Dist, comm: Comm, graph: list[list[int]] | None = None):
        self.log, self.comm, self.is_main, self.graph = rundir.MetricsLog(run, ctx.is_main), comm, ctx.is_main, graph
        self.sums: dict[str, float] = {}
        self.cycles, self.start = 0, time.perf_counter()
        self.last: dict = {}              # the newest record (what the trainers return)

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.cycles += 1

    def write(self, step: int, last: dict[str, float], kl: list[float] = ()) -> dict:
        """Collective: one record with every node's interval means, ``last`` (this cycle's values)
        and ``kl`` (this cycle's KL per neighbour, NaN when not computed)."""
        elapsed = time.perf_counter() - self.start
        names = list(self.sums) + list(last)
        width = max(map(len, self.graph)) if self.graph else 0
        row = [self.sums[n] / self.cycles for n in self.sums] + list(last.values())
        row += list(kl) + [math.nan] * (width - len(kl))
        rows = self.comm.all_gather(torch.tensor(row, dtype=torch.float64), "node metrics").tolist()
        for i, n in enumerate(names):
            bad = [k for k, r in enumerate(rows) if n.endswith("loss") and not math.isfinite(r[i])]
            if bad:
                raise TrainingError(f"step {step}: {n} of node(s) {bad} is not finite; the newest complete "
                                    f"checkpoint is kept", same_on_all_ranks=True)
        record = {"step": step, "steps_per_s": self.cycles / elapsed, "step_time": elapsed / self.cycles}
        ints = {n for n, v in last.items() if isinstance(v, int)}
        record.update({n: [int(r[i]) if n in ints else r[i] for r in rows] for i, n in enumerate(names)})
        if self.graph is not None:
            record["neighbours"] = self.graph
            record["kl"] = [[None if math.isnan(v) else v for v in r[len(names):len(names) + len(nbrs)]]
                            for r, nbrs in zip(rows, self.graph)]
        self.log.write(record)
        self.last = record
        self.sums, self.cycles, self.start = {}, 0, time.perf_counter()
        return record

    def close(self) -> None:
        self.log.close()


def start(cfg: Config, ctx: Dist, comm: Comm, same_init: bool = False) -> tuple[Path, Node, int]:
    """Collective: the run directory, this rank's node and the step to continue after (0 = fresh)."""
    run = rundir.prepare(cfg, ctx.is_main)
    node = Node.build(cfg, ctx.rank, ctx.device, same_init)
    state = checkpoint.resume_or_start(run, cfg, comm)
    return run, node, (node.load(state) if state is not None else 0)


def upkeep(cfg: Config, run: Path, comm: Comm, node: Node, log: NodeLog, stop: StopRequest, step: int,
           last: dict[str, float], kl: list[float] = ()) -> bool:
    """Collective, end of every cycle: metrics and progress, node K's sample grid
    (samples/node_K/step_N.png), stop check and checkpoint; True when the run stops here."""
    final = step == cfg.train.steps
    if step % cfg.run.log_every == 0 or final:
        record = log.write(step, last, kl)
        if comm.rank == 0:
            mean = {k: sum(record[k]) / len(record[k]) for k in ("d_loss", "g_loss", "d_steps")}
            print(rundir.progress_line(step, cfg.train.steps, record["steps_per_s"], mean), flush=True)
    if step % cfg.run.sample_every == 0 or final:
        rundir.save_grid(node.generator.samples(), run / "samples" / f"node_{node.k}" / f"step_{step:07d}.png")
    return checkpoint.at_step_end(run, cfg, comm, stop, step, lambda: node.state(step))


def finish(cfg: Config, run: Path, comm: Comm, log: NodeLog, step: int) -> None:
    log.close()
    if comm.rank == 0:
        print(rundir.final_line(step, cfg.train.steps, run), flush=True)
