"""Every random stream of a run derives here from ``train.seed`` and a purpose label.

The partition and the graph use the same stream on every rank (so all ranks agree without
talking); sampling streams add the rank. Deriving through numpy's SeedSequence keeps streams
independent even for neighbouring seeds and labels.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

PURPOSES = ("partition", "graph", "noise", "data", "fixed_noise", "swap", "gossip", "init", "labels", "attack", "robust")


def derive(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed for ``purpose`` (and e.g. rank, epoch), the same on every machine."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}")
    entropy = [seed, zlib.crc32(purpose.encode()), *keys]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def numpy_rng(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng(derive(seed, purpose, *keys))


def torch_generator(seed: int, purpose: str, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    rng = torch.Generator(device=device)
    rng.manual_seed(derive(seed, purpose, *keys))
    return rng


def swap_permutation(seed: int, step: int, clients: int) -> list[int]:
    """MD-GAN's swap at ``step``: D_k moves to client ``perm[k]`` (the same on every rank)."""
    return torch.randperm(clients, generator=torch_generator(seed, "swap", step)).tolist()
