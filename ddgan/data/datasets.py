"""Datasets by name: labels for everyone, pixels only for the samples a rank owns.

Every rank needs all training labels to compute the same partition; it then loads the images of
its own shard only (for ``image_folder`` it never opens another client's files). Images come
out as float tensors N x C x H x W in [-1, 1] at ``data.image_size``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ddgan.core.errors import DataError

if TYPE_CHECKING:
    from ddgan.core.config import DataConfig

DEFAULT_SIZE = {"digits": 16, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "image_folder": 64}
NATIVE_CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "cifar10": 3, "image_folder": 3}
DATASETS = tuple(DEFAULT_SIZE)        # ``data.name``


@dataclass
class Source:
    """One split of a dataset: all labels, and a loader of uint8/float pixels by index."""

    name: str
    labels: np.ndarray                                   # int64, one per sample
    num_classes: int
    pixels: Callable[[np.ndarray], torch.Tensor]         # indices -> N x C x H x W floats in [0, 1]


def image_size(cfg: DataConfig) -> int:
    return cfg.image_size or DEFAULT_SIZE[cfg.name]


def channels(cfg: DataConfig) -> int:
    return cfg.channels or NATIVE_CHANNELS[cfg.name]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's UCI digits as (1797 x 8 x 8 floats in 0-16, 1797 labels), read straight from
    the data file sklearn ships: importing ``sklearn.datasets`` costs every process that loads
    digits 2.5 s of CPU before it trains (measured on 2 cores; the file takes 0.3 s), and every rank
    and evaluation of a digits run loads them. ``load_digits()`` where the file is not found."""
    spec = importlib.util.find_spec("sklearn")           # finds the package without importing it
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    table = np.loadtxt(path, delimiter=",")              # 64 pixel columns, then the label
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def _digits(cfg: DataConfig, train: bool) -> Source:
    pixels, labels = digits_arrays()
    # scikit-learn ships one set; a fixed 80/20 split gives the evaluation a held-out test set.
    order = np.random.default_rng(1797).permutation(len(labels))
    cut = int(0.8 * len(order))
    keep = np.sort(order[:cut] if train else order[cut:])
    images = torch.from_numpy(pixels[keep] / 16.0).float()[:, None]
    return Source("digits", labels[keep].astype(np.int64), 10, lambda idx: images[idx])


def _torchvision(cfg: DataConfig, train: bool) -> Source:
    import torchvision.datasets as tvd

    cls, folder, how = {
        "mnist": (tvd.MNIST, "MNIST/raw", "train-images-idx3-ubyte and the label files"),
        "fashion_mnist": (tvd.FashionMNIST, "FashionMNIST/raw", "train-images-idx3-ubyte and the label files"),
        "cifar10": (tvd.CIFAR10, "cifar-10-batches-py", "data_batch_1..5 and test_batch"),
    }[cfg.name]
    try:
        ds = cls(cfg.root, train=train, download=cfg.download)
    except (RuntimeError, OSError) as exc:
        where = Path(cfg.root).resolve() / folder
        raise DataError(
            f"data.root = {cfg.root!r}: {cfg.name} not found in {where} (looked for {how}); "
            f"copy the files there, or set data.download=true on a machine with internet ({exc})",
            same_on_all_ranks=True) from None
    data = torch.as_tensor(np.asarray(ds.data))
    data = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)   # N x C x H x W uint8
    labels = np.asarray(ds.targets, dtype=np.int64)
    return Source(cfg.name, labels, len(ds.classes), lambda idx: data[idx].float() / 255.0)


def _image_folder(cfg: DataConfig, train: bool) -> Source:
    from PIL import Image, ImageOps
    from torchvision.datasets import ImageFolder

    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data.root = {cfg.root!r}: image_folder needs a directory of class folders "
                        f"(root/<class>/<image>), and {root.resolve()} is not a directory", same_on_all_ranks=True)
    try:
        ds = ImageFolder(str(root), loader=lambda p: p)     # paths only: pixels load per shard
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"data.root = {cfg.root!r}: no images in class folders under {root.resolve()} ({exc})",
                        same_on_all_ranks=True) from None
    # ImageFolder has no split: hold out a fixed 10 % as the test split.
    order = np.random.default_rng(len(ds.samples)).permutation(len(ds.samples))
    cut = int(0.9 * len(order))
    keep = np.sort(order[:cut] if train else order[cut:])
    paths = [ds.samples[i][0] for i in keep]
    labels = np.asarray([ds.samples[i][1] for i in keep], dtype=np.int64)
    size, mode = image_size(cfg), "L" if channels(cfg) == 1 else "RGB"

    def pixels(idx: np.ndarray) -> torch.Tensor:
        out = []
        for i in np.asarray(idx).reshape(-1):
            with Image.open(paths[i]) as im:
                im = ImageOps.fit(im.convert(mode), (size, size))
                arr = np.asarray(im, dtype=np.uint8).reshape(size, size, -1)
            out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
        return torch.stack(out).float() / 255.0

    return Source("image_folder", labels, len(ds.classes), pixels)


def open_source(cfg: DataConfig, train: bool = True) -> Source:
    """The named dataset's training (or test) split; raises DataError when it is not at data.root."""
    loader = {"digits": _digits, "image_folder": _image_folder}.get(cfg.name, _torchvision)
    return loader(cfg, train)


def to_model_range(pixels: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """[0, 1] pixels -> [-1, 1] at data.image_size with data.channels channels."""
    size, want = image_size(cfg), channels(cfg)
    if pixels.shape[1] != want:
        if want == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        else:
            pixels = (pixels * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if pixels.shape[-1] != size:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (pixels * 2.0 - 1.0).clamp(-1.0, 1.0).contiguous()


def load_images(source: Source, indices: np.ndarray, cfg: DataConfig) -> torch.Tensor:
    """The samples at ``indices`` as model inputs, loaded in chunks to bound peak memory."""
    chunks = [to_model_range(source.pixels(indices[i:i + 4096]), cfg) for i in range(0, len(indices), 4096)]
    return torch.cat(chunks) if chunks else torch.empty(0, channels(cfg), image_size(cfg), image_size(cfg))
