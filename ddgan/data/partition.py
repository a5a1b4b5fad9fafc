"""Non-iid partitions of a labelled dataset into client shards, and their report.

Every rank calls :func:`assign` with the same labels and config and gets the same shards (the
randomness derives from ``train.seed`` alone); it then loads its own shard only. Shards are
disjoint and never duplicate a sample: where several clients hold a class, that class's samples
are split between them as evenly as possible.

    python -m ddgan.partition --config configs/default.yaml partition.clients=3 partition.scheme=iid

prints the report (:mod:`ddgan.partition`, the command).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ddgan.core import seeds
from ddgan.core.errors import DataError

if TYPE_CHECKING:
    from ddgan.core.config import Config, PartitionConfig

# The F2U paper's 5-client splits of 10 classes (Yonetani et al. 2019).
PRESETS = {
    "non_ovl": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]],
    "mod_ovl": [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9], [8, 9, 0, 1]],
}
SCHEMES = ("iid", "classes", "classes_per_client", "dirichlet", "disjoint_iid", *PRESETS)   # ``partition.scheme``


def _split_classes(labels: np.ndarray, held: list[list[int]], rng: np.random.Generator) -> list[np.ndarray]:
    """Each class's samples shuffled and divided evenly among the clients that hold it."""
    present = set(np.unique(labels).tolist())
    for k, classes in enumerate(held):
        missing = sorted(set(classes) - present)
        if missing:
            raise DataError(f"partition.classes: client {k} names classes {missing} that the dataset "
                            f"does not have (it has {sorted(present)})")
    shards: list[list[np.ndarray]] = [[] for _ in held]
    for c in sorted(present):
        holders = [k for k, classes in enumerate(held) if c in classes]
        if not holders:
            continue
        members = rng.permutation(np.flatnonzero(labels == c))
        for k, part in zip(holders, np.array_split(members, len(holders))):
            shards[k].append(part)
    return [np.sort(np.concatenate(s)) if s else np.empty(0, np.int64) for s in shards]


DRAWS = 100     # dirichlet: draws before a split whose every shard is large enough is given up


def _dirichlet(labels: np.ndarray, k: int, alpha: float, rng: np.random.Generator, min_size: int) -> list[np.ndarray]:
    """Each class split among all clients in Dir(alpha) proportions; the whole split is redrawn while
    a shard holds fewer than ``min_size`` samples (the minimum-size rule of Hsu et al. 2019's and
    FedLab's Dirichlet splits: the proportions of the kept draw are still Dir(alpha) draws)."""
    smallest = 0
    for _ in range(DRAWS):
        shards: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(k, alpha)))[:-1] * len(members)).astype(int)
            for client, part in enumerate(np.split(members, cuts)):
                shards[client].append(part)
        out = [np.sort(np.concatenate(s)) for s in shards]
        smallest = max(smallest, min(len(s) for s in out))
        if smallest >= min_size:
            return out
    short = "an empty shard" if min_size <= 1 else f"fewer than {min_size} samples (at best {smallest})"
    raise DataError(f"partition.alpha = {alpha}: {DRAWS} Dirichlet draws over {k} clients each left a client with "
                    f"{short}; raise partition.alpha, lower "
                    f"partition.clients or partition.min_samples", same_on_all_ranks=True)


def class_lists(cfg: PartitionConfig, num_classes: int, seed: int) -> list[list[int]] | None:
    """The classes each client holds, for the class-based schemes (None for the others)."""
    if cfg.scheme in PRESETS:
        return PRESETS[cfg.scheme]
    if cfg.scheme == "classes":
        return cfg.classes
    if cfg.scheme == "classes_per_client":
        if cfg.classes_per_client > num_classes:
            raise DataError(f"partition.classes_per_client = {cfg.classes_per_client}: the dataset has "
                            f"only {num_classes} classes")
        order = seeds.numpy_rng(seed, "partition", 1).permutation(num_classes)
        n = cfg.classes_per_client
        return [sorted(int(order[(k * n + j) % num_classes]) for j in range(n)) for k in range(cfg.clients)]
    return None


