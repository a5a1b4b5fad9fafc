"""FedAvg-GAN baseline (FedGAN, Rasouli et al. 2020): local GANs averaged every algo.sync_every steps.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/fedavg_5node.yaml

Every node has its own shard, G_k and D_k, all starting from the same weights; node k lives on rank
k, or with ``train.client_ranks`` in a contiguous group of nodes on one rank. Per step:
  1. local step - one D_k step (real-only and fake-only batches, label noise) and one G_k step;
  2. sync       - every ``algo.sync_every`` steps, the parameters and float buffers of G and D become
                  their average over the nodes weighted by shard size (a rank adds up its nodes'
                  weighted values, then one all_reduce), and a checksum of every replica is
                  compared (an all_gather): they must be bit-identical;
  3. upkeep     - metrics, per-node sample grids and checkpoints (:mod:`ddgan.nodes.local_gan`).
Optimiser states stay local, as in FedGAN. Every node needs the same widths.
"""
from __future__ import annotations

import math
import zlib

import torch
from torch import Tensor

from ddgan.core.config import Config
from ddgan.core.errors import TrainingError
from ddgan.core.layout import Layout
from ddgan.nodes import local_gan
from ddgan.runtime.comm import Comm, module_tensors, pack
from ddgan.runtime.distributed import Dist
from ddgan.runtime.preemption import StopRequest


def averaged(node: local_gan.Node) -> list[Tensor]:
    """What a sync averages: the floating-point parameters and buffers of G_k and D_k."""
    tensors = [*module_tensors(node.generator.G).values(), *module_tensors(node.client.D).values()]
    return [t for t in tensors if t.is_floating_point()]


def checksum(tensors: list[Tensor]) -> int:
    """CRC-32 of the tensors' exact bytes."""
    return zlib.crc32(pack(tensors).cpu().numpy().tobytes())


def sync(comm: Comm, layout: Layout, replicas: list[list[Tensor]], weights: list[float]) -> None:
    """Collective: every tensor of the hosted nodes' ``replicas`` becomes sum_k weight_k * tensor_k
    over all nodes (``weights``: the hosted ones'); then every node's replica is checked."""
    # A rank adds up its nodes' weighted values first, so one vector per rank enters the all_reduce
    # however many nodes it hosts (the sum is ordered otherwise than with one node per rank).
    flat = None
    for tensors, weight in zip(replicas, weights):
        part = torch.cat([t.detach().reshape(-1) for t in tensors]) * weight
        flat = part if flat is None else flat.add_(part)
    comm.all_reduce(flat, "fedavg weights")
    with torch.no_grad():
        for tensors in replicas:
            pos = 0
            for t in tensors:
                t.copy_(flat[pos:pos + t.numel()].view_as(t))
                pos += t.numel()
    sums = local_gan.gather_rows(comm, layout, torch.tensor([checksum(ts) for ts in replicas], dtype=torch.int64),
                                 "fedavg replica checksums")
    if len(set(sums.tolist())) != 1:
        raise TrainingError(f"step {comm.step}: fedavg replicas differ after the sync "
                            f"(checksums per node {sums.tolist()})", same_on_all_ranks=True)


def shares(total: int, parts: int) -> list[int]:
    """``total`` split as evenly as whole numbers allow: each co-hosted node's share of what its
    rank sent for all of them."""
    base, extra = divmod(total, parts)
    return [base + int(i < extra) for i in range(parts)]


def train(cfg: Config, ctx: Dist, comm: Comm) -> dict:
    """Run FedAvg-GAN to ``cfg.train.steps``; returns the last metrics record."""
    layout = Layout.of(cfg)
    run, nodes, start = local_gan.start(cfg, ctx, comm, same_init=True)
    sizes = torch.tensor([len(node.client.shard) for node in nodes], dtype=torch.int64)
    total = int(local_gan.gather_rows(comm, layout, sizes, "shard sizes").sum())
    weights = [len(node.client.shard) / total for node in nodes]
    log, stop, step = local_gan.NodeLog(run, ctx, comm, layout), StopRequest(run, cfg.run.stop_check_every,
                                                                            ctx.is_main), start
    for step in range(start + 1, cfg.train.steps + 1):
        comm.step = step
        # -- 1. every hosted node's local GAN step
        losses = {}
        for node in nodes:
            d_loss, d_steps = node.train_d(step, -math.inf, 1)
            losses[node.k] = (d_loss, d_steps, node.g_step(node.client.D))
        # -- 2. sync: weighted average of every replica
        bytes_before = comm.bytes_sent
        if step % cfg.algo.sync_every == 0:
            sync(comm, layout, [averaged(node) for node in nodes], weights)
        sent = dict(zip(losses, shares(comm.bytes_sent - bytes_before, len(nodes))))
        # -- 3. upkeep
        log.add({k: {"d_loss": d_loss, "d_steps": d_steps, "g_loss": g, "bytes_sent": sent[k]}
                 for k, (d_loss, d_steps, g) in losses.items()})
        if local_gan.upkeep(cfg, run, comm, nodes, log, stop, step, {k: {"bytes_sent_last": sent[k]} for k in sent}):
            break
    local_gan.finish(cfg, run, comm, log, step)
    return log.last
