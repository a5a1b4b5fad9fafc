"""K same-shaped discriminators trained and evaluated as one stacked computation.

A rank that hosts several clients holds each client's D_k (:class:`~ddgan.core.models.Discriminator`)
and its optimiser. :class:`StackedDiscriminators` moves every parameter and buffer of the K modules
into one K x ... tensor per name and points each module's own tensor at its slice (``tensor.data =
stacked[k]``, the trick FSDP uses for its flat parameter). The modules and their optimisers stay the
objects checkpoints, MD-GAN swaps and parameter gathers already use: ``Ds[k].state_dict()`` reads
the stacked storage and ``Ds[k].load_state_dict()`` (which copies in place) writes it, and
``opts[k]`` keeps its own state, keyed by the same parameter objects, so its ``state_dict()`` is
exact and clients may even differ in step count or optimiser class. Nothing needs syncing.

What runs batched: spectral normalisation's power iteration and W / sigma for all K at once, and
with ``grouped=True`` every layer: a convolution is one grouped convolution (client k's channels
are group k), layer norm one group norm. With ``grouped=False`` the same code runs on one client's
slices at a time, so each client's activations stay in cache from layer to layer. Optimiser steps
stay per client (elementwise, about 1-2 % of a step). Measured here (MNIST's D: width 64, 28 x 28,
batch 64, spectral norm, Adam; one thread on a 2-core CPU beside a running benchmark), a grouped
d_step ran at 0.65-0.8x the speed of a Python loop over the K modules for K = 5 and 0.5-0.65x for
K = 20 (``torch.func.vmap`` over ``functional_call``, which lowers to the same grouped convolutions,
at 0.7x and 0.55x; oneDNN's grouped backward is the loss), the per-client form at 0.85-1.0x; only with
two threads on the oversubscribed cores did grouped win (2x and 4x), every form then running several
times slower than with one thread. So ``grouped`` defaults to False on the CPU and to True on CUDA,
where batching is meant to pay but was not measured.

Beware: a module tensor is a view of the stack, so ``torch.save(Ds[k].state_dict())`` alone writes
every client's storage (clone to export one client); and ``.data`` keeps each tensor's own version
counter, so autograd misses writes through a module's tensors (``d_step`` reports its own).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import increment_version

from ddgan.core.losses import d_loss
from ddgan.core.models import BATCH_DEPENDENT_NORMS, Discriminator


def can_batch(Ds: list[Discriminator]) -> bool:
    """Whether ``Ds`` can be stacked: distinct Discriminators of one ArchSpec, one dtype and device,
    and no batchnorm (its running statistics and per-batch statistics are per module: callers loop)."""
    if not Ds or not all(isinstance(D, Discriminator) for D in Ds) or len({id(D) for D in Ds}) < len(Ds):
        return False
    spec = Ds[0].spec
    kinds = {(t.dtype, t.device) for D in Ds for t in (*D.parameters(), *D.buffers())}
    return spec.d_norm not in BATCH_DEPENDENT_NORMS and all(D.spec == spec for D in Ds) and len(kinds) == 1


@torch.no_grad()
def power_iteration(weight: Tensor, u: Tensor, v: Tensor, eps: float, iters: int) -> tuple[Tensor, Tensor]:
    """``iters`` steps of torch's spectral-norm power method (``_SpectralNorm._power_method``, dim 0)
    on each of K weights: ``weight`` K x out x ..., ``u`` K x out, ``v`` K x in_flat. Returns new
    (u, v); the inputs are left alone (copies even for ``iters`` 0, since autograd may save them)."""
    mat = weight.detach().flatten(2)
    u, v = u.clone(), v.clone()
    for _ in range(iters):
        u = F.normalize((mat @ v.unsqueeze(-1)).squeeze(-1), dim=1, eps=eps)
        v = F.normalize((mat.transpose(1, 2) @ u.unsqueeze(-1)).squeeze(-1), dim=1, eps=eps)
    return u, v


def spectral_weight(weight: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """W_k / sigma_k with sigma_k = u_k . (W_k v_k), differentiable w.r.t. ``weight`` (u, v constant),
    as the parametrization's forward computes it."""
    sigma = (u * (weight.flatten(2) @ v.unsqueeze(-1)).squeeze(-1)).sum(-1)
    return weight / sigma.view(-1, *[1] * (weight.dim() - 1))


def _share(tensors: list[Tensor]) -> Tensor:
    """Stack ``tensors`` and point each at its slice, keeping the tensor objects (so optimisers and
    anyone else holding them keep working)."""
    stacked = torch.stack([t.detach() for t in tensors])
    for k, t in enumerate(tensors):
        t.data = stacked[k]
    return stacked


