"""A client's private shard on its device, and a resumable, seeded batch sampler over it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ddgan.core import seeds
from ddgan.core.transfer import upload
from ddgan.data.datasets import Source, load_images, open_source
from ddgan.data.partition import assign, min_shard

if TYPE_CHECKING:
    from ddgan.core.config import Config


class Shard:
    """Batches drawn without replacement, epoch by epoch, in an order fixed by (seed, client, epoch),
    drawn on the CPU and kept on the shard's device (one upload per epoch, none per batch).

    The only state is how many samples were consumed, so a checkpoint records one integer and a
    resumed run draws exactly the batches the uninterrupted one would have.
    """

    def __init__(self, images: Tensor, labels: np.ndarray, seed: int, client: int):
        self.images, self.labels = images, labels
        self.seed, self.client = seed, client
        self.consumed = 0
        self._epoch, self._order = -1, None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def epoch(self) -> int:
        """1-based epoch of the next sample (the gossip loss threshold decays with it)."""
        return self.consumed // len(self) + 1

    def _order_of(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            rng = seeds.torch_generator(self.seed, "data", self.client, epoch)
            self._epoch, self._order = epoch, upload(torch.randperm(len(self), generator=rng), self.images.device)
        return self._order

    def next(self, n: int) -> Tensor:
        picks = []
        while n > 0:
            epoch, pos = divmod(self.consumed, len(self))
            take = min(n, len(self) - pos)
            picks.append(self._order_of(epoch)[pos:pos + take])
            self.consumed += take
            n -= take
        return self.images[picks[0] if len(picks) == 1 else torch.cat(picks)]

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])


def client_shards(cfg: Config, source: Source | None = None) -> tuple[Source, list[np.ndarray]]:
    """The dataset and every client's sample indices (the same on every rank)."""
    source = source or open_source(cfg.data)
    return source, assign(source.labels, cfg.partition, cfg.train.seed, source.num_classes, min_shard(cfg))


def load_shard(cfg: Config, client: int, device: torch.device, dtype: torch.dtype,
               source: Source | None = None, shards: list[np.ndarray] | None = None) -> Shard:
    """Client ``client``'s shard, with only its own samples' pixels loaded; ``source`` and
    ``shards`` as :func:`client_shards` returned them, where the caller has them already."""
    if source is None or shards is None:
        source, shards = client_shards(cfg, source)
    idx = shards[client]
    images = load_images(source, idx, cfg.data).to(device=device, dtype=dtype)
    return Shard(images, source.labels[idx], cfg.train.seed, client)
