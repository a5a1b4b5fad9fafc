"""Data a client owns: datasets by name, non-iid partitions, and a client's private shard with its
resumable sampler. Imports ddgan.core only."""
