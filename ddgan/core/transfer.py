"""Host-made tensors onto the device without stalling it.

A plain ``tensor.to("cuda")`` from pageable host memory returns only once the copy is done, so the
host waits for every kernel queued before it: one such copy per step keeps a GPU's queue empty.
Random streams stay on the CPU (every device then draws the same numbers, and a run resumes bit for
bit on another device), so what they draw goes through :func:`upload`.
"""
from __future__ import annotations

import torch
from torch import Tensor


def upload(t: Tensor, device: torch.device) -> Tensor:
    """``t`` (on the CPU) on ``device``, queued behind the device's work instead of waiting for it:
    through pinned memory on a GPU (the caching host allocator keeps the block until the copy ran)."""
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)
