"""Secure aggregation: masks that cancel exactly, payloads that look uniform, and F2A from sums
that equals plain feedback F2A within the fixed-point bound."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy.stats import chisquare

from conftest import spawn
from ddgan.core.config import load_config
from ddgan.core.errors import ConfigError
from ddgan.forgiver.secure import SCALE, Masks, decode, encode, pair_keys, public_bytes


def parties(k: int) -> list[Masks]:
    # fixed keys: a statistical test on fresh random keys fails by chance at its own significance level
    privates = [X25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(k)]
    publics = [public_bytes(p) for p in privates]
    return [Masks(me, pair_keys(me, privates[me], publics)) for me in range(k)]


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_masks_cancel_exactly_modulo_2_to_the_64(k):
    masks = parties(k)
    for step, message in ((1, 0), (7, 1), (10 ** 9, 0)):
        total = sum(m.mask(step, message, 1000).numpy().view(np.uint64) for m in masks)
        assert (total == 0).all()
    # masked fixed-point values summed with int64 arithmetic (which wraps) give the exact sum
    values = torch.randn(k, 1000, dtype=torch.float64) * 100
    encoded = [encode(v)[0] for v in values]
    masked = torch.stack([e + m.mask(3, 0, 1000) for e, m in zip(encoded, masks)])
    assert torch.equal(masked.sum(0), torch.stack(encoded).sum(0))
    assert (decode(masked.sum(0), torch.float64) - values.sum(0)).abs().max() <= k * 0.5 / SCALE


def test_streams_differ_by_step_message_and_pair_and_never_repeat():
    masks = parties(3)
    a = masks[0].mask(5, 0, 64)
    assert not torch.equal(a, masks[0].mask(6, 0, 64))
    assert not torch.equal(a, masks[0].mask(5, 1, 64))
    assert torch.equal(a, masks[0].mask(5, 0, 64))          # addressed, not consumed: a resumed step re-derives it
    assert masks[0].keys[1] != masks[0].keys[2] and masks[0].keys[1] == masks[1].keys[0]


def test_what_one_client_sends_looks_uniform_and_its_plain_scores_do_not():
    masks = parties(3)
    rng = torch.Generator().manual_seed(0)
    plain, masked = [], []
    for step in range(1, 201):
        scores = torch.sigmoid(torch.randn(3 * 64, generator=rng, dtype=torch.float64))   # F2A's A, N, Q terms
        enc, _ = encode(scores)
        plain.append(enc.numpy().view(np.uint8))
        masked.append((enc + masks[1].mask(step, 0, enc.numel())).numpy().view(np.uint8))
    for data, uniform in ((masked, True), (plain, False)):
        counts = np.bincount(np.concatenate(data), minlength=256)
        p = chisquare(counts).pvalue
        assert (p > 1e-3) if uniform else (p < 1e-12), p


def test_range_and_non_finite_values_are_flagged_not_wrapped():
    enc, bad = encode(torch.tensor([0.5, 2.0 ** 25, float("nan"), -3.0], dtype=torch.float64))
    assert bad.item() == 2
    assert decode(enc, torch.float64).tolist() == [0.5, 0.0, 0.0, -3.0]


@pytest.mark.parametrize("overrides, message", [
    (["algo.name=f2u"], "f2u is not a sum"),
    (["algo.name=f2a", "algo.lambda_max=20"], "supports the generator-side objective only"),
    (["algo.name=f2a", "algo.lambda_objective=generator"], "needs lambda <= 20"),
    (["algo.name=mean", "partition.clients=1", "partition.scheme=iid"], "at least 2 clients"),
])
def test_secure_mode_refuses_what_it_cannot_compute(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["comm.exchange=secure", *overrides])


DTYPES = ("float64", "float32")


def _compare_worker(rank, world, out):
    """Both exchanges on the same discriminators and batch, in one gloo group, in float64 and float32."""
    import torch.distributed as dist

    from ddgan.core.aggregate import RuleInputs, f2a, mean
    from ddgan.forgiver.exchange import by_feedback
    from ddgan.forgiver.layout import Layout
    from ddgan.forgiver.secure import by_secure
    from ddgan.roles import Client, ClientGroup, build_discriminator
    from ddgan.runtime.comm import Comm

    dist.init_process_group("gloo")
    try:
        comm, layout = Comm(rank, world, 60), Layout(world)
        masks = Masks.agree(comm, layout)
        results = {}
        for dtype_name in DTYPES:
            cfg = load_config(None, [f"partition.clients={world}", "partition.scheme=iid", f"train.dtype={dtype_name}",
                                     "model.d_width=8"])
            dtype = getattr(torch, dtype_name)
            D = build_discriminator(cfg, rank, torch.device("cpu"))
            group = ClientGroup([rank], [Client(None, D, None, "bce", 16)])      # only its D is used
            x = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(1), dtype=dtype) * 2 - 1
            for name, rule in (("f2a", f2a), ("mean", mean)):
                lam = torch.tensor(2.5, dtype=dtype)
                comm.step += 1
                plain = by_feedback(comm, layout, group, x, torch.tensor([0.7], dtype=dtype), rule,
                                    RuleInputs(lam=lam.clone().requires_grad_(name == "f2a")))
                comm.step += 1
                secret = by_secure(comm, layout, group, x, torch.tensor([0.7], dtype=dtype), name,
                                   RuleInputs(lam=lam.clone().requires_grad_(name == "f2a")), masks)
                results[dtype_name, name] = [plain.g_loss, secret.g_loss, plain.grad_x, secret.grad_x,
                                             plain.lam_grad if name == "f2a" else None, secret.lam_grad]
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.parametrize("world", [pytest.param(2, marks=pytest.mark.slow), 3])    # 3 ranks cover 2 (CI time)
def test_secure_f2a_and_mean_equal_plain_feedback_within_the_fixed_point_bound(tmp_path, world):
    """Bound: every sum is off by at most K x 2^-33 (one rounding per client); in float64 that is
    all that separates the two updates, in float32 its own rounding (~1e-7 relative) dominates."""
    spawn(_compare_worker, world, world, tmp_path / "out.pt")
    results = torch.load(tmp_path / "out.pt")
    assert sorted(results) == sorted((dtype, name) for dtype in DTYPES for name in ("f2a", "mean"))
    for (dtype, name), (g_plain, g_secret, grad_plain, grad_secret, lam_plain, lam_secret) in results.items():
        bound = world * 0.5 / SCALE if dtype == "float64" else 1e-5 * grad_plain.abs().max().item()
        assert grad_plain.abs().max() > 1e-4, (dtype, name)        # there is something to compare
        assert (grad_secret - grad_plain).abs().max().item() <= bound + world * 0.5 / SCALE, (dtype, name)
        assert g_secret.item() == pytest.approx(g_plain.item(), rel=1e-6 if dtype == "float32" else 1e-9)
        if lam_plain is not None:
            # d D_agg / d lambda = Q/A - D_agg^2 cancels where the clients agree: an absolute bound of
            # a few K x 2^-33 / A (A ~ 1/2 here), not a relative one
            tolerance = dict(rel=1e-4) if dtype == "float32" else dict(abs=1e-8)
            assert lam_secret.item() == pytest.approx(lam_plain.item(), **tolerance)
