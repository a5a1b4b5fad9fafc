"""Partition properties: disjoint shards, every sample used once, determinism, presets, errors."""
from __future__ import annotations

import numpy as np
import pytest

from ddgan.core.config import load_config
from ddgan.core.errors import DataError
from ddgan.data.partition import PRESETS, assign, describe, report

LABELS = np.repeat(np.arange(10), 100)           # 1,000 samples, 100 per class
np.random.default_rng(0).shuffle(LABELS)


def part(*overrides):
    return load_config(None, list(overrides)).partition


def _disjoint(shards):
    flat = np.concatenate(shards)
    return len(flat) == len(set(flat.tolist()))


@pytest.mark.parametrize("overrides", [
    ("partition.scheme=iid", "partition.clients=3"),
    ("partition.scheme=non_ovl",),
    ("partition.scheme=mod_ovl",),
    ("partition.scheme=classes", "partition.clients=2", "partition.classes=[[0,1,2],[2,3]]"),
    ("partition.scheme=classes_per_client", "partition.clients=4", "partition.classes_per_client=3"),
    ("partition.scheme=dirichlet", "partition.clients=4", "partition.alpha=0.3"),
    ("partition.scheme=disjoint_iid", "partition.clients=4", "partition.samples_per_client=200"),
])
def test_shards_are_disjoint_deterministic_and_seeded(overrides):
    cfg = part(*overrides)
    shards = assign(LABELS, cfg, seed=7)
    assert len(shards) == cfg.clients and _disjoint(shards) and all(len(s) for s in shards)
    again = assign(LABELS, cfg, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(shards, again))
    if cfg.scheme not in ("non_ovl", "mod_ovl", "classes"):   # class splits are fixed; only their order is seeded
        other = assign(LABELS, cfg, seed=8)
        assert not all(np.array_equal(a, b) for a, b in zip(shards, other))


def test_iid_and_class_schemes_use_every_sample_once():
    for cfg in (part("partition.scheme=iid", "partition.clients=3"), part("partition.scheme=non_ovl"),
                part("partition.scheme=mod_ovl"), part("partition.scheme=dirichlet", "partition.clients=3")):
        shards = assign(LABELS, cfg, seed=0)
        assert sorted(np.concatenate(shards).tolist()) == list(range(len(LABELS)))


def test_presets_hold_the_papers_class_sets_and_split_shared_classes():
    non = assign(LABELS, part("partition.scheme=non_ovl"), seed=0)
    for shard, want in zip(non, PRESETS["non_ovl"]):
        assert sorted(set(LABELS[shard].tolist())) == want and len(shard) == 200
    mod = assign(LABELS, part("partition.scheme=mod_ovl"), seed=0)
    assert PRESETS["mod_ovl"] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9], [8, 9, 0, 1]]
    for shard, want in zip(mod, PRESETS["mod_ovl"]):
        assert sorted(set(LABELS[shard].tolist())) == sorted(want)
        # every class is held by two clients, so each gets half of it: 4 classes x 50
        assert np.bincount(LABELS[shard], minlength=10)[want].tolist() == [50] * 4


def test_classes_per_client_and_disjoint_iid_counts():
    shards = assign(LABELS, part("partition.scheme=classes_per_client", "partition.clients=5",
                                 "partition.classes_per_client=2"), seed=3)
    held = [set(LABELS[s].tolist()) for s in shards]
    assert all(len(h) == 2 for h in held) and set().union(*held) == set(range(10))
    shards = assign(LABELS, part("partition.scheme=disjoint_iid", "partition.clients=4",
                                 "partition.samples_per_client=250"), seed=3)
    assert [len(s) for s in shards] == [250] * 4


@pytest.mark.parametrize("overrides", [("partition.scheme=non_ovl",), ("partition.scheme=mod_ovl",),
                                       ("partition.scheme=dirichlet", "partition.clients=4", "partition.alpha=0.3")])
def test_samples_per_client_caps_any_split_keeping_each_class_share(overrides):
    whole = assign(LABELS, part(*overrides), seed=2)
    capped = assign(LABELS, part(*overrides, "partition.samples_per_client=120"), seed=2)
    again = assign(LABELS, part(*overrides, "partition.samples_per_client=120"), seed=2)
    assert _disjoint(capped) and all(np.array_equal(a, b) for a, b in zip(capped, again))
    for full, small in zip(whole, capped):
        assert len(small) == min(120, len(full)) and set(small.tolist()) <= set(full.tolist())
        share = np.bincount(LABELS[full], minlength=10) * len(small) / len(full)
        assert np.abs(np.bincount(LABELS[small], minlength=10) - share).max() < 1 + 1e-9
    if overrides == ("partition.scheme=non_ovl",):
        assert [np.bincount(LABELS[s], minlength=10).max() for s in capped] == [60] * 5
    other = assign(LABELS, part(*overrides, "partition.samples_per_client=120"), seed=3)
    assert not all(np.array_equal(a, b) for a, b in zip(capped, other))


