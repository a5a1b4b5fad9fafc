"""The forgiver-first trainer's name for :mod:`ddgan.core.layout`, where the layout moved so that the
per-node trainers (gossip, fedavg) can host their nodes the same way without importing this package."""
from ddgan.core.layout import GENERATOR_RANK, GENERATOR_RANKS, Layout, fit, world_size  # noqa: F401
