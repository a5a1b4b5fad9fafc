"""The forgiver-first algorithm with all K clients in one process, one after another.

This is what a user would otherwise write (the public F2U and UA-GAN code do this), and it is
the reference the distributed trainer is tested against: built from the same roles, seeds and
rules, a step here must produce the generator and discriminators that K ranks produce, to float
tolerance. ``bench/step_time.py`` uses it as the single-process baseline.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ddgan import seeds
from ddgan.algorithms import ALGORITHMS, lambda_objective
from ddgan.config import Config
from ddgan.forgiver import client_shares, rule_inputs
from ddgan.models import frozen_forward
from ddgan.roles import DTYPES, Client, GeneratorSide
from ddgan.shard import client_shards, load_shard
from ddgan.temperature import lambda_grad


class Simulation:
    def __init__(self, cfg: Config, device: torch.device = torch.device("cpu")):
        self.cfg, self.algo = cfg, ALGORITHMS[cfg.algo.name]
        dtype = DTYPES[cfg.train.dtype]
        source, shards = client_shards(cfg)
        self.clients = [Client.build(cfg, k, load_shard(cfg, k, device, dtype, source), device)
                        for k in range(cfg.partition.clients)]
        self.objective = lambda_objective(cfg)
        self.gen = GeneratorSide.build(cfg, device, self.objective is not None)
        self.shares = client_shares(cfg, [len(s) for s in shards], dtype).to(device)
        self.step_count = 0

    def step(self) -> tuple[Tensor, Tensor, Tensor]:
        """One step of every role; returns (D losses, generator loss, the rule's weights)."""
        self.step_count += 1
        x_gen = self.gen.generate(self.cfg.train.batch_size)
        d_losses = torch.stack([c.d_step(x_gen.detach()) for c in self.clients])
        out = torch.stack([frozen_forward(c.D, x_gen) for c in self.clients])
        lam = self.gen.lam if self.objective == "generator" else self.gen.lam.detach()
        loss, weights = self.algo.rule(out, rule_inputs(self.cfg, lam, self.shares))
        lam_grad = None
        if self.objective == "discriminator":
            real = [lambda_grad(lam, self.cfg.algo.loss, torch.stack([frozen_forward(o.D, c.real) for o in self.clients]),
                                None) for c in self.clients]
            lam_grad = sum(real) / len(real) + lambda_grad(lam, self.cfg.algo.loss, None, out)
        self.gen.step(x_gen, loss=loss, lam_grad=lam_grad)
        if self.cfg.algo.swap_every and self.step_count % self.cfg.algo.swap_every == 0:
            self._swap()
        return d_losses, loss.detach(), weights

    def _swap(self) -> None:
        """D_k (with its optimiser) moves to client perm[k], as the distributed swap does."""
        k = len(self.clients)
        perm = torch.randperm(k, generator=seeds.torch_generator(self.cfg.train.seed, "swap", self.step_count)).tolist()
        moved = [(c.D, c.opt) for c in self.clients]
        for src, dest in enumerate(perm):
            self.clients[dest].D, self.clients[dest].opt = moved[src]
