"""DCGAN generator and discriminator for 8, 16, 28, 32 and 64 pixel images with 1 or 3 channels.

The networks start (G) or end (D) at a 4x4 map (7x7 for 28 pixels) and double/halve the side per
stride-2 layer, so one pair of classes covers every supported size. An :class:`ArchSpec` fully
describes a network, so a discriminator sent to another node can be rebuilt there even when the
nodes use different widths. Nothing here communicates; see :mod:`ddgan.exchange`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

SIZES = (8, 16, 28, 32, 64)


@dataclass(frozen=True)
class ArchSpec:
    image_size: int
    channels: int
    width: int
    z_dim: int = 100
    batchnorm: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _plan(image_size: int) -> tuple[int, int]:
    """(side of the smallest map, number of stride-2 layers) for an image size."""
    if image_size not in SIZES:
        raise ValueError(f"image size {image_size} not supported; choose one of {SIZES}")
    base = 7 if image_size == 28 else 4
    return base, int(math.log2(image_size // base))


class Generator(nn.Module):
    """z (B x z_dim) -> images (B x C x S x S) in [-1, 1]."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        base, n_up = _plan(spec.image_size)
        widths = [spec.width * 2 ** (n_up - 1 - i) for i in range(n_up)]   # e.g. 64 px: 8w, 4w, 2w, w
        layers: list[nn.Module] = [
            # z_dim x 1 x 1 -> widths[0] x base x base
            nn.ConvTranspose2d(spec.z_dim, widths[0], base, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(True),
        ]
        for w_in, w_out in zip(widths, widths[1:]):
            # w_in x s x s -> w_out x 2s x 2s
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(True)]
        # widths[-1] x S/2 x S/2 -> C x S x S
        layers += [nn.ConvTranspose2d(widths[-1], spec.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """images (B x C x S x S) -> one raw output per image (a logit for bce).

    ``forward(x, features=True)`` also returns every block's activations (the SVM evaluation of
    discriminator features reads them).
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        base, n_down = _plan(spec.image_size)
        widths = [spec.width * 2 ** i for i in range(n_down)]               # e.g. 64 px: w, 2w, 4w, 8w
        blocks = [nn.Sequential(
            # C x S x S -> w x S/2 x S/2 (no batchnorm on the input layer, as in DCGAN)
            nn.Conv2d(spec.channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True))]
        for w_in, w_out in zip(widths, widths[1:]):
            # w_in x s x s -> w_out x s/2 x s/2
            norm = nn.BatchNorm2d(w_out) if spec.batchnorm else nn.Identity()
            blocks.append(nn.Sequential(nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), norm, nn.LeakyReLU(0.2, True)))
        self.blocks = nn.ModuleList(blocks)
        # widths[-1] x base x base -> 1 x 1 x 1
        self.head = nn.Conv2d(widths[-1], 1, base, 1, 0)

    def forward(self, x: Tensor, features: bool = False):
        acts = []
        for block in self.blocks:
            x = block(x)
            acts.append(x)
        out = self.head(x).flatten()
        return (out, acts) if features else out


def init_weights(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """DCGAN initialisation (conv ~ N(0, 0.02), batchnorm scale ~ N(1, 0.02)) from ``gen``.

    Drawn in float32 whatever the default dtype, so float32 and float64 runs start alike.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, dtype=torch.float32) * 0.02)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + torch.randn(m.weight.shape, generator=gen, dtype=torch.float32) * 0.02)
                m.bias.zero_()
    return module


def frozen_forward(module: nn.Module, *args, state: dict[str, Tensor] | None = None, **kwargs):
    """Run ``module`` in its current mode without changing its buffers.

    Batchnorm in train mode normalises with the batch's statistics and updates its running
    statistics as a side effect; scoring a batch for the generator, or drawing sample grids, must
    not move them. ``state`` substitutes other parameters and buffers (a discriminator received
    from another client) for the module's own.
    """
    if state is None:
        state = {**dict(module.named_parameters()), **{n: b.clone() for n, b in module.named_buffers()}}
    return torch.func.functional_call(module, state, args, kwargs)
