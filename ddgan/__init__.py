"""ddgan: train one GAN from data that never leaves its owners (F2U/F2A, gossip, baselines)."""

__version__ = "0.1.0"
