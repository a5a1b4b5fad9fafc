"""FedAvg-GAN baseline (FedGAN, Rasouli et al. 2020): local GANs averaged every algo.sync_every steps.

    torchrun --standalone --nproc_per_node 5 -m ddgan.train --config configs/fedavg_5node.yaml

Every rank is a node with its own shard, G_k and D_k, all starting from the same weights. Per step:
  1. local step - one D_k step (real-only and fake-only batches, label noise) and one G_k step;
  2. sync       - every ``algo.sync_every`` steps, the parameters and float buffers of G and D become
                  their average over the nodes weighted by shard size (one all_reduce), and a checksum
                  of every replica is compared (an all_gather): they must be bit-identical;
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


def sync(comm: Comm, tensors: list[Tensor], weight: float) -> None:
    """Collective: every tensor becomes sum_k weight_k * tensor_k; then the replicas are checked."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors]) * weight
    comm.all_reduce(flat, "fedavg weights")
    with torch.no_grad():
        pos = 0
        for t in tensors:
            t.copy_(flat[pos:pos + t.numel()].view_as(t))
            pos += t.numel()
    sums = comm.all_gather(torch.tensor([checksum(tensors)], dtype=torch.int64), "fedavg replica checksums")
    if len(set(sums.flatten().tolist())) != 1:
        raise TrainingError(f"step {comm.step}: fedavg replicas differ after the sync "
                            f"(checksums {sums.flatten().tolist()})", same_on_all_ranks=True)


def train(cfg: Config, ctx: Dist, comm: Comm) -> dict:
    """Run FedAvg-GAN to ``cfg.train.steps``; returns the last metrics record."""
    run, node, start = local_gan.start(cfg, ctx, comm, same_init=True)
    sizes = comm.all_gather(torch.tensor([len(node.client.shard)], dtype=torch.int64), "shard sizes")
    weight = len(node.client.shard) / int(sizes.sum())
    log, stop, step = local_gan.NodeLog(run, ctx, comm), StopRequest(run, cfg.run.stop_check_every, ctx.is_main), start
    for step in range(start + 1, cfg.train.steps + 1):
        comm.step = step
        # -- 1. local GAN step
        d_loss, d_steps = node.train_d(step, -math.inf, 1)
        g = node.g_step(node.client.D)
        # -- 2. sync: weighted average of every replica
        bytes_before = comm.bytes_sent
        if step % cfg.algo.sync_every == 0:
            sync(comm, averaged(node), weight)
        sent = comm.bytes_sent - bytes_before
        # -- 3. upkeep
        log.add({"d_loss": d_loss, "d_steps": d_steps, "g_loss": g, "bytes_sent": sent})
        if local_gan.upkeep(cfg, run, comm, node, log, stop, step, {"bytes_sent_last": sent}):
            break
    local_gan.finish(cfg, run, comm, log, step)
    return log.last
