"""Draw images from a trained generator.

    python -m ddgan.sample --run runs/default --n 1000 --out samples.npz
    python -m ddgan.sample --run runs/gossip --node 3 --n 1000 --out node3.npz

Writes ``images`` (uint8, N x C x H x W) to an .npz file, from the newest complete checkpoint
of the run (or ``--checkpoint DIR``). Forgiver-first runs have one generator (rank 0); gossip and
fedavg runs have one per node (``--node``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ddgan.cli import run_cli
from ddgan.core.algorithms import ALGORITHMS
from ddgan.core.config import Config, config_from_dict
from ddgan.core.errors import CheckpointError
from ddgan.core.models import Generator, frozen_forward
from ddgan.nodes.local_gan import saved_node
from ddgan.roles import build_generator
from ddgan.runtime.checkpoint import complete_checkpoints, load_rank_file, read_manifest


def newest_checkpoint(run: Path) -> Path:
    found = complete_checkpoints(Path(run))
    if not found:
        raise CheckpointError(f"{run}: no complete checkpoint under {Path(run) / 'checkpoints'}")
    return found[0]


def load_generator(where: Path, node: int = 0, raw: bool = False) -> tuple[Generator, Config]:
    """The generator of ``node`` (rank 0 for one-generator runs) from checkpoint ``where``, on the CPU:
    the averaged one (train.g_ema) where the run kept it, unless ``raw``."""
    manifest = read_manifest(where)
    cfg = config_from_dict(manifest["config"], source=str(Path(where) / "manifest.json"))
    per_node = ALGORITHMS[cfg.algo.name].trainer != "forgiver"
    if per_node:        # node K's entry, on whichever rank hosted it (train.client_ranks)
        state = saved_node(where, node, manifest)
    elif 0 <= node < manifest["world_size"]:
        state = load_rank_file(where, node, manifest)
    else:
        raise CheckpointError(f"--node {node}: the run has ranks 0..{manifest['world_size'] - 1}")
    if "generator" not in state:
        raise CheckpointError(f"{where}: rank {node} holds no generator (forgiver-first runs keep it on rank 0)")
    G = build_generator(cfg, torch.device("cpu"), node if per_node else None)
    G.load_state_dict(state["generator"]["G" if raw else "G_ema" if "G_ema" in state["generator"] else "G"])
    return G, cfg


@torch.no_grad()
def generate(G: Generator, n: int, seed: int = 0, batch: int = 500) -> torch.Tensor:
    """``n`` images in [-1, 1] from seeded z, in batches (batchnorm uses batch statistics, as in training)."""
    rng = torch.Generator().manual_seed(seed)     # on the CPU: the same z wherever G runs
    weight = next(G.parameters())
    chunks = []
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), G.spec.z_dim, generator=rng, dtype=torch.float32)
        chunks.append(frozen_forward(G, z.to(weight.device, weight.dtype)).float().cpu())
    return torch.cat(chunks)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ddgan.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="run directory")
    parser.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--out", required=True, type=Path, help="output .npz file (key 'images')")
    parser.add_argument("--node", type=int, default=0, help="gossip/fedavg: whose generator (default 0)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory instead of the newest")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--raw", action="store_true", help="the trained generator itself, not its average (train.g_ema)")

    def body(args) -> int:
        where = args.checkpoint or newest_checkpoint(args.run)
        G, _ = load_generator(where, args.node, args.raw)
        images = to_uint8(generate(G, args.n, args.seed))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.out, images=images)
        print(f"wrote {len(images)} images {images.shape[1:]} from {where} to {args.out}")
        return 0

    return run_cli(lambda: parser.parse_args(argv), body)


if __name__ == "__main__":
    sys.exit(main())
