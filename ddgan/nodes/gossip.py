"""Gossip training on a sparse graph (Kosmopoulos, Algorithm 1): one G_k and D_k per node.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/gossip_5node.yaml

Node k of the graph ``topology`` (:mod:`ddgan.nodes.topology`) lives on rank k, or with
``train.client_ranks`` in a contiguous group of nodes on one rank. Per cycle, on every node:
  1. D step   - D_k trains on real-only and fake-only batches while its loss is above
                algo.loss_threshold / epoch (epoch = the shard's, 1-based), at most algo.max_d_steps;
  2. G step   - one G_k step against D_k;
  3. share   - the nodes that consider a neighbour this cycle (a seeded coin of probability
                algo.p_consider per node and cycle, which every rank can compute) receive every
                neighbour's D; nodes send their D only to the neighbours whose coin came up;
  4. consult  - a considering node draws j0 by ``algo.select`` (:mod:`ddgan.nodes.neighbours`) and takes one
                more G_k step against D_j0;
  5. upkeep   - metrics, per-node sample grids and checkpoints (:mod:`ddgan.nodes.local_gan`).
Only discriminator weights cross the wire, point to point between ranks that host one-hop
neighbours, in one batch_isend_irecv per rank and cycle: one message per peer rank carries every D
that rank's nodes consult, once however many of them do. Sends and receives match by construction
(both ends compute the same coins), so no order of the ranks' calls can deadlock on any valid
graph. A D that a co-hosted node consults is copied on the rank, never sent.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.config import Config
from ddgan.core.errors import TrainingError
from ddgan.core.layout import Layout
from ddgan.core.losses import realness
from ddgan.core.models import D_NORMS, ArchSpec, Discriminator, frozen_forward
from ddgan.nodes import local_gan, neighbours, topology
from ddgan.roles import build_discriminator
from ddgan.runtime.comm import Comm, copy_into, module_tensors, packed_size
from ddgan.runtime.distributed import Dist
from ddgan.runtime.preemption import StopRequest


def considers(cfg: Config, graph: topology.Graph, node: int, cycle: int) -> bool:
    """Whether ``node`` consults a neighbour's D in ``cycle``: the same answer on every rank."""
    if not neighbours.SELECTORS[cfg.algo.select].consults or not graph[node]:
        return False
    return bool(seeds.numpy_rng(cfg.train.seed, "gossip", node, cycle).random() < cfg.algo.p_consider)


@dataclass(frozen=True)
class Exchange:
    """Step 3 of one cycle as one rank sees it; both ends of every transfer compute the same."""

    consulting: frozenset[int]     # hosted nodes that consult a neighbour's D this cycle
    sends: dict[int, list[int]]    # peer rank -> the hosted nodes whose D it gets
    recvs: dict[int, list[int]]    # peer rank -> its nodes whose D this rank gets
    local: list[int]               # hosted nodes whose D a co-hosted neighbour consults (copied)


def exchange(cfg: Config, graph: topology.Graph, layout: Layout, rank: int, cycle: int) -> Exchange:
    """Who gets which D in ``cycle``: node k's D reaches neighbour j when j considers. Between two
    ranks each D travels once, however many of the receiving rank's nodes consult it."""
    hosted = layout.clients_of(rank)
    coin = {j: considers(cfg, graph, j, cycle) for j in {*hosted, *(j for k in hosted for j in graph[k])}}
    sends: dict[int, set[int]] = {}
    recvs: dict[int, set[int]] = {}
    local: set[int] = set()
    for k in hosted:
        for j in graph[k]:
            there = layout.rank_of(j)
            if coin[j]:                 # j consults: D_k goes to j
                if there == rank:
                    local.add(k)
                else:
                    sends.setdefault(there, set()).add(k)
            if coin[k] and there != rank:     # k consults: D_j comes here
                recvs.setdefault(there, set()).add(j)
    return Exchange(frozenset(k for k in hosted if coin[k]), {r: sorted(v) for r, v in sorted(sends.items())},
                    {r: sorted(v) for r, v in sorted(recvs.items())}, sorted(local))


def peer_ranks(graph: topology.Graph, layout: Layout, rank: int) -> frozenset[int]:
    """The ranks this rank may exchange with: those that host a neighbour of one of its nodes."""
    return frozenset(layout.rank_of(j) for k in layout.clients_of(rank) for j in graph[k]) - {rank}


@functools.cache
def _header(spec: ArchSpec, device: torch.device) -> Tensor:
    """A D's architecture as it travels: made once per spec (an upload, on a GPU), only read after."""
    return torch.tensor([spec.image_size, spec.channels, spec.width, spec.z_dim, D_NORMS.index(spec.d_norm)],
                        device=device)


def _wire(D: Discriminator) -> list[Tensor]:
    """A D as it travels: its architecture spec, then its parameters and buffers."""
    return [_header(D.spec, next(D.parameters()).device), *module_tensors(D).values()]


