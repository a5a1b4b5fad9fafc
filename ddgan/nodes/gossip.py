"""Gossip training on a sparse graph (Kosmopoulos, Algorithm 1): one G_k and D_k per node.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/gossip_5node.yaml

Every rank is node k of the graph ``topology`` (:mod:`ddgan.nodes.topology`). Per cycle, on every node:
  1. D step   - D_k trains on real-only and fake-only batches while its loss is above
                algo.loss_threshold / epoch (epoch = the shard's, 1-based), at most algo.max_d_steps;
  2. G step   - one G_k step against D_k;
  3. share   - the nodes that consider a neighbour this cycle (a seeded coin of probability
                algo.p_consider per node and cycle, which every rank can compute) receive every
                neighbour's D; nodes send their D only to the neighbours whose coin came up;
  4. consult  - a considering node draws j0 by ``algo.select`` (:mod:`ddgan.nodes.neighbours`) and takes one
                more G_k step against D_j0;
  5. upkeep   - metrics, per-node sample grids and checkpoints (:mod:`ddgan.nodes.local_gan`).
Only discriminator weights cross the wire, point to point between one-hop neighbours, in one
batch_isend_irecv per node and cycle whose sends and receives match by construction (both ends
compute the same coins), so no order of the ranks' calls can deadlock on any valid graph.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.config import Config
from ddgan.core.errors import TrainingError
from ddgan.core.losses import realness
from ddgan.core.models import D_NORMS, ArchSpec, Discriminator, frozen_forward
from ddgan.nodes import local_gan, neighbours, topology
from ddgan.roles import build_discriminator
from ddgan.runtime.comm import Comm, copy_into, module_tensors
from ddgan.runtime.distributed import Dist
from ddgan.runtime.preemption import StopRequest


def considers(cfg: Config, graph: topology.Graph, node: int, cycle: int) -> bool:
    """Whether ``node`` consults a neighbour's D in ``cycle``: the same answer on every rank."""
    if not neighbours.SELECTORS[cfg.algo.select].consults or not graph[node]:
        return False
    return bool(seeds.numpy_rng(cfg.train.seed, "gossip", node, cycle).random() < cfg.algo.p_consider)


def schedule(cfg: Config, graph: topology.Graph, node: int, cycle: int) -> tuple[list[int], list[int]]:
    """(neighbours ``node`` sends its D to, neighbours it receives a D from) in ``cycle``."""
    sends = [j for j in graph[node] if considers(cfg, graph, j, cycle)]
    return sends, (list(graph[node]) if considers(cfg, graph, node, cycle) else [])


def _header(spec: ArchSpec, device: torch.device) -> Tensor:
    return torch.tensor([spec.image_size, spec.channels, spec.width, spec.z_dim, D_NORMS.index(spec.d_norm)],
                        device=device)


def share_discriminators(comm: Comm, sends: list[int], recvs: list[int], D: Discriminator,
                         peers: dict[int, Discriminator]) -> None:
    """Point to point: D (its architecture spec, then its parameters and buffers) to each of
    ``sends``; each of ``recvs``'s D into ``peers[j]``, whose spec must match the one received."""
    device = next(D.parameters()).device
    like = {j: [_header(peers[j].spec, device), *module_tensors(peers[j]).values()] for j in recvs}
    payload = [_header(D.spec, device), *module_tensors(D).values()]
    received = comm.send_recv_tensors({j: payload for j in sends}, like, "discriminators")
    for j in recvs:
        header, *tensors = received[j]
        # a host read per received D, on the cycles gossip already reads its loss threshold
        if not torch.equal(header, like[j][0]):
            raise TrainingError(f"step {comm.step}: node {j} sent a discriminator of spec {header.tolist()}, "
                                f"node {comm.rank} expected {like[j][0].tolist()} (configs differ?)")
        copy_into(like[j][1:], tensors)


def consult(cfg: Config, node: local_gan.Node, graph: topology.Graph, peers: dict[int, Discriminator],
            cycle: int) -> tuple[int, list[float], float]:
    """Step 4: KL(D_j || D_k) on a fresh batch of G_k, the draw of j0, one G_k step against D_j0;
    returns (j0, the KL per neighbour, the G loss)."""
    nbrs = graph[node.k]
    drawn = node.generator.draw(cfg.train.batch_size)
    with torch.no_grad():
        p_own = realness(cfg.algo.loss, frozen_forward(node.client.D, drawn.x.detach()))
        p_nbrs = torch.stack([realness(cfg.algo.loss, frozen_forward(peers[j], drawn.x.detach())) for j in nbrs])
    kls = neighbours.kl(p_nbrs, p_own)
    probabilities = neighbours.SELECTORS[cfg.algo.select].probabilities(kls)
    j0 = nbrs[neighbours.draw(probabilities, seeds.torch_generator(cfg.train.seed, "gossip", node.k, cycle, 1))]
    return j0, kls.tolist(), node.g_step(peers[j0], drawn)


def train(cfg: Config, ctx: Dist, comm: Comm) -> dict:
    """Run gossip training to ``cfg.train.steps`` cycles; returns the last metrics record."""
    graph = topology.check(topology.graph_of(cfg), ctx.world)
    comm.allowed_peers = frozenset(graph[ctx.rank])
    run, node, start = local_gan.start(cfg, ctx, comm)
    # Receive buffers for the neighbours' Ds, built from their specs (every rank knows every width).
    peers = {j: build_discriminator(cfg, j, ctx.device).requires_grad_(False)
             for j in graph[ctx.rank]}
    log, stop, step = local_gan.NodeLog(run, ctx, comm, graph), StopRequest(run, cfg.run.stop_check_every, ctx.is_main), start
    for step in range(start + 1, cfg.train.steps + 1):
        comm.step = step
        # -- 1. D_k until its loss is at most LossThres(epoch)
        d_loss, d_steps = node.train_d(step, cfg.algo.loss_threshold / node.client.shard.epoch, cfg.algo.max_d_steps)
        # -- 2. one G_k step against D_k
        g = node.g_step(node.client.D)
        # -- 3. share: Ds travel only to the neighbours that consider one this cycle
        sends, recvs = schedule(cfg, graph, ctx.rank, step)
        bytes_before = comm.bytes_sent
        share_discriminators(comm, sends, recvs, node.client.D, peers)
        sent = comm.bytes_sent - bytes_before
        # -- 4. consult: one more G_k step against the chosen neighbour's D
        j0, kls = -1, []
        if recvs:
            j0, kls, _ = consult(cfg, node, graph, peers, step)
        # -- 5. upkeep
        log.add({"d_loss": d_loss, "d_steps": d_steps, "g_loss": g, "bytes_sent": sent,
                 "considered": float(bool(recvs))})
        last = {"d_steps_last": d_steps, "chosen": j0, "bytes_sent_last": sent}
        if local_gan.upkeep(cfg, run, comm, node, log, stop, step, last, kls or [math.nan] * len(graph[ctx.rank])):
            break
    local_gan.finish(cfg, run, comm, log, step)
    return log.last