def _conv(x: Tensor, w: Tensor, b: Tensor | None, m: nn.Conv2d, shared: bool) -> Tensor:
    """K convolutions as one grouped one: ``x`` K x B x C x H x W, or B x C x H x W when every
    client sees the same batch; ``w`` K x out x C x kh x kw."""
    K = w.shape[0]
    # B x (K C) x H x W: client k's channels form group k (a shared input meets all K*out filters)
    flat = x if shared else x.transpose(0, 1).flatten(1, 2)
    y = F.conv2d(flat, w.flatten(0, 1), None if b is None else b.flatten(), m.stride, m.padding, m.dilation,
                 1 if shared else K)
    return y.unflatten(1, (K, -1)).transpose(0, 1)


def _group_norm(x: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """GroupNorm on K x B x C x H x W with per-client affine parameters (K x C): torch's own, on the
    B x (K C) layout, where client k's channels are its own ``groups`` groups."""
    K = x.shape[0]
    y = F.group_norm(x.transpose(0, 1).flatten(1, 2), K * groups, weight.flatten(), bias.flatten(), eps)
    return y.unflatten(1, (K, -1)).transpose(0, 1)


def _kind(m: nn.Module) -> str:
    # isinstance, not the class name: spectral norm turns a Conv2d into a "ParametrizedConv2d"
    kinds = ((nn.Conv2d, "Conv2d"), (nn.GroupNorm, "GroupNorm"), (nn.LeakyReLU, "LeakyReLU"), (nn.Identity, "Identity"))
    return next((name for cls, name in kinds if isinstance(m, cls)), type(m).__name__)


class StackedDiscriminators:
    """``Ds`` (see :func:`can_batch`) with optimisers ``opts[k]`` over ``Ds[k].parameters()``,
    stepped and evaluated together. ``grouped``: one grouped convolution per layer (default: on CUDA
    only, see the module docstring)."""

    def __init__(self, Ds: list[Discriminator], opts: list[torch.optim.Optimizer], grouped: bool | None = None):
        if not can_batch(Ds) or len(opts) != len(Ds):
            raise ValueError("discriminators not stackable (see can_batch) or not one optimiser each")
        self.Ds, self.opts = Ds, opts
        self.grouped = next(Ds[0].parameters()).is_cuda if grouped is None else grouped
        # the layers in forward order; weights and buffers are looked up by their module names
        self._ops: list[tuple[str, nn.Module, str]] = []
        for i, block in enumerate(Ds[0].blocks):
            self._ops += [(_kind(m), m, f"blocks.{i}.{j}") for j, m in enumerate(block)]
        self._ops.append((_kind(Ds[0].head), Ds[0].head, "head"))
        self._spectral = Ds[0].spec.d_norm == "spectral"
        self.restack()

    def restack(self) -> None:
        """(Re)build the stacked storage from the modules' current tensors. Needed only after
        something replaced a module's storage (``.to()`` to another dtype or device), which the
        steps detect."""
        for D, opt in zip(self.Ds, self.opts):
            if {id(p) for g in opt.param_groups for p in g["params"]} != {id(p) for p in D.parameters()}:
                raise ValueError("each optimiser must hold exactly its discriminator's parameters")
        named = [{**dict(D.named_parameters()), **dict(D.named_buffers())} for D in self.Ds]
        self.stacked = {name: _share([n[name] for n in named]) for name in named[0]}
        for name, _ in self.Ds[0].named_parameters():
            self.stacked[name].requires_grad_(True)

    def _check(self) -> bool:
        """Raise if a module no longer views the stack; return the (common) training mode."""
        for k, D in enumerate(self.Ds):
            for name, t in (*D.named_parameters(), *D.named_buffers()):
                if t.data_ptr() != self.stacked[name][k].data_ptr():
                    raise RuntimeError(f"client {k}'s {name} was moved off the stacked storage; call restack()")
        modes = {D.training for D in self.Ds}
        if len(modes) > 1:
            raise RuntimeError("discriminators in different modes (train/eval)")
        return modes.pop()

    def _weights(self, uv: dict[str, tuple[Tensor, Tensor]], iters: int):
        """Every conv's weight as the forward uses it (W/sigma under spectral norm, after ``iters``
        power iterations from ``uv``), and the new (u, v) per conv."""
        weights, new = {}, {}
        for kind, m, p in self._ops:
            if kind == "Conv2d" and self._spectral:
                sn = m.parametrizations.weight[0]
                W = self.stacked[f"{p}.parametrizations.weight.original"]
                new[p] = power_iteration(W, *uv[p], sn.eps, iters * sn.n_power_iterations)
                weights[p] = spectral_weight(W, *new[p])
            elif kind == "Conv2d":
                weights[p] = self.stacked[f"{p}.weight"]
        return weights, new

    def _uv(self) -> dict[str, tuple[Tensor, Tensor]]:
        pre = "parametrizations.weight.0"
        return {p: (self.stacked[f"{p}.{pre}._u"], self.stacked[f"{p}.{pre}._v"])
                for kind, _, p in self._ops if kind == "Conv2d" and self._spectral}

    def _forward(self, x: Tensor, weights: dict[str, Tensor], shared: bool) -> Tensor:
        """K x B raw outputs for ``x`` (K x B x C x S x S, or B x C x S x S when ``shared``)."""
        layers = {p: (weights[p], self.stacked.get(f"{p}.bias")) if kind == "Conv2d"
                  else (self.stacked[f"{p}.weight"], self.stacked[f"{p}.bias"])
                  for kind, _, p in self._ops if kind in ("Conv2d", "GroupNorm")}
        if self.grouped:
            return self._run(x, layers, shared)
        # one client at a time through the same code (K = 1): its activations stay in cache from
        # layer to layer, which is what made a plain loop over the modules the faster on the CPU.
        # unbind, not indexing: its backward stacks the K gradients once, not K full-size ones.
        K = len(self.Ds)
        parts = {p: [(None,) * K if t is None else t.unsqueeze(1).unbind(0) for t in wb] for p, wb in layers.items()}
        return torch.cat([self._run(x if shared else x[k:k + 1], {p: tuple(t[k] for t in ts) for p, ts in parts.items()},
                                    shared) for k in range(K)])

    def _run(self, x: Tensor, layers: dict[str, tuple[Tensor, Tensor | None]], shared: bool) -> Tensor:
        for kind, m, p in self._ops:
            if kind == "Conv2d":
                x, shared = _conv(x, *layers[p], m, shared), False
            elif kind == "GroupNorm":
                x = _group_norm(x, m.num_groups, *layers[p], m.eps)
            elif kind == "LeakyReLU":
                # not in place (as the module's is): on these views autograd would copy the gradients back
                x = F.leaky_relu(x, m.negative_slope)
            elif kind != "Identity":
                raise TypeError(f"no batched form for {kind}")
        return x.flatten(1)

    def d_step(self, reals: Tensor, fake: Tensor, loss: str,
               real_target: Tensor | float = 1.0, fake_target: Tensor | float = 0.0,
               fake_weights: Tensor | None = None) -> Tensor:
        """For every k, what ``Client.d_step`` does with real batch ``reals[k]`` and the shared
        ``fake``: loss_k = d_loss(D_k(reals[k]), D_k(fake)), backward, ``opts[k].step()``. Targets:
        a float or tensor for all, or K x B (row k for client k); ``fake_weights``: None, or K x B
        (row k how much each fake sample counts for client k). The modules' mode (train or eval,
        the same for all) decides whether spectral norm iterates, as in their own forward. Returns
        the K losses, detached."""
        iters = int(self._check())
        params = [self.stacked[name] for name, _ in self.Ds[0].named_parameters()]
        for S in params:
            S.grad = None
        # a training-mode forward of a spectrally normalised module runs one power iteration and
        # stores u, v: D(real) then D(fake) is two iterations, with sigma recomputed in between
        w_real, uv = self._weights(self._uv(), iters)
        w_fake, uv = self._weights(uv, iters)
        real_out = self._forward(reals, w_real, shared=False)
        fake_out = self._forward(fake.detach(), w_fake, shared=True)

        def row(t, k):
            return t[k] if isinstance(t, Tensor) and t.dim() == 2 else t
        losses = torch.stack([d_loss(loss, real_out[k], fake_out[k], row(real_target, k), row(fake_target, k),
                                     row(fake_weights, k)) for k in range(len(self.Ds))])
        losses.sum().backward()     # loss_k depends on client k's slices only
        with torch.no_grad():
            for p, (u, v) in uv.items():
                self.stacked[f"{p}.parametrizations.weight.0._u"].copy_(u)
                self.stacked[f"{p}.parametrizations.weight.0._v"].copy_(v)
        for k, (D, opt) in enumerate(zip(self.Ds, self.opts)):
            for p, S in zip(D.parameters(), params):
                p.grad = None if S.grad is None else S.grad[k]
            opt.step()
        # the steps wrote through the modules' tensors, whose version counters are their own: tell
        # autograd, so a graph built before (scores) fails on backward as it would with the modules
        for S in params:
            increment_version(S)      # one at a time: torch 2.3 (the minimum) takes no list
        return losses.detach()

    def scores(self, x: Tensor) -> Tensor:
        """K x B raw outputs of every D on the shared batch ``x``, in the modules' current mode but
        changing no buffer (as :func:`~ddgan.core.models.frozen_forward`); differentiable w.r.t.
        ``x`` (and the stacked tensors, whose ``.grad`` the next :meth:`d_step` discards)."""
        weights, _ = self._weights(self._uv(), int(self._check()))
        return self._forward(x, weights, shared=True)
