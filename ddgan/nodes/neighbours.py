"""Gossip neighbour selection (``algo.select``): whose discriminator G_k also trains against.

Kosmopoulos' information gain (eq. 6-7): on G_k's current batch x_i = G_k(z_i), with D outputs
read as probabilities of "real",

    KL(D_j || D_k) = sum_i D_j(x_i) log(D_j(x_i) / D_k(x_i))          (eq. 6)
    P(j0 = j)      = KL(D_j || D_k) / sum_l KL(D_l || D_k)             (eq. 7)

The sum over samples is not a divergence between normalised distributions, so it can be negative
(D_j finds the batch less real than D_k does). Our choice: a negative KL is clamped to 0 (that
neighbour brings no information), and when every clamped KL is 0 (or a value is not finite) the
draw falls back to uniform over the neighbours. Probabilities are clamped to [1e-12, 1] before the
logs so a saturated D gives a large finite value, not inf.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

EPS = 1e-12


def kl(p_neighbour: Tensor, p_own: Tensor) -> Tensor:
    """Eq. 6 per neighbour: ``p_neighbour`` (J x B) and ``p_own`` (B) are D outputs in (0, 1]."""
    p_j, p_k = p_neighbour.clamp(EPS, 1.0), p_own.clamp(EPS, 1.0)
    return (p_j * (p_j.log() - p_k.log())).sum(-1)


def infogain(kls: Tensor) -> Tensor:
    """Eq. 7 with our fallback: negative KL -> 0; all zero (or non-finite) -> uniform."""
    w = kls.clamp_min(0.0)
    total = w.sum()
    return torch.where(torch.isfinite(total) & (total > 0), w / total, torch.full_like(kls, 1.0 / len(kls)))


def uniform(kls: Tensor) -> Tensor:
    return torch.full_like(kls, 1.0 / len(kls))


@dataclass(frozen=True)
class Selector:
    name: str
    consults: bool                               # False: standalone nodes, nothing is exchanged
    probabilities: Callable[[Tensor], Tensor] | None
    summary: str


SELECTORS: dict[str, Selector] = {s.name: s for s in (
    Selector("infogain", True, infogain, "a neighbour with probability proportional to KL(D_j || D_k)"),
    Selector("uniform", True, uniform, "a neighbour uniformly at random"),
    Selector("none", False, None, "no neighbour: standalone nodes, no communication"),
)}


def draw(probabilities: Tensor, rng: torch.Generator) -> int:
    """Index of the chosen neighbour, drawn from ``probabilities`` with ``rng`` (CPU): a host read,
    since which neighbour's D a node uses is a choice the host makes."""
    return int(torch.multinomial(probabilities.detach().double().cpu(), 1, generator=rng))
