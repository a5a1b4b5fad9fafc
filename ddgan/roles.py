"""The two roles of the forgiver-first trainer as stateful objects, free of communication.

A :class:`Client` owns a private shard, its discriminator D_k and D_k's optimiser. The
:class:`GeneratorSide` (rank 0; in gossip and fedavg one per node) owns G, its optimiser, the
rule's temperature lambda and the noise stream. The distributed trainer and the single-process
reference build and step the very same objects, so their updates can be compared to float
tolerance; ``state_dict()`` makes both checkpointable.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.batched import StackedDiscriminators, can_batch
from ddgan.core.losses import d_loss
from ddgan.core.models import (
    ArchSpec,
    Discriminator,
    Generator,
    frozen_forward,
    init_weights,
)
from ddgan.core.transfer import upload
from ddgan.data.datasets import channels, image_size
from ddgan.data.shard import Shard, load_shard

if TYPE_CHECKING:
    from ddgan.core.config import Config

DTYPES = {"float32": torch.float32, "float64": torch.float64}     # ``train.dtype``
OPTIMIZERS = ("adam", "sgd")                                       # ``train.d_optimizer``
# ``train.stack_clients``: whether a rank's clients' Ds go on stacked storage, by device. On the
# CPU stacking measured slower than a loop (its convolutions stay per client there; BENCHMARKS.md).
STACK_CLIENTS = {"auto": lambda device: device.type == "cuda", "always": lambda device: True,
                 "never": lambda device: False}


def arch(cfg: Config, width: int) -> ArchSpec:
    return ArchSpec(image_size(cfg.data), channels(cfg.data), width, cfg.model.z_dim, cfg.model.d_norm)


def make_optimizer(params, cfg: Config, lr: float, kind: str = "adam") -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.train.beta1, 0.999))


def widths(cfg: Config, node: int | None = None) -> tuple[int, int]:
    """(G width, D width) of ``node``: model.node_g_width / node_d_width (gossip, fedavg) where
    given, else model.g_width / d_width (and always for the one generator, ``node`` None)."""
    g, d = cfg.model.node_g_width, cfg.model.node_d_width
    if node is None:
        return cfg.model.g_width, cfg.model.d_width
    return (g[node] if g else cfg.model.g_width), (d[node] if d else cfg.model.d_width)


def build_generator(cfg: Config, device: torch.device, node: int | None = None, init: int | None = None) -> Generator:
    """``node``'s generator (None: the one generator), initialised like node ``init`` (default: itself)."""
    G = Generator(arch(cfg, widths(cfg, node)[0]))
    init_weights(G, seeds.torch_generator(cfg.train.seed, "init", 0, (node or 0) if init is None else init))
    return G.to(device=device, dtype=DTYPES[cfg.train.dtype])


def build_discriminator(cfg: Config, node: int, device: torch.device, init: int | None = None) -> Discriminator:
    """Client (node) ``node``'s discriminator, initialised like node ``init`` (default: itself)."""
    D = Discriminator(arch(cfg, widths(cfg, node)[1]))
    init_weights(D, seeds.torch_generator(cfg.train.seed, "init", 1, node if init is None else init))
    return D.to(device=device, dtype=DTYPES[cfg.train.dtype])


