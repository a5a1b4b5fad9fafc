"""A dishonest client, for tests and benchmarks of the defences (``attack.*``, off by default).

From step ``attack.start`` on, client ``attack.client`` changes what it sends in the feedback
exchange; its own D still trains honestly. Each lie is self-consistent: the gradient it sends is
that of the scores it reports.

| kind | scores it reports | gradient w.r.t. x it sends |
| --- | --- | --- |
| always_real | a saturated "real" (logit 10 for bce, 1 for ls) | zero (a constant does not move with x) |
| inverted | the negated scores of its D | the negated honest gradient |
| noise | N(0, 1) per sample, seeded by (seed, step) | zero |
| gradient_scale | honest | the honest gradient times ``attack.scale`` |
| gradient_flip | honest | the negated honest gradient |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ddgan.core import seeds

if TYPE_CHECKING:
    from ddgan.core.config import Config

ATTACKS = ("none", "always_real", "inverted", "noise", "gradient_scale", "gradient_flip")   # ``attack.kind``
SATURATED_REAL = {"bce": 10.0, "ls": 1.0}


@dataclass(frozen=True)
class Attack:
    kind: str
    start: int
    scale: float
    loss: str
    seed: int

    @classmethod
    def of(cls, cfg: "Config", client: int | None) -> "Attack | None":
        """The attack ``client`` carries out, or None for an honest client."""
        a = cfg.attack
        if a.kind == "none" or client != a.client:
            return None
        return cls(a.kind, a.start, a.scale, cfg.algo.loss, cfg.train.seed)

    def scores(self, honest: Tensor, step: int) -> Tensor:
        if step < self.start:
            return honest
        if self.kind == "always_real":
            return torch.full_like(honest, SATURATED_REAL[self.loss])
        if self.kind == "inverted":
            return -honest
        if self.kind == "noise":
            rng = seeds.torch_generator(self.seed, "attack", step)
            return torch.randn(honest.shape, generator=rng, dtype=torch.float32).to(honest)
        return honest

    def gradient(self, honest: Tensor, step: int) -> Tensor:
        if step < self.start:
            return honest
        if self.kind in ("always_real", "noise"):
            return torch.zeros_like(honest)
        if self.kind in ("inverted", "gradient_flip"):
            return -honest
        if self.kind == "gradient_scale":
            return honest * self.scale
        return honest
