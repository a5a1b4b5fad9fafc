"""The generator rules as pure functions on hand-built scores (Prepare / Execute / Assert)."""
from __future__ import annotations

import math

import pytest
import torch

from ddgan.core.aggregate import (
    RuleInputs,
    balanced_assignment,
    f2a,
    f2a_discriminator_loss,
    f2u,
    f2u_balanced,
    fake_weights,
    gman,
    mean,
)
from ddgan.core.losses import d_loss, g_loss, mixture_loss
from ddgan.forgiver.temperature import lambda_grad


def test_f2u_fools_the_most_forgiving_discriminator_per_sample():
    out = torch.tensor([[2.0, -1.0, 0.0], [1.0, 3.0, -2.0]], requires_grad=True)   # K=2, B=3
    loss, weights = f2u(out, RuleInputs(loss="bce"))
    # forgivers: client 0 (2.0), client 1 (3.0), client 0 (0.0)
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-3.0)) + math.log1p(math.exp(0.0))) / 3
    assert loss.item() == pytest.approx(expected)
    assert weights.tolist() == [[1, 0, 1], [0, 1, 0]]
    (grad,) = torch.autograd.grad(loss, out)
    assert grad[1, 0] == 0 and grad[0, 1] == 0 and grad[1, 2] == 0      # only forgivers are told anything
    assert grad[0, 0] < 0 and grad[1, 1] < 0


def test_f2a_tends_to_the_max_for_large_lambda_and_to_the_mean_for_small():
    out = torch.tensor([[2.0, -1.0], [-3.0, 0.5], [0.0, 1.0]])
    r = torch.sigmoid(out)
    big, _ = f2a(out, RuleInputs(loss="bce", lam=torch.tensor(1e4)))
    assert big.item() == pytest.approx(-torch.log(r.max(0).values).mean().item(), rel=1e-5)
    small, w = f2a(out, RuleInputs(loss="bce", lam=torch.tensor(0.0)))
    assert small.item() == pytest.approx(-torch.log(r.mean(0)).mean().item(), rel=1e-6)
    assert torch.allclose(w, torch.full_like(w, 1 / 3))
    ls_big, _ = f2a(out, RuleInputs(loss="ls", lam=torch.tensor(1e4)))
    assert ls_big.item() == pytest.approx((0.5 * (out.max(0).values - 1) ** 2).mean().item(), rel=1e-5)