def test_a_cap_below_one_batch_fails_before_training():
    with pytest.raises(DataError, match="client 0's shard holds 40 samples, fewer than 64"):
        assign(LABELS, part("partition.scheme=non_ovl", "partition.samples_per_client=40"), seed=0, min_size=64)


def test_dirichlet_counts_follow_alpha():
    skewed = assign(LABELS, part("partition.scheme=dirichlet", "partition.clients=5", "partition.alpha=0.05"), seed=1)
    even = assign(LABELS, part("partition.scheme=dirichlet", "partition.clients=5", "partition.alpha=1000"), seed=1)
    counts = lambda shards: np.stack([np.bincount(LABELS[s], minlength=10) for s in shards])
    # alpha -> inf: every client gets ~1/5 of every class; alpha -> 0: most of a class sits with one client
    assert np.abs(counts(even) - 20).max() <= 4
    assert (counts(skewed).max(0) >= 80).mean() >= 0.7
    assert counts(skewed).sum() == counts(even).sum() == len(LABELS)


@pytest.mark.parametrize("overrides, message", [
    (("partition.scheme=iid", "partition.clients=1001"), "more clients than the 1000 samples"),
    (("partition.scheme=classes", "partition.clients=2", "partition.classes=[[0],[12]]"), "client 1 names classes [12]"),
    (("partition.scheme=disjoint_iid", "partition.clients=3", "partition.samples_per_client=400"), "need 1200"),
    (("partition.scheme=classes_per_client", "partition.clients=2", "partition.classes_per_client=11"), "only 10 classes"),
    (("partition.scheme=dirichlet", "partition.clients=900", "partition.alpha=0.001"), "empty shard"),
])
def test_impossible_partitions_fail_clearly(overrides, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        assign(LABELS, part(*overrides), seed=0)


def test_class_list_with_an_absent_class_gives_an_empty_shard_error():
    labels = np.repeat([0, 1, 2], 10)
    with pytest.raises(DataError, match=r"names classes \[5\]"):
        assign(labels, part("partition.scheme=classes", "partition.clients=2", "partition.classes=[[0],[5]]"), seed=0)


def test_report_table_counts_and_totals():
    shards = assign(LABELS, part("partition.scheme=non_ovl"), seed=0)
    table = report(LABELS, shards, 10).splitlines()
    assert table[0].split() == ["client", *map(str, range(10)), "total"]
    assert table[2].split() == ["0", "100", "100"] + ["0"] * 8 + ["200"]
    assert table[-1].split() == ["total"] + ["100"] * 10 + ["1000"]
    text = describe(load_config(None, ["partition.scheme=iid", "partition.clients=3"]))
    assert text.startswith("digits: 1437 training samples, 10 classes; scheme iid, 3 clients")


def test_a_dirichlet_split_over_100_clients_keeps_every_shard_at_least_a_batch():
    from ddgan.data.partition import min_shard
    labels = np.random.default_rng(0).integers(0, 10, 60000)          # MNIST's size and classes
    cfg = load_config(None, ["partition.scheme=dirichlet", "partition.clients=100", "partition.alpha=0.5"])
    assert min_shard(cfg) == cfg.train.batch_size == 64
    shards = assign(labels, cfg.partition, seed=0, num_classes=10, min_size=min_shard(cfg))
    assert len(shards) == 100 and min(len(s) for s in shards) >= 64
    assert len(np.unique(np.concatenate(shards))) == sum(len(s) for s in shards) == 60000     # disjoint, complete
    mixes = np.stack([np.bincount(labels[s], minlength=10) / len(s) for s in shards])
    assert mixes.max(1).mean() > 0.25            # still skewed (Dir(0.5)); iid shards of ~600 give about 0.13
    strict = load_config(None, ["partition.scheme=dirichlet", "partition.clients=100", "partition.alpha=0.05",
                                "partition.min_samples=500"])
    with pytest.raises(DataError, match=r"100 Dirichlet draws over 100 clients each left a client with fewer than "
                                        r"500 samples \(at best \d+\); raise partition.alpha"):
        assign(labels, strict.partition, seed=0, num_classes=10, min_size=min_shard(strict))


def test_a_shard_smaller_than_a_batch_is_one_line_naming_the_client():
    labels = np.repeat(np.arange(10), [100, 100, 100, 100, 100, 100, 100, 100, 100, 30])
    cfg = load_config(None, ["partition.scheme=classes", "partition.clients=2", "partition.classes=[[0,1],[9]]"])
    with pytest.raises(DataError) as info:
        assign(labels, cfg.partition, seed=0, num_classes=10, min_size=64)
    assert "client 1's shard holds 30 samples, fewer than 64" in str(info.value) and info.value.same_on_all_ranks