def _cap(held: np.ndarray, shard: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``most`` of a shard's samples, each class keeping its share of the shard to within one
    sample: evenly spaced picks along the shard ordered by class, each class's members shuffled."""
    if len(shard) <= most:
        return shard
    order = rng.permutation(len(shard))
    order = order[np.argsort(held[order], kind="stable")]
    return np.sort(shard[order[(np.arange(most) * len(shard)) // most]])


def assign(labels: np.ndarray, cfg: PartitionConfig, seed: int, num_classes: int | None = None,
           min_size: int = 1) -> list[np.ndarray]:
    """Sorted sample indices of every client's shard; identical on every rank for the same seed.
    ``samples_per_client`` caps a shard (:func:`_cap`); every shard holds at least ``min_size``
    samples (:func:`min_shard`), or a DataError says which does not."""
    labels = np.asarray(labels)
    n, k = len(labels), cfg.clients
    num_classes = num_classes or int(labels.max()) + 1
    if k > n:
        raise DataError(f"partition.clients = {k}: more clients than the {n} samples in the dataset")
    rng = seeds.numpy_rng(seed, "partition")
    held = class_lists(cfg, num_classes, seed)
    if held is not None:
        shards = _split_classes(labels, held, rng)
    elif cfg.scheme == "iid":
        shards = [np.sort(s) for s in np.array_split(rng.permutation(n), k)]
    elif cfg.scheme == "dirichlet":
        shards = _dirichlet(labels, k, cfg.alpha, rng, min_size)
    else:  # disjoint_iid
        per = cfg.samples_per_client or n // k
        if per * k > n:
            raise DataError(f"partition.samples_per_client = {per}: {k} clients x {per} unique samples "
                            f"need {per * k}, the dataset has {n}")
        shards = [np.sort(s) for s in rng.permutation(n)[: per * k].reshape(k, per)]
    if cfg.samples_per_client:          # disjoint_iid's shards already hold exactly that many: left as they are
        shards = [_cap(labels[s], s, cfg.samples_per_client, seeds.numpy_rng(seed, "partition", 2, client))
                  for client, s in enumerate(shards)]
    for client, shard in enumerate(shards):
        if len(shard) < min_size:
            what = "is empty" if len(shard) == 0 else f"holds {len(shard)} samples, fewer than {min_size}"
            raise DataError(f"partition.scheme = {cfg.scheme!r}: client {client}'s shard {what} (one batch, "
                            f"train.batch_size, or partition.min_samples); use fewer clients or another split",
                            same_on_all_ranks=True)
    return shards


def min_shard(cfg: Config) -> int:
    """The fewest samples a client may hold: partition.min_samples, else one batch."""
    return cfg.partition.min_samples or cfg.train.batch_size


def report(labels: np.ndarray, shards: list[np.ndarray], num_classes: int) -> str:
    """A table of per-client class counts with row and column totals."""
    counts = np.stack([np.bincount(labels[s], minlength=num_classes) for s in shards])
    width = max(6, len(str(counts.sum())) + 1)
    head = "client" + "".join(f"{c:>{width}}" for c in range(num_classes)) + f"{'total':>{width + 2}}"
    rows = [head, "-" * len(head)]
    for k, row in enumerate(counts):
        rows.append(f"{k:>6}" + "".join(f"{v:>{width}}" for v in row) + f"{row.sum():>{width + 2}}")
    rows.append("-" * len(head))
    rows.append(f"{'total':>6}" + "".join(f"{v:>{width}}" for v in counts.sum(0)) + f"{counts.sum():>{width + 2}}")
    return "\n".join(rows)


def describe(cfg: Config) -> str:
    """The partition report for a config, as ``python -m ddgan.partition`` prints it."""
    from ddgan.data.datasets import open_source

    source = open_source(cfg.data)
    shards = assign(source.labels, cfg.partition, cfg.train.seed, source.num_classes, min_shard(cfg))
    title = (f"{cfg.data.name}: {len(source.labels)} training samples, {source.num_classes} classes; "
             f"scheme {cfg.partition.scheme}, {cfg.partition.clients} clients, seed {cfg.train.seed}")
    return title + "\n" + report(source.labels, shards, source.num_classes)