def test_f2a_gradients_include_the_weights_and_lambda_follows_the_variance():
    out = torch.tensor([[0.3, -1.2, 2.0], [1.5, 0.2, -0.4]], dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    loss, _ = f2a(out, RuleInputs(loss="bce", lam=lam))
    g_out, g_lam = torch.autograd.grad(loss, (out, lam))
    # by hand: D_agg_i = sum_k w_ki r_ki with w = softmax(lam r); dD_agg/dlam = Var_w(r); loss = -mean log D_agg
    r = torch.sigmoid(out.detach())
    w = torch.softmax(lam.detach() * r, 0)
    agg = (w * r).sum(0)
    var = (w * r * r).sum(0) - agg ** 2
    assert g_lam.item() == pytest.approx((-(var / agg)).mean().item(), rel=1e-10)
    assert g_lam.item() < 0                     # descending the G loss raises lambda
    # d D_agg / d r_k = w_k (1 + lam (r_k - D_agg)); chain through sigmoid
    d_agg_d_out = w * (1 + lam.detach() * (r - agg)) * r * (1 - r)
    assert torch.allclose(g_out, -(d_agg_d_out / agg) / 3, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda o, l: f2a(o, RuleInputs(loss="bce", lam=l))[0], (out, lam))
    assert torch.autograd.gradcheck(lambda o, l: f2a(o, RuleInputs(loss="ls", lam=l))[0], (out, lam))


def test_mean_averages_losses_not_scores():
    out = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    loss, w = mean(out, RuleInputs(loss="bce"))
    assert loss.item() == pytest.approx(g_loss("bce", out).mean().item())
    f2a_zero, _ = f2a(out, RuleInputs(loss="bce", lam=torch.tensor(0.0)))
    assert f2a_zero.item() == pytest.approx(-math.log(0.5))        # average score is 0.5 for both samples
    assert loss.item() > f2a_zero.item() + 1.0                       # mean of losses is much larger here
    assert torch.allclose(w, torch.full_like(w, 0.5))


def test_gman_weights_harsh_discriminators_and_regulates_lambda():
    out = torch.tensor([[3.0, 3.0], [-3.0, -3.0]])
    lam = torch.tensor(1.0, requires_grad=True)
    loss, w = gman(out, RuleInputs(loss="bce", lam=lam, gman_penalty=0.001))
    v = g_loss("bce", out).mean(1)
    soft = torch.softmax(v, 0)
    assert loss.item() == pytest.approx(((soft * v).sum() - 0.001).item(), rel=1e-6)
    assert w[1, 0] > w[0, 0]                                       # the harsh client counts more
    (g_lam,) = torch.autograd.grad(loss, lam)
    var = (soft * v * v).sum() - (soft * v).sum() ** 2
    assert g_lam.item() == pytest.approx((var - 0.001).item(), rel=1e-5)   # G lowers lambda unless clients agree
    _, w0 = gman(out, RuleInputs(loss="bce", lam=torch.tensor(0.0)))
    assert torch.allclose(w0, torch.full_like(w0, 0.5))


def test_balanced_assignment_spreads_samples_across_clients():
    # client 0 forgives every sample most; plain F2U would send all 4 samples to it
    scores = torch.tensor([[0.9, 0.8, 0.95, 0.7], [0.6, 0.1, 0.5, 0.65]])
    assert f2u(scores, RuleInputs(loss="ls"))[1][0].sum() == 4
    target = balanced_assignment(scores, torch.tensor([0.5, 0.5]), tau=10.0, iters=50)
    assert torch.bincount(target, minlength=2).tolist() == [2, 2]
    # the two samples client 1 forgives relatively most (0 and 3) are the ones it gets
    assert target.tolist() == [1, 0, 0, 1]
    uneven = balanced_assignment(scores, torch.tensor([0.75, 0.25]), tau=10.0, iters=50)
    assert torch.bincount(uneven, minlength=2).tolist() == [3, 1]


def test_f2u_balanced_sends_each_sample_to_its_assigned_client():
    out = torch.tensor([[3.0, 2.0, 4.0, 1.0], [0.5, -2.0, 0.2, 0.9]], requires_grad=True)
    loss, weights = f2u_balanced(out, RuleInputs(loss="bce", tau=10.0, sinkhorn_iters=50))
    assert weights.sum(0).tolist() == [1, 1, 1, 1] and weights.sum(1).tolist() == [2, 2]
    chosen = (out * weights).sum(0)
    assert loss.item() == pytest.approx(g_loss("bce", chosen).mean().item())


def test_losses_by_hand():
    real, fake = torch.tensor([0.0]), torch.tensor([0.0])
    assert d_loss("bce", real, fake).item() == pytest.approx(2 * math.log(2))
    assert d_loss("ls", torch.tensor([1.0]), torch.tensor([0.0])).item() == 0.0
    assert g_loss("ls", torch.tensor([0.0])).item() == 0.5
    w = torch.tensor([[0.25], [0.75]])
    out = torch.tensor([[0.0], [2.0]])
    agg = 0.25 * 0.5 + 0.75 * torch.sigmoid(torch.tensor(2.0))
    assert mixture_loss("bce", out, w).item() == pytest.approx(-math.log(agg.item()), rel=1e-6)
    # a batch every discriminator rejects still has a finite loss and gradient
    hard = torch.full((3, 2), -200.0, requires_grad=True)
    value = mixture_loss("bce", hard, torch.full((3, 2), 1 / 3)).sum()
    (g,) = torch.autograd.grad(value, hard)
    assert torch.isfinite(value) and torch.isfinite(g).all() and (g < 0).all()


def test_fake_weights_weigh_each_clients_fake_term_by_its_share_against_its_target():
    # Prepare: two clients with equal target shares, three samples; F2U gives client 0 every sample
    out = torch.tensor([[2.0, 1.0, 3.0], [0.0, -1.0, 0.5]])
    equal = torch.full((2,), 0.5)
    # Execute
    soft = fake_weights(f2a(out, RuleInputs(lam=torch.tensor(1.0)))[1], equal)
    hard = fake_weights(f2u(out, RuleInputs())[1], equal)
    uniform = fake_weights(mean(out, RuleInputs())[1], equal)
    # Assert: a client's fake term weighs its share over its target (above 1: it takes more than its
    # share, and learns harder from it); the mean rule's is the plain mean
    assert torch.allclose(soft.sum(1), f2a(out, RuleInputs(lam=torch.tensor(1.0)))[1].mean(1) / 0.5)
    assert soft.sum(1)[0] > 1 > soft.sum(1)[1]
    assert torch.equal(hard, torch.tensor([[2 / 3] * 3, [0.0] * 3]))
    assert torch.allclose(uniform, torch.full((2, 3), 1 / 3))
    assert torch.allclose(fake_weights(mean(out, RuleInputs())[1], torch.tensor([0.25, 0.75])).sum(1),
                          torch.tensor([2.0, 2 / 3]))        # 1/K of the batch against shares by shard size
    fake = torch.tensor([0.3, -2.0, 1.0])
    assert d_loss("bce", fake, fake, fake_weight=uniform[0]).item() == pytest.approx(d_loss("bce", fake, fake).item())
    assert d_loss("ls", fake, fake, fake_weight=uniform[0]).item() == pytest.approx(d_loss("ls", fake, fake).item())
    one = torch.tensor([0.0, 1.0, 0.0])    # the fake term is then the one sample's loss
    assert d_loss("ls", fake[:1], fake, fake_weight=one).item() == pytest.approx(
        0.5 * (fake[0] - 1) ** 2 + 0.5 * fake[1] ** 2)


def test_f2a_as_a_discriminator_and_the_gradient_its_lambda_follows():
    real_out = torch.tensor([[2.0, -1.0, 0.5], [-0.5, 1.5, 0.0]], dtype=torch.float64)   # K=2 Ds on a real batch
    fake_out = torch.tensor([[1.0, -2.0], [-1.0, 0.3]], dtype=torch.float64)              # K=2 Ds on G's batch
    # lambda = 0: D_agg is the plain mean of the realness scores
    r = torch.sigmoid(real_out)
    zero = torch.tensor(0.0, dtype=torch.float64)
    assert f2a_discriminator_loss(real_out, zero, "bce", real=True).item() == pytest.approx(
        -torch.log(r.mean(0)).mean().item())
    assert f2a_discriminator_loss(fake_out, zero, "bce", real=False).item() == pytest.approx(
        -torch.log(1 - torch.sigmoid(fake_out).mean(0)).mean().item())
    # by hand: dD_agg/dlam = Var_w(r); the real term -log D_agg falls and the fake term -log(1 - D_agg)
    # rises as lambda grows
    lam = torch.tensor(1.3, dtype=torch.float64)

    def parts(out):
        p = torch.sigmoid(out)
        w = torch.softmax(lam * p, 0)
        agg = (w * p).sum(0)
        return agg, (w * p * p).sum(0) - agg ** 2

    agg_r, var_r = parts(real_out)
    agg_f, var_f = parts(fake_out)
    expected = (-var_r / agg_r).mean() + (var_f / (1 - agg_f)).mean()
    assert lambda_grad(lam, "bce", real_out, fake_out).item() == pytest.approx(expected.item(), rel=1e-10)
    assert lambda_grad(lam, "bce", real_out, None).item() < 0 < lambda_grad(lam, "bce", None, fake_out).item()
    # least squares: D_agg regresses real to 1 and fake to 0
    ls = f2a_discriminator_loss(fake_out, lam, "ls", real=False)
    w = torch.softmax(lam * fake_out, 0)
    assert ls.item() == pytest.approx((0.5 * (w * fake_out).sum(0) ** 2).mean().item())
