"""The floor ddgan's step is measured against: a plain PyTorch training loop of the same G and D.

    python bench/plain_loop.py --device cuda --steps 400

Same networks and initialisation as ``algo.name=centralized`` (ddgan.roles builds them from the same
config), spectral-norm D, Adam, the BCE losses of ddgan.core.losses, batch 64, the whole data set already
on the device and batches drawn there: no process group, no metrics, no checkpoints. What ddgan's
centralized run adds over this loop is its own overhead. Prints steps/s; ``--fused`` uses fused Adam.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ddgan.core.config import load_config  # noqa: E402
from ddgan.core.losses import d_loss, g_loss  # noqa: E402
from ddgan.data.datasets import load_images, open_source  # noqa: E402
from ddgan.roles import build_discriminator, build_generator  # noqa: E402


def steps_per_s(overrides: list[str], device: str, steps: int, warmup: int, fused: bool = False) -> float:
    cfg = load_config(None, ["algo.name=centralized", "partition.clients=1", "partition.scheme=iid", *overrides])
    dev = torch.device(device)
    source = open_source(cfg.data, train=True)
    images = load_images(source, np.arange(len(source.labels)), cfg.data).to(dev)
    G, D = build_generator(cfg, dev), build_discriminator(cfg, 0, dev)
    extra = {"fused": True} if fused else {}
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=(cfg.train.beta1, 0.999), **extra)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=(cfg.train.beta1, 0.999), **extra)
    b, z_dim = cfg.train.batch_size, cfg.model.z_dim

    def step() -> None:
        real = images[torch.randint(len(images), (b,), device=dev)]
        fake = G(torch.randn(b, z_dim, device=dev))
        opt_d.zero_grad(set_to_none=True)
        d_loss(cfg.algo.loss, D(real), D(fake.detach())).backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        g_loss(cfg.algo.loss, D(fake)).mean().backward()
        opt_g.step()

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--fused", action="store_true", help="fused Adam")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.name=mnist data.root=/datasets")
    args = parser.parse_args()
    print(f"{steps_per_s(args.overrides, args.device, args.steps, args.warmup, args.fused):.1f} steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
