"""The domain classifier: a small CNN per dataset and image size, trained once on the real training
split with a fixed seed, cached on disk beside its SHA-256 and test accuracy.

Its softmax gives the class histogram of generated samples; its 128-d penultimate layer is the
feature space of ``fid_classifier`` and precision/recall. Nothing is downloaded: it trains from
the dataset at ``data.root`` (or the bundled digits).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ddgan.core.config import DataConfig
from ddgan.data.datasets import channels, image_size, load_images, open_source

EPOCHS = {"digits": 40, "mnist": 5, "fashion_mnist": 6, "cifar10": 8, "image_folder": 8}


class DomainCNN(nn.Module):
    def __init__(self, in_channels: int, size: int, n_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (size // 4) ** 2, 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@dataclass
class Classifier:
    model: DomainCNN
    accuracy: float
    n_classes: int
    path: Path | None
    # which classifier scored a result: one trained on another machine may round differently, and
    # fid_classifier is comparable only under one (bench tables flag rows that mix them)
    sha256: str | None = None

    @torch.no_grad()
    def run(self, images: Tensor, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(class probabilities N x C, penultimate features N x 128) of images in [-1, 1]."""
        self.model.eval()
        device = next(self.model.parameters()).device
        probs, feats = [], []
        for start in range(0, len(images), batch):
            f = self.model.features(images[start:start + batch].float().to(device))
            probs.append(torch.softmax(self.model.head(f), 1))
            feats.append(f)
        return torch.cat(probs).double().cpu().numpy(), torch.cat(feats).double().cpu().numpy()


def real_split(data: DataConfig, train: bool, limit: int | None = None, seed: int = 0) -> tuple[Tensor, np.ndarray]:
    """Real images (in [-1, 1], the model's size) and labels of a split, a seeded subset of ``limit``."""
    source = open_source(data, train)
    idx = np.arange(len(source.labels))
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    return load_images(source, idx, data), source.labels[idx]


def train(data: DataConfig, seed: int = 0, epochs: int | None = None, log=print) -> Classifier:
    """The domain classifier, trained on the CPU with one thread: a CPU reduction split over more
    threads rounds differently, and the classifier is the yardstick of fid_classifier, so it comes
    out the same however many cores a machine has (on 2 loaded cores one thread was also the
    faster). Another CPU's kernels still round differently: machines train slightly different
    classifiers from one seed, so compare fid_classifier only under one file (its sha256 is in
    eval.json; the benchmark tables use tracked ones, bench/classifiers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(data, seed, epochs, log)
    finally:
        torch.set_num_threads(threads)


def _train(data: DataConfig, seed: int, epochs: int | None, log) -> Classifier:
    torch.manual_seed(seed)
    x, y = real_split(data, train=True)
    x_test, y_test = real_split(data, train=False)
    n_classes = int(max(y.max(), y_test.max()) + 1)
    model = DomainCNN(channels(data), image_size(data), n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = epochs or EPOCHS.get(data.name, 8)
    # a cosine-decaying rate: the last epochs settle into a minimum instead of bouncing around it
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    rng = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(y)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=rng)
        for start in range(0, len(x), 128):
            idx = order[start:start + 128]
            # small random shifts: the classifier must not depend on pixel-exact strokes
            batch = torch.roll(x[idx], shifts=tuple(torch.randint(-1, 2, (2,), generator=rng).tolist()), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(batch), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        schedule.step()
    clf = Classifier(model, 0.0, n_classes, None)
    probs, _ = clf.run(x_test)
    clf.accuracy = float((probs.argmax(1) == y_test).mean())
    log(f"[eval] {data.name} {image_size(data)} px classifier: test accuracy {clf.accuracy:.4f} "
        f"({len(x)} training images, {len(x_test)} test images)")
    return clf


# Bumped whenever the architecture or the training recipe changes, so that an old cached
# classifier is never mistaken for the current one.
RECIPE = 2


def cache_name(data: DataConfig, seed: int) -> str:
    return f"{data.name}_{image_size(data)}px_{channels(data)}c_seed{seed}_r{RECIPE}"


def load_or_train(data: DataConfig, cache: Path, seed: int = 0, log=print) -> Classifier:
    """The cached classifier when its checksum verifies, else a freshly trained one (then cached)."""
    cache = Path(cache)
    path = cache / f"{cache_name(data, seed)}.pt"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() == meta.get("sha256"):
            model = DomainCNN(channels(data), image_size(data), meta["n_classes"])
            model.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
            return Classifier(model, meta["accuracy"], meta["n_classes"], path, meta["sha256"])
        print(f"[eval] {path}: checksum mismatch, retraining the classifier", file=sys.stderr)
    clf = train(data, seed, log=log)
    buffer = io.BytesIO()
    torch.save(clf.model.state_dict(), buffer)
    clf.sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # two evaluations may train the same classifier at once (two bench scripts, two test
        # workers): each writes its own temporary files, and each rename is whole
        meta = {"dataset": data.name, "image_size": image_size(data), "seed": seed, "n_classes": clf.n_classes,
                "accuracy": clf.accuracy, "sha256": clf.sha256}
        for target, content in ((path, buffer.getvalue()), (meta_path, json.dumps(meta, indent=1).encode())):
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(content)
            tmp.replace(target)
        clf.path = path
    except OSError as exc:
        print(f"[eval] warning: cannot cache the classifier in {cache} ({exc.strerror}); it is retrained next time",
              file=sys.stderr)
    return clf
