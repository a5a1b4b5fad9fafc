"""DCGAN generator and discriminator for 8, 16, 20, 28, 32 and 64 pixel images with 1 or 3 channels.

The networks start (G) or end (D) at a 4x4 map (7x7 for 28 pixels, 5x5 for Kosmopoulos' 20
pixels: 5 -> 10 -> 20) and double/halve the side per stride-2 layer, so one pair of classes
covers every supported size. An :class:`ArchSpec` fully
describes a network, so a discriminator sent to another node can be rebuilt there even when the
nodes use different widths. Nothing here communicates; see :mod:`ddgan.runtime.comm`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

SIZES = (8, 16, 20, 28, 32, 64)      # ``data.image_size``

# How D normalises its hidden layers (``model.d_norm``). Only ``batch`` makes a sample's score
# depend on the rest of its batch (training mode normalises by the batch's statistics), which
# breaks every rule that compares the clients' per-sample scores; it stays for ablations and for
# the gossip paper, which uses it. ``spectral`` divides every layer's weight by its largest
# singular value (torch's own parametrization, one power iteration per forward in training mode),
# ``layer`` normalises each sample over its channels and pixels (GroupNorm with one group).
D_NORMS = ("none", "batch", "spectral", "layer")
BATCH_DEPENDENT_NORMS = frozenset({"batch"})


@dataclass(frozen=True)
class ArchSpec:
    image_size: int
    channels: int
    width: int
    z_dim: int = 100
    d_norm: str = "spectral"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    def to_dict(self) -> dict:
        return asdict(self)


def _plan(image_size: int) -> tuple[int, int]:
    """(side of the smallest map, number of stride-2 layers) for an image size."""
    if image_size not in SIZES:
        raise ValueError(f"image size {image_size} not supported; choose one of {SIZES}")
    base = {28: 7, 20: 5}.get(image_size, 4)
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


def _d_conv(spec: ArchSpec, *args, **kwargs) -> nn.Conv2d:
    conv = nn.Conv2d(*args, **kwargs)
    return spectral_norm(conv) if spec.d_norm == "spectral" else conv


def _d_norm(spec: ArchSpec, channels: int) -> nn.Module:
    if spec.d_norm == "batch":
        return nn.BatchNorm2d(channels)
    if spec.d_norm == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class Discriminator(nn.Module):
    """images (B x C x S x S) -> one raw output per image (a logit for bce).

    Hidden layers are normalised by ``spec.d_norm`` (see :data:`D_NORMS`); spectral
    normalisation covers every layer, input and head included (SNGAN). ``forward(x,
    features=True)`` also returns every block's activations (the SVM evaluation of discriminator
    features reads them).
    """

    def __init__(self, spec: ArchSpec):
        super().__init__()
        if spec.d_norm not in D_NORMS:
            raise ValueError(f"d_norm {spec.d_norm!r} not supported; choose one of {D_NORMS}")
        self.spec = spec
        base, n_down = _plan(spec.image_size)
        widths = [spec.width * 2 ** i for i in range(n_down)]               # e.g. 64 px: w, 2w, 4w, 8w
        blocks = [nn.Sequential(
            # C x S x S -> w x S/2 x S/2 (no normalisation layer on the input layer, as in DCGAN)
            _d_conv(spec, spec.channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True))]
        for w_in, w_out in zip(widths, widths[1:]):
            # w_in x s x s -> w_out x s/2 x s/2
            blocks.append(nn.Sequential(_d_conv(spec, w_in, w_out, 4, 2, 1, bias=False), _d_norm(spec, w_out),
                                        nn.LeakyReLU(0.2, True)))
        self.blocks = nn.ModuleList(blocks)
        # widths[-1] x base x base -> 1 x 1 x 1
        self.head = _d_conv(spec, widths[-1], 1, base, 1, 0)

    def forward(self, x: Tensor, features: bool = False):
        acts = []
        for block in self.blocks:
            x = block(x)
            acts.append(x)
        out = self.head(x).flatten()
        return (out, acts) if features else out


def init_weights(module: nn.Module, rng: torch.Generator) -> nn.Module:
    """DCGAN initialisation (conv ~ N(0, 0.02), norm scale ~ N(1, 0.02)) from ``rng``.

    Drawn in float32 whatever the default dtype, so float32 and float64 runs start alike. A
    spectrally normalised conv gets its raw weight and its power-iteration vectors from ``rng``
    too (torch draws those from the global stream), so every rank builds the same network.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                spectral = parametrize.is_parametrized(m, "weight")
                weight = m.parametrizations.weight.original if spectral else m.weight
                weight.copy_(torch.randn(weight.shape, generator=rng, dtype=torch.float32) * 0.02)
                if spectral:
                    _seed_power_iteration(m.parametrizations.weight[0], weight, rng)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.weight.copy_(1.0 + torch.randn(m.weight.shape, generator=rng, dtype=torch.float32) * 0.02)
                m.bias.zero_()
    return module


def _seed_power_iteration(sn: nn.Module, weight: Tensor, rng: torch.Generator, iters: int = 15) -> None:
    """Spectral norm's singular vectors u, v for ``weight``: seeded, then ``iters`` power iterations
    (what torch does at construction, from a stream of ours)."""
    matrix = weight.flatten(1).float()
    u = F.normalize(torch.randn(matrix.shape[0], generator=rng, dtype=torch.float32), dim=0, eps=sn.eps)
    v = F.normalize(torch.randn(matrix.shape[1], generator=rng, dtype=torch.float32), dim=0, eps=sn.eps)
    for _ in range(iters):
        u = F.normalize(matrix @ v, dim=0, eps=sn.eps)
        v = F.normalize(matrix.T @ u, dim=0, eps=sn.eps)
    sn._u.copy_(u)
    sn._v.copy_(v)


def frozen_forward(module: nn.Module, *args, state: dict[str, Tensor] | None = None, **kwargs):
    """Run ``module`` in its current mode without changing its buffers.

    In training mode batchnorm updates its running statistics and spectral norm its singular
    vectors as a side effect; scoring a batch for the generator, or drawing sample grids, must
    not move them. ``state`` substitutes other parameters and buffers (a discriminator received
    from another client) for the module's own.
    """
    if state is None:
        state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    buffers = {name for name, _ in module.named_buffers()}
    state = {name: t.clone() if name in buffers else t for name, t in state.items()}
    return torch.func.functional_call(module, state, args, kwargs)
