"""The one place where ddgan meets PyTorch's version: the oldest release it runs on, and every torch
name newer than that release, looked up here with its older spelling as the fallback.

The minimum is 2.3, the release that added ``init_process_group(device_id=...)`` (the NCCL group is
bound to the rank's GPU at start-up; :mod:`ddgan.runtime.distributed`). Everything else ddgan calls is older:
``torch.distributed.DistError`` (2.2), ``torch.func.functional_call`` (2.0), the spectral-norm
parametrization (1.11), ``torch.load(weights_only=True)`` (1.13), ``all_gather_into_tensor`` (1.13).
torchvision 0.18 is the release built against torch 2.3.

Reading the version costs no torch import: :mod:`ddgan.core.config` and the launch-time checks stay light.
"""
from __future__ import annotations

import re
from importlib import metadata

from ddgan.core.errors import UserError

MIN_TORCH = (2, 3)


def _release(version: str) -> tuple[int, ...]:
    """'2.11.0+cu130' -> (2, 11, 0); a pre-release counts as its release."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def installed_torch() -> str:
    """The installed torch's version, read from its package metadata (torch itself is not imported)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        import torch  # a source build without metadata: ask the module
        return torch.__version__


def require_torch(version: str | None = None) -> None:
    """Refuse, as one line, a PyTorch older than :data:`MIN_TORCH` (every ddgan command calls this)."""
    version = version or installed_torch()
    if _release(version)[:2] < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise UserError(f"PyTorch {version} is installed, but ddgan needs PyTorch >= {need} "
                        f"(pip install 'torch>={need},<3', or load a newer module on the cluster)",
                        same_on_all_ranks=True)


def all_gather_into_tensor(output, tensor) -> None:
    """``torch.distributed.all_gather_single`` (2.14), which older releases call
    ``all_gather_into_tensor``; looked up per call, so that whatever torch is loaded decides."""
    import torch.distributed as dist

    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(output, tensor)
