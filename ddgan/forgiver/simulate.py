"""The forgiver-first algorithm with all K clients in one process, one after another.

This is what a user would otherwise write (the public F2U and UA-GAN code do this), and it is
the reference the distributed trainer is tested against: built from the same roles, seeds and
rules, a step here must produce the generator and discriminators that K ranks produce, to float
tolerance, in either layout and with the pipelined step (``train.pipeline``: the clients judge the
batch drawn a step earlier, and G applies that stale verdict). ``bench/step_time.py`` uses it as
the single-process baseline.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.aggregate import fake_weights
from ddgan.core.algorithms import ALGORITHMS, lambda_objective
from ddgan.core.config import Config
from ddgan.core.models import frozen_forward
from ddgan.data.shard import client_shards, load_shard
from ddgan.forgiver.temperature import REAL_SAMPLES, lambda_grad
from ddgan.forgiver.trainer import client_shares, rule_inputs
from ddgan.roles import DTYPES, Client, Drawn, GeneratorSide
from ddgan.runtime.comm import module_tensors


class Simulation:
    def __init__(self, cfg: Config, device: torch.device = torch.device("cpu")):
        self.cfg, self.algo = cfg, ALGORITHMS[cfg.algo.name]
        dtype = DTYPES[cfg.train.dtype]
        source, shards = client_shards(cfg)
        self.clients = [Client.build(cfg, k, load_shard(cfg, k, device, dtype, source, shards), device)
                        for k in range(cfg.partition.clients)]
        self.objective = lambda_objective(cfg)
        self.generator = GeneratorSide.build(cfg, device, self.objective is not None)
        self.shares = client_shares(cfg, [len(s) for s in shards], dtype).to(device)
        self.step_count = 0
        self.in_flight: tuple[Drawn, Tensor] | None = None    # pipeline: the batch drawn a step earlier
        self.copies: list[dict[str, Tensor]] = []    # lambda's view of the Ds (algo.lambda_refresh)

    def step(self) -> tuple[Tensor, Tensor, Tensor]:
        """One step of every role; returns (D losses, generator loss, the rule's weights)."""
        self.step_count += 1
        pipeline, n = self.cfg.train.pipeline, self.cfg.train.batch_size
        if pipeline and self.in_flight is None:
            self.in_flight = (self.generator.draw(n, stash=True), self.generator.lam.detach().clone())
        drawn = (self.generator.draw(n, stash=pipeline), self.generator.lam.detach().clone())
        (judged, lam_value), self.in_flight = (self.in_flight, drawn) if pipeline else (drawn, None)
        weights = None
        if self.cfg.algo.fake_weights == "rule":
            with torch.no_grad():
                before = torch.stack([frozen_forward(c.D, judged.x) for c in self.clients])
            _, rule_weights = self.algo.rule(before, rule_inputs(self.cfg, lam_value, self.shares))
            weights = fake_weights(rule_weights, self.shares)
        d_losses = torch.stack([c.d_step(judged.x.detach(), fake_weight=None if weights is None else weights[k])
                                for k, c in enumerate(self.clients)])
        out = torch.stack([frozen_forward(c.D, judged.x) for c in self.clients])
        lam = lam_value.clone().requires_grad_(self.objective == "generator")
        loss, weights = self.algo.rule(out, rule_inputs(self.cfg, lam, self.shares))
        lam_grad = None
        if self.objective == "generator":
            (lam_grad,) = torch.autograd.grad(loss, lam, retain_graph=True)
        elif self.objective == "discriminator":
            copies = self._copies()
            real = [lambda_grad(lam, self.cfg.algo.loss, torch.stack([frozen_forward(c.D, c.real[:REAL_SAMPLES], state=s)
                                                                     for s in copies]), None) for c in self.clients]
            lam_grad = sum(real) / len(real) + lambda_grad(lam, self.cfg.algo.loss, None, out)
        self.generator.step(judged, loss=loss, lam_grad=lam_grad)
        if self.cfg.algo.swap_every and self.step_count % self.cfg.algo.swap_every == 0:
            self._swap()
        return d_losses, loss.detach(), weights

    def _copies(self) -> list[dict[str, Tensor]]:
        """Every D as lambda's real term sees it: taken at steps 1, 1 + lambda_refresh, ..."""
        if not self.copies or (self.step_count - 1) % self.cfg.algo.lambda_refresh == 0:
            self.copies = [{k: v.detach().clone() for k, v in module_tensors(c.D).items()} for c in self.clients]
        return self.copies

    def _swap(self) -> None:
        """D_k (with its optimiser) moves to client perm[k], as the distributed swap does."""
        k = len(self.clients)
        perm = seeds.swap_permutation(self.cfg.train.seed, self.step_count, k)
        moved = [(c.D, c.opt) for c in self.clients]
        for src, dest in enumerate(perm):
            self.clients[dest].D, self.clients[dest].opt = moved[src]
