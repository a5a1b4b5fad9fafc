"""The one registry users choose from by name in YAML: training algorithms and neighbour selection.

``algo.name`` picks an :class:`Algorithm`: which trainer runs it and, for the forgiver-first
trainer, which generator rule from :mod:`ddgan.aggregate`. ``algo.select`` picks a gossip
neighbour-selection rule from :mod:`ddgan.select`. Config loading validates both names here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ddgan import aggregate

if TYPE_CHECKING:
    from ddgan.config import Config


@dataclass(frozen=True)
class Algorithm:
    name: str
    trainer: str                     # "forgiver" (one G, K discriminators), "gossip" or "fedavg"
    rule: Callable | None = None     # forgiver trainer: the generator rule
    lambda_objectives: tuple[str, ...] = ()   # what its temperature lambda may descend (first: when not f2a's choice)
    compares_samples: bool = False   # the rule compares the clients' scores of each sample
    summary: str = ""


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("f2u", "forgiver", aggregate.f2u, compares_samples=True,
              summary="fool the most forgiving D per sample"),
    Algorithm("f2a", "forgiver", aggregate.f2a, lambda_objectives=("discriminator", "generator"), compares_samples=True,
              summary="fool the softmax(lambda * realness)-weighted mix of the Ds"),
    Algorithm("f2u_balanced", "forgiver", aggregate.f2u_balanced, compares_samples=True,
              summary="F2U with a balanced sample-to-client assignment (ours)"),
    Algorithm("mean", "forgiver", aggregate.mean, summary="average of the clients' G losses (MD-GAN)"),
    Algorithm("gman", "forgiver", aggregate.gman, lambda_objectives=("generator",),
              summary="GMAN*: softmax-weighted mean of the clients' G losses"),
    Algorithm("centralized", "forgiver", aggregate.mean, summary="one client holding all data"),
    Algorithm("gossip", "gossip", summary="per-node GANs on a graph, neighbour D chosen by info gain"),
    Algorithm("fedavg", "fedavg", summary="FedGAN: local GANs averaged every sync_every steps"),
)}

# What a learned lambda descends (``algo.lambda_objective``).
LAMBDA_OBJECTIVES = ("generator", "discriminator")


def lambda_objective(cfg: "Config") -> str | None:
    """What the rule's lambda descends: "discriminator" (D_agg's loss, f2a only; see
    :mod:`ddgan.temperature`) or "generator" (G's loss), as ``algo.lambda_objective`` says where the
    rule offers it; None when lambda stays fixed or the rule has none."""
    offered = ALGORITHMS[cfg.algo.name].lambda_objectives
    if not (offered and cfg.algo.learn_lambda):
        return None
    return cfg.algo.lambda_objective if cfg.algo.lambda_objective in offered else offered[0]