def share_discriminators(comm: Comm, plan: Exchange, Ds: dict[int, Discriminator],
                         peers: dict[int, Discriminator]) -> dict[int, int]:
    """Step 3: every D of ``plan`` into ``peers[j]``, the copy of node j's D that this rank's nodes
    consult: a co-hosted node's copied, the others' point to point (one message per peer rank, its
    nodes' Ds in node order); a received spec must match the copy's. ``Ds``: the hosted nodes' own.
    Returns the bytes each hosted node's D cost this rank (its size per peer rank it went to)."""
    for k in plan.local:
        copy_into(list(module_tensors(peers[k]).values()), list(module_tensors(Ds[k]).values()))
    wire = {k: _wire(Ds[k]) for k in {k for ks in plan.sends.values() for k in ks}}
    like = {j: _wire(peers[j]) for js in plan.recvs.values() for j in js}
    messages: dict[tuple[int, ...], list[Tensor]] = {}      # one list per node group: packed once
    for ks in plan.sends.values():
        messages.setdefault(tuple(ks), [t for k in ks for t in wire[k]])
    received = comm.send_recv_tensors({r: messages[tuple(ks)] for r, ks in plan.sends.items()},
                                      {r: [t for j in js for t in like[j]] for r, js in plan.recvs.items()},
                                      "discriminators")
    for r, js in plan.recvs.items():
        tensors = iter(received[r])
        for j in js:
            header, *values = [next(tensors) for _ in like[j]]
            # a host read per received D, on the cycles gossip already reads its loss threshold
            if not torch.equal(header, like[j][0]):
                raise TrainingError(f"step {comm.step}: node {j} sent a discriminator of spec {header.tolist()}, "
                                    f"rank {comm.rank} expected {like[j][0].tolist()} (configs differ?)")
            copy_into(like[j][1:], values)
    return {k: packed_size(wire[k]) * sum(k in ks for ks in plan.sends.values()) if k in wire else 0 for k in Ds}


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
    return j0, kls, node.g_step(peers[j0], drawn)


def local_steps(cfg: Config, node: local_gan.Node, cycle: int) -> tuple[Tensor, int, Tensor]:
    """Steps 1-2 of ``node``: D_k until its loss is at most LossThres(epoch), then one G_k step
    against D_k; (D's last loss, D steps, G's loss)."""
    d_loss, d_steps = node.train_d(cycle, cfg.algo.loss_threshold / node.client.shard.epoch, cfg.algo.max_d_steps)
    return d_loss, d_steps, node.g_step(node.client.D)


def train(cfg: Config, ctx: Dist, comm: Comm) -> dict:
    """Run gossip training to ``cfg.train.steps`` cycles; returns the last metrics record."""
    graph, layout = topology.graph_of(cfg), Layout.of(cfg)
    comm.allowed_peers = peer_ranks(graph, layout, ctx.rank)
    run, nodes, start = local_gan.start(cfg, ctx, comm)
    # The copies of the neighbours' Ds that the hosted nodes consult, built from their specs (every
    # rank knows every width); one per neighbour, shared by the hosted nodes it neighbours.
    peers = {j: build_discriminator(cfg, j, ctx.device).requires_grad_(False)
             for j in sorted({j for node in nodes for j in graph[node.k]})}
    own = {node.k: node.client.D for node in nodes}
    log, stop, step = local_gan.NodeLog(run, ctx, comm, layout, graph), StopRequest(run, cfg.run.stop_check_every,
                                                                                   ctx.is_main), start
    for step in range(start + 1, cfg.train.steps + 1):
        comm.step = step
        # -- 1-2. every hosted node's D and G steps (nothing in them depends on another node)
        trained = {node.k: local_steps(cfg, node, step) for node in nodes}
        # -- 3. share: Ds travel only to the nodes that consider one this cycle
        plan = exchange(cfg, graph, layout, ctx.rank, step)
        sent = share_discriminators(comm, plan, own, peers)
        # -- 4. consult: one more G_k step against the chosen neighbour's D
        values, last, kls = {}, {}, {}
        for node in nodes:
            k, (d_loss, d_steps, g) = node.k, trained[node.k]
            j0, kls[k] = -1, [math.nan] * len(graph[k])
            if k in plan.consulting:
                j0, kls[k], _ = consult(cfg, node, graph, peers, step)
            values[k] = {"d_loss": d_loss, "d_steps": d_steps, "g_loss": g, "bytes_sent": sent[k],
                         "considered": float(k in plan.consulting)}
            last[k] = {"d_steps_last": d_steps, "chosen": j0, "bytes_sent_last": sent[k]}
        # -- 5. upkeep
        log.add(values)
        if local_gan.upkeep(cfg, run, comm, nodes, log, stop, step, last, kls):
            break
    local_gan.finish(cfg, run, comm, log, step)
    return log.last
