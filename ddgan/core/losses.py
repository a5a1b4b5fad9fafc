"""GAN losses on raw discriminator outputs, for the two objectives the trainers offer.

``bce``: D outputs a logit, realness = sigmoid(logit); D minimises binary cross-entropy and G the
non-saturating -log D(G(z)). ``ls``: least squares (LSGAN, the form of the F2U theorem); the raw
output is the realness, D regresses real to 1 and fake to 0, G pushes its samples to 1.
Everything is per sample so that the aggregation rules can choose or weight clients per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("bce", "ls")     # ``algo.loss``


def realness(loss: str, out: Tensor) -> Tensor:
    """How real D finds each sample, on the scale the aggregation rules compare (higher = realer)."""
    return torch.sigmoid(out) if loss == "bce" else out


def d_loss(loss: str, real_out: Tensor, fake_out: Tensor,
           real_target: Tensor | float = 1.0, fake_target: Tensor | float = 0.0,
           fake_weight: Tensor | None = None) -> Tensor:
    """Discriminator loss: mean over real samples plus mean over fake samples (targets may be noisy);
    with ``fake_weight`` (one weight per fake sample; 1/B each is the mean) the fake term is that weighted sum."""
    real_t = _target(real_target, real_out)
    fake_t = _target(fake_target, fake_out)
    per_fake = "mean" if fake_weight is None else "none"
    if loss == "bce":
        real = F.binary_cross_entropy_with_logits(real_out, real_t)
        fake = F.binary_cross_entropy_with_logits(fake_out, fake_t, reduction=per_fake)
    else:
        real = 0.5 * F.mse_loss(real_out, real_t)
        fake = 0.5 * F.mse_loss(fake_out, fake_t, reduction=per_fake)
    return real + (fake if fake_weight is None else (fake_weight * fake).sum())


def _target(value: Tensor | float, out: Tensor) -> Tensor:
    """A target shaped like ``out``; a number is filled in on the device, not copied from the host."""
    if torch.is_tensor(value):
        return torch.as_tensor(value, dtype=out.dtype, device=out.device).expand_as(out)
    return torch.full_like(out, value)


def g_loss(loss: str, out: Tensor) -> Tensor:
    """Per-sample generator loss against one discriminator's output (any shape)."""
    if loss == "bce":
        return F.softplus(-out)  # -log sigmoid(out), stable for large |out|
    return 0.5 * (out - 1.0) ** 2


def mixture_loss(loss: str, out: Tensor, weights: Tensor, real: bool = True) -> Tensor:
    """Per-sample loss of D_agg = sum_k weights[k] * realness(out[k]) against the label real (what
    G minimises on its samples) or fake (D_agg's discriminator loss on generated samples).

    ``out`` and ``weights`` are K x B with weights summing to 1 over k. For bce the mixture is
    taken in log space (log D_agg = logsumexp_k(log w_k + log sigmoid(out_k)), and 1 - D_agg =
    sum_k w_k sigmoid(-out_k)) so a batch that every discriminator rejects still gets a finite,
    informative gradient.
    """
    if loss == "bce":
        return -torch.logsumexp(torch.log(weights) + F.logsigmoid(out if real else -out), dim=0)
    return 0.5 * ((weights * out).sum(0) - (1.0 if real else 0.0)) ** 2
