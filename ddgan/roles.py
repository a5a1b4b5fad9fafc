"""The two roles of the forgiver-first trainer as stateful objects, free of communication.

A :class:`Client` owns a private shard, its discriminator D_k and D_k's optimiser. The
:class:`GeneratorSide` (rank 0; in gossip and fedavg one per node) owns G, its optimiser, the
rule's temperature lambda and the noise stream. The distributed trainer and the single-process
reference build and step the very same objects, so their updates can be compared to float
tolerance; ``state_dict()`` makes both checkpointable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ddgan import seeds
from ddgan.config import Config
from ddgan.datasets import channels, image_size
from ddgan.losses import d_loss
from ddgan.models import ArchSpec, Discriminator, Generator, frozen_forward, init_weights
from ddgan.shard import Shard

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def arch(cfg: Config, width: int) -> ArchSpec:
    return ArchSpec(image_size(cfg.data), channels(cfg.data), width, cfg.model.z_dim, cfg.model.d_norm)


def make_optimizer(params, cfg: Config, lr: float, kind: str = "adam") -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.train.beta1, 0.999))


def build_generator(cfg: Config, device: torch.device, width: int | None = None, node: int = 0) -> Generator:
    g = Generator(arch(cfg, width or cfg.model.g_width))
    init_weights(g, seeds.torch_generator(cfg.train.seed, "init", 0, node))
    return g.to(device=device, dtype=DTYPES[cfg.train.dtype])


def build_discriminator(cfg: Config, client: int, device: torch.device, width: int | None = None) -> Discriminator:
    d = Discriminator(arch(cfg, width or cfg.model.d_width))
    init_weights(d, seeds.torch_generator(cfg.train.seed, "init", 1, client))
    return d.to(device=device, dtype=DTYPES[cfg.train.dtype])


@dataclass
class Client:
    shard: Shard
    D: Discriminator
    opt: torch.optim.Optimizer
    loss: str
    batch_size: int
    real: Tensor | None = field(default=None, repr=False)   # the real batch of the newest D step

    @classmethod
    def build(cls, cfg: Config, client: int, shard: Shard, device: torch.device, width: int | None = None,
              init: int | None = None) -> "Client":
        """``width``: D's width (default model.d_width); ``init``: whose initial weights (default ``client``'s)."""
        D = build_discriminator(cfg, client if init is None else init, device, width)
        return cls(shard, D, make_optimizer(D.parameters(), cfg, cfg.train.lr_d, cfg.train.d_optimizer),
                   cfg.algo.loss, cfg.train.batch_size)

    def d_step(self, fake: Tensor, real_target: Tensor | float = 1.0, fake_target: Tensor | float = 0.0) -> Tensor:
        """One update of D on a real batch from the shard and on ``fake``; returns the loss."""
        self.real = real = self.shard.next(self.batch_size)
        self.opt.zero_grad(set_to_none=True)
        loss = d_loss(self.loss, self.D(real), self.D(fake.detach()), real_target, fake_target)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def state_dict(self) -> dict:
        return {"D": self.D.state_dict(), "D_opt": self.opt.state_dict(), "shard": self.shard.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.D.load_state_dict(state["D"])
        self.opt.load_state_dict(state["D_opt"])
        self.shard.load_state_dict(state["shard"])


@dataclass
class GeneratorSide:
    G: Generator
    opt: torch.optim.Optimizer
    lam: Tensor                       # the rule's temperature (0-d); learned when lam_opt is set
    lam_opt: torch.optim.Optimizer | None
    lam_max: float
    noise: torch.Generator            # the stream of z, on the CPU so every device draws the same
    fixed_z: Tensor                   # the z of every sample grid

    @classmethod
    def build(cls, cfg: Config, device: torch.device, learns_lambda: bool, node: int | None = None,
              width: int | None = None, init: int | None = None) -> "GeneratorSide":
        """The one generator (``node`` None), or node ``node``'s own (gossip, fedavg) with its width, its
        noise stream and the initial weights of node ``init`` (default: its own)."""
        G = build_generator(cfg, device, width, (node or 0) if init is None else init)
        dtype = DTYPES[cfg.train.dtype]
        lam = torch.tensor(cfg.algo.lambda_init, dtype=dtype, device=device, requires_grad=learns_lambda)
        lam_opt = torch.optim.Adam([lam], lr=cfg.algo.lambda_lr) if learns_lambda else None
        fixed = torch.randn(64, cfg.model.z_dim, generator=seeds.torch_generator(cfg.train.seed, "fixed_noise"),
                            dtype=torch.float32).to(device=device, dtype=dtype)
        return cls(G, make_optimizer(G.parameters(), cfg, cfg.train.lr_g), lam, lam_opt, cfg.algo.lambda_max,
                   seeds.torch_generator(cfg.train.seed, "noise", *([] if node is None else [node])), fixed)

    def generate(self, n: int) -> Tensor:
        """x = G(z) for fresh z, with the graph kept for the generator update."""
        z = torch.randn(n, self.G.spec.z_dim, generator=self.noise, dtype=torch.float32)
        return self.G(z.to(device=self.fixed_z.device, dtype=self.fixed_z.dtype))

    @torch.no_grad()
    def samples(self) -> Tensor:
        return frozen_forward(self.G, self.fixed_z)

    def step(self, x: Tensor, grad_x: Tensor | None = None, loss: Tensor | None = None,
             lam_grad: Tensor | None = None) -> None:
        """Update G from d loss / d x (feedback exchange) or from ``loss`` itself, and lambda from
        ``lam_grad`` where given (else from ``loss``, when lambda is in its graph)."""
        self.opt.zero_grad(set_to_none=True)
        if self.lam_opt is not None:
            self.lam_opt.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        else:
            x.backward(grad_x)
        if self.lam_opt is not None and lam_grad is not None:
            self.lam.grad = lam_grad
        self.opt.step()
        if self.lam_opt is not None:
            self.lam_opt.step()
            with torch.no_grad():
                self.lam.clamp_(0.0, self.lam_max)

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "G_opt": self.opt.state_dict(), "lam": self.lam.detach().clone(),
                "lam_opt": self.lam_opt.state_dict() if self.lam_opt else {}, "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.opt.load_state_dict(state["G_opt"])
        with torch.no_grad():
            self.lam.copy_(state["lam"])
        if self.lam_opt is not None:
            self.lam_opt.load_state_dict(state["lam_opt"])
        self.noise.set_state(state["noise"])