@dataclass
class Client:
    shard: Shard
    D: Discriminator
    opt: torch.optim.Optimizer
    loss: str
    batch_size: int
    real: Tensor | None = field(default=None, repr=False)   # the real batch of the newest D step

    @classmethod
    def build(cls, cfg: Config, client: int, shard: Shard, device: torch.device, init: int | None = None) -> "Client":
        """``init``: whose initial weights (default ``client``'s)."""
        D = build_discriminator(cfg, client, device, init)
        return cls(shard, D, make_optimizer(D.parameters(), cfg, cfg.train.lr_d, cfg.train.d_optimizer),
                   cfg.algo.loss, cfg.train.batch_size)

    def d_step(self, fake: Tensor, real_target: Tensor | float = 1.0, fake_target: Tensor | float = 0.0,
               fake_weight: Tensor | None = None) -> Tensor:
        """One update of D on a real batch from the shard and on ``fake`` (``fake_weight``: how much each
        fake sample counts in the fake term, a weighted sum; None: the mean); returns the loss."""
        self.real = real = self.shard.next(self.batch_size)
        self.opt.zero_grad(set_to_none=True)
        loss = d_loss(self.loss, self.D(real), self.D(fake.detach()), real_target, fake_target, fake_weight)
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
class ClientGroup:
    """The clients one rank hosts (``train.client_ranks``, :mod:`ddgan.forgiver.layout`), trained
    together: when their discriminators share one architecture (and no batchnorm) and
    ``train.stack_clients`` asks for it on this device, on stacked storage
    (:class:`ddgan.core.batched.StackedDiscriminators`), else one after another. Each client keeps its own shard, sampling stream, weights and optimiser
    (state), and its own entry in the checkpoint."""

    ids: list[int]
    clients: list[Client]
    stacked: StackedDiscriminators | None = None    # None: one after another

    @classmethod
    def build(cls, cfg: Config, ids: range, device: torch.device, source, shards) -> "ClientGroup":
        """``source`` and ``shards``: the data set and every client's sample indices (client_shards)."""
        dtype = DTYPES[cfg.train.dtype]
        clients = [Client.build(cfg, k, load_shard(cfg, k, device, dtype, source, shards), device) for k in ids]
        Ds = [c.D for c in clients]
        batched = STACK_CLIENTS[cfg.train.stack_clients](device) and len(clients) > 1 and can_batch(Ds)
        return cls(list(ids), clients, StackedDiscriminators(Ds, [c.opt for c in clients]) if batched else None)

    @property
    def Ds(self) -> list[Discriminator]:
        return [c.D for c in self.clients]

    @property
    def rows(self) -> slice:
        """The hosted clients' rows among all K (they are contiguous): a slice, which on a GPU
        indexes without copying an index list over."""
        return slice(self.ids[0], self.ids[-1] + 1)

    def d_step(self, fake: Tensor, fake_weights: Tensor | None = None) -> Tensor:
        """One D step of every hosted client on its own real batch and the shared ``fake``
        (``fake_weights``: clients x B, row j how much each fake sample counts for client j; None:
        the mean); their losses."""
        if self.stacked is None:
            return torch.stack([c.d_step(fake, fake_weight=None if fake_weights is None else fake_weights[j])
                                for j, c in enumerate(self.clients)])
        for c in self.clients:
            c.real = c.shard.next(c.batch_size)
        return self.stacked.d_step(torch.stack([c.real for c in self.clients]), fake, self.clients[0].loss,
                                   fake_weights=fake_weights)

    def scores(self, x: Tensor) -> Tensor:
        """Every hosted D's raw outputs on ``x`` (clients x B), differentiable w.r.t. ``x``; no
        buffer moves (:func:`frozen_forward`)."""
        if self.stacked is not None:
            return self.stacked.scores(x)
        return torch.stack([frozen_forward(D, x) for D in self.Ds])

    def tensors(self, j: int) -> list[Tensor]:
        """Client ``j``'s D weights and buffers, then its optimiser state: what MD-GAN's swap moves,
        overwritten in place."""
        client = self.clients[j]
        opt_state = [v for p in client.D.parameters() for v in client.opt.state[p].values() if torch.is_tensor(v)]
        return [*client.D.parameters(), *client.D.buffers(), *opt_state]

    def state_dict(self) -> dict:
        return {str(k): c.state_dict() for k, c in zip(self.ids, self.clients)}

    def load_state_dict(self, states: dict) -> None:
        for k, c in zip(self.ids, self.clients):
            c.load_state_dict(states[str(k)])


@dataclass
class Drawn:
    """A generated batch and what the generator update needs of it."""

    x: Tensor                                # G(z), with its graph
    z: Tensor
    stash: dict[str, Tensor] | None = None   # the parameters x was drawn with, if not G's own (pipeline)


