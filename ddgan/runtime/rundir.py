"""The run directory every trainer writes, and the readers of it.

    <run.dir>/config.yaml               the resolved config of the run
    <run.dir>/metrics.jsonl             one JSON object per logged step
    <run.dir>/samples/step_NNNNNNN.png  sample grids from a fixed z (gossip/fedavg: node_K/ subfolders)
    <run.dir>/checkpoints/step_NNNNNNN/ see ddgan.runtime.checkpoint

Only rank 0 writes the shared files; checkpoints are written by every rank.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from ddgan.core.config import Config, save_config
from ddgan.core.errors import ConfigError


def prepare(cfg: Config, is_main: bool) -> Path:
    """Create the run directory (rank 0) and check that it is writable (every rank)."""
    run = Path(cfg.run.dir)
    if is_main:
        try:
            for sub in ("samples", "checkpoints"):
                (run / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"run.dir = {cfg.run.dir!r}: cannot create it ({exc.strerror})") from None
        if not os.access(run, os.W_OK) or not os.access(run / "checkpoints", os.W_OK):
            raise ConfigError(f"run.dir = {cfg.run.dir!r}: not writable by this user")
        save_config(cfg, run / "config.yaml")
    return run


class MetricsLog:
    """Appends one JSON line per record to metrics.jsonl (rank 0 only), flushed every write."""

    def __init__(self, run: Path, enabled: bool):
        self.file = open(run / "metrics.jsonl", "a") if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self.file is not None:
            try:
                self.file.write(json.dumps(record, default=_plain) + "\n")
                self.file.flush()
            except OSError as exc:
                warn_unwritten(Path(self.file.name), exc)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(type(value).__name__)


def read_metrics(run: Path) -> list[dict[str, Any]]:
    path = Path(run) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def save_grid(images: torch.Tensor, path: Path, padding: int = 2) -> None:
    """Images in [-1, 1] as one PNG grid, close to square, black between the images (what
    torchvision's ``save_image(..., normalize=True, value_range=(-1, 1))`` writes, pixel for pixel;
    drawn here because importing torchvision costs the rank that saves a grid 3.8 s of CPU)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    images = images.detach().float().cpu().clamp(-1.0, 1.0)
    if images.shape[-1] < 32:   # small digits are unreadable at 1:1; enlarge without blurring
        images = torch.nn.functional.interpolate(images, scale_factor=32 // images.shape[-1], mode="nearest")
    n, c, h, w = images.shape
    padding = padding if n > 1 else 0      # one image: no frame (as torchvision)
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = torch.zeros(c, rows * (h + padding) + padding, cols * (w + padding) + padding)
    for i, image in enumerate(images):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[:, top:top + h, left:left + w] = (image + 1.0) / 2.0
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    try:
        Image.fromarray(pixels[:, :, 0] if c == 1 else pixels).save(path)
    except OSError as exc:
        path.unlink(missing_ok=True)
        warn_unwritten(path, exc)


def warn_unwritten(path: Path, exc: OSError) -> None:
    """Logs and sample grids are not worth a run: a full disk there is a warning (the next
    checkpoint then fails loudly and keeps the previous one)."""
    print(f"warning: cannot write {path} ({exc.strerror or exc}); training goes on", file=sys.stderr, flush=True)


def progress_line(step: int, total: int, steps_per_s: float, values: dict[str, float]) -> str:
    eta = (total - step) / steps_per_s if steps_per_s > 0 else float("inf")
    eta_text = f"{int(eta // 60)}m{int(eta % 60):02d}s" if math.isfinite(eta) else "?"
    parts = " | ".join(f"{k} {v:.3f}" for k, v in values.items())
    return f"step {step}/{total} | {steps_per_s:.2f} steps/s | ETA {eta_text} | {parts}"


def final_line(step: int, total: int, run: Path) -> str:
    """What rank 0 prints when training ends: finished, or stopped on request and resumable."""
    where = f"samples in {run / 'samples'}, checkpoints in {run / 'checkpoints'}"
    if step >= total:
        return f"done: {total} steps; {where}"
    return f"stopped on request at step {step} of {total} (checkpointed); run the same command to resume; {where}"
