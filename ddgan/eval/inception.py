"""Inception FID, where the standard FID Inception weights already lie on this machine.

The weights are pytorch-fid's (``pt_inception-2015-12-05-6726825d.pth``, the TensorFlow FID
network ported to PyTorch), looked for in torch's hub cache (``torch.hub.get_dir()/checkpoints``)
or at ``eval.inception_weights`` / ``--inception-weights``. Nothing is downloaded: without the file
(or without the optional ``pytorch-fid`` package, ``pip install 'ddgan[fid]'``) eval.json says
"not computed" and why. Images go in as pytorch-fid expects: [0, 1], 3 channels (grey repeated),
resized to 299 x 299 by the network; the 2048-d pool features of the generated and the real test
images are compared by :func:`ddgan.eval.metrics.frechet_distance`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ddgan.eval.metrics import frechet_distance

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


def weights_path(configured: str | Path | None = None) -> Path:
    return Path(configured) if configured else Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def load_network(configured: str | Path | None = None) -> tuple[nn.Module | None, str]:
    """(pytorch-fid's InceptionV3 on the FID weights, "") or (None, why it was not computed)."""
    path = weights_path(configured)
    if not path.is_file():
        return None, (f"not computed: the FID Inception weights {WEIGHTS_FILE} are not at {path} (torch's hub "
                      f"cache; or give their path as eval.inception_weights / --inception-weights); ddgan never "
                      f"downloads them")
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError:
        return None, f"not computed: the weights are at {path} but pytorch-fid is not installed (pip install 'ddgan[fid]')"
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


def inception_fid(network: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> float:
    return frechet_distance(features(network, fake), features(network, real))
