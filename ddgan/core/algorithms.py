"""The one registry users choose from by name in YAML: the training algorithms (``algo.name``).

An :class:`Algorithm` says which trainer runs it and, for the forgiver-first trainer, which
generator rule from :mod:`ddgan.core.aggregate`. ``algo.select`` picks a gossip neighbour-selection
rule from :mod:`ddgan.nodes.neighbours`. Config loading validates both names against the lists in
:mod:`ddgan.core.config` (which imports no rule); tests/test_layers.py keeps them equal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ddgan.core import aggregate
from ddgan.core.config import TRAINERS

if TYPE_CHECKING:
    from ddgan.core.config import Config


@dataclass(frozen=True)
class Algorithm:
    name: str
    rule: Callable | None = None     # forgiver trainer: the generator rule
    lambda_objectives: tuple[str, ...] = ()   # what its temperature lambda may descend (first: when not f2a's choice)
    compares_samples: bool = False   # the rule compares the clients' scores of each sample
    summary: str = ""

    @property
    def trainer(self) -> str:
        """"forgiver" (one G, K discriminators), "gossip" or "fedavg": the config's table, which
        validates algo.name without importing the rules."""
        return TRAINERS[self.name]


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("f2u", aggregate.f2u, compares_samples=True,
              summary="fool the most forgiving D per sample"),
    Algorithm("f2a", aggregate.f2a, lambda_objectives=("discriminator", "generator"), compares_samples=True,
              summary="fool the softmax(lambda * realness)-weighted mix of the Ds"),
    Algorithm("f2u_balanced", aggregate.f2u_balanced, compares_samples=True,
              summary="F2U with a balanced sample-to-client assignment (ours)"),
    Algorithm("mean", aggregate.mean, summary="average of the clients' G losses (MD-GAN)"),
    Algorithm("gman", aggregate.gman, lambda_objectives=("generator",),
              summary="GMAN*: softmax-weighted mean of the clients' G losses"),
    Algorithm("centralized", aggregate.mean, summary="one client holding all data"),
    Algorithm("gossip", summary="per-node GANs on a graph, neighbour D chosen by info gain"),
    Algorithm("fedavg", summary="FedGAN: local GANs averaged every sync_every steps"),
)}


def lambda_objective(cfg: "Config") -> str | None:
    """What the rule's lambda descends: "discriminator" (D_agg's loss, f2a only; see
    :mod:`ddgan.forgiver.temperature`) or "generator" (G's loss), as ``algo.lambda_objective`` says where the
    rule offers it; None when lambda stays fixed or the rule has none."""
    offered = ALGORITHMS[cfg.algo.name].lambda_objectives
    if not (offered and cfg.algo.learn_lambda):
        return None
    return cfg.algo.lambda_objective if cfg.algo.lambda_objective in offered else offered[0]