@dataclass
class GeneratorSide:
    G: Generator
    opt: torch.optim.Optimizer
    lam: Tensor                       # the rule's temperature (0-d); learned when lam_opt is set
    lam_opt: torch.optim.Optimizer | None
    lam_max: float
    noise: torch.Generator            # the stream of z, on the CPU so every device draws the same
    fixed_z: Tensor                   # the z of every sample grid
    ema: Generator | None = None      # the averaged generator (train.g_ema), None when off
    ema_decay: float = 0.0
    ema_updates: int = 0

    @classmethod
    def build(cls, cfg: Config, device: torch.device, learns_lambda: bool, node: int | None = None,
              init: int | None = None) -> "GeneratorSide":
        """The one generator (``node`` None), or node ``node``'s own (gossip, fedavg) with its width, its
        noise stream and the initial weights of node ``init`` (default: its own)."""
        G = build_generator(cfg, device, node, init)
        dtype = DTYPES[cfg.train.dtype]
        lam = torch.tensor(cfg.algo.lambda_init, dtype=dtype, device=device, requires_grad=learns_lambda)
        lam_opt = torch.optim.Adam([lam], lr=cfg.algo.lambda_lr) if learns_lambda else None
        fixed = torch.randn(64, cfg.model.z_dim, generator=seeds.torch_generator(cfg.train.seed, "fixed_noise"),
                            dtype=torch.float32).to(device=device, dtype=dtype)
        ema = copy.deepcopy(G).requires_grad_(False) if cfg.train.g_ema > 0 else None
        return cls(G, make_optimizer(G.parameters(), cfg, cfg.train.lr_g), lam, lam_opt, cfg.algo.lambda_max,
                   seeds.torch_generator(cfg.train.seed, "noise", *([] if node is None else [node])), fixed,
                   ema, cfg.train.g_ema)

    def draw(self, n: int, stash: bool = False) -> Drawn:
        """A batch from fresh z. ``stash``: through a copy of the current parameters, so that the
        update it leads to can be applied after G has moved on (the pipelined step)."""
        z = torch.randn(n, self.G.spec.z_dim, generator=self.noise, dtype=torch.float32)
        z = upload(z, self.fixed_z.device).to(self.fixed_z.dtype)
        if not stash:
            return Drawn(self.G(z), z)
        params = {name: p.detach().clone().requires_grad_(True) for name, p in self.G.named_parameters()}
        # the module's own buffers: batchnorm's running statistics move as in a plain forward
        return Drawn(torch.func.functional_call(self.G, {**params, **dict(self.G.named_buffers())}, (z,)), z, params)

    def redraw(self, z: Tensor, stash: dict[str, Tensor]) -> Drawn:
        """The batch ``draw(stash=True)`` made from ``z`` with parameters ``stash``, again (after a
        resume), without moving the running statistics a second time."""
        params = {name: p.detach().clone().requires_grad_(True) for name, p in stash.items()}
        return Drawn(frozen_forward(self.G, z, state={**params, **dict(self.G.named_buffers())}), z, params)

    @torch.no_grad()
    def samples(self) -> Tensor:
        """The sample grid's images, from the averaged generator where there is one."""
        return frozen_forward(self.ema if self.ema is not None else self.G, self.fixed_z)

    @torch.no_grad()
    def _average(self) -> None:
        """One step of the averaged generator; the decay ramps up with the updates, so that the
        average is not held back by the first, untrained weights. Buffers (batchnorm's running
        statistics) are copied: they already are averages."""
        self.ema_updates += 1
        decay = min(self.ema_decay, (1 + self.ema_updates) / (10 + self.ema_updates))
        for avg, p in zip(self.ema.parameters(), self.G.parameters()):
            avg.lerp_(p, 1.0 - decay)
        for avg, b in zip(self.ema.buffers(), self.G.buffers()):
            avg.copy_(b)

    def step(self, drawn: Drawn, grad_x: Tensor | None = None, loss: Tensor | None = None,
             lam_grad: Tensor | None = None) -> None:
        """Update G from d loss / d x (feedback exchanges) or from ``loss`` itself, and lambda from
        ``lam_grad`` where given (else from ``loss``, when lambda is in its graph)."""
        self.opt.zero_grad(set_to_none=True)
        if self.lam_opt is not None:
            self.lam_opt.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        else:
            drawn.x.backward(grad_x)
        if drawn.stash is not None:
            for p, used in zip(self.G.parameters(), drawn.stash.values()):
                p.grad = used.grad
        if self.lam_opt is not None and lam_grad is not None:
            self.lam.grad = lam_grad
        self.opt.step()
        if self.ema is not None:
            self._average()
        if self.lam_opt is not None:
            self.lam_opt.step()
            with torch.no_grad():
                self.lam.clamp_(0.0, self.lam_max)

    def state_dict(self) -> dict:
        averaged = {"G_ema": self.ema.state_dict(), "ema_updates": self.ema_updates} if self.ema is not None else {}
        return {"G": self.G.state_dict(), "G_opt": self.opt.state_dict(), "lam": self.lam.detach().clone(),
                "lam_opt": self.lam_opt.state_dict() if self.lam_opt else {}, "noise": self.noise.get_state(),
                **averaged}

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        if self.ema is not None:
            # a checkpoint written before the average existed starts it from G
            self.ema.load_state_dict(state.get("G_ema", state["G"]))
            self.ema_updates = int(state.get("ema_updates", 0))
        self.opt.load_state_dict(state["G_opt"])
        with torch.no_grad():
            self.lam.copy_(state["lam"])
        if self.lam_opt is not None:
            self.lam_opt.load_state_dict(state["lam_opt"])
        self.noise.set_state(state["noise"])


def role_state(step: int, client: Client | None, generator: GeneratorSide | None, **extra) -> dict:
    """A rank's checkpoint state, in every trainer: ``{"step", "client", "generator", **extra}``
    (a role the rank does not hold is left out). ``ddgan.sample`` and the evaluation read
    ``generator.G`` and ``client.D`` of it."""
    state = {"step": step, **extra}
    if client is not None:
        state["client"] = client.state_dict()
    if generator is not None:
        state["generator"] = generator.state_dict()
    return state


def load_role_state(state: dict, client: Client | None, generator: GeneratorSide | None) -> int:
    """Restore what :func:`role_state` saved; the step it was saved at."""
    if client is not None:
        client.load_state_dict(state["client"])
    if generator is not None:
        generator.load_state_dict(state["generator"])
    return int(state["step"])
