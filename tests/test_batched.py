"""Stacked discriminators equal K separate modules and optimisers (``Client.d_step``), to float64 tolerance."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ddgan.core.batched import (
    StackedDiscriminators,
    can_batch,
    power_iteration,
    spectral_weight,
)
from ddgan.core.models import ArchSpec, Discriminator, frozen_forward, init_weights
from ddgan.core.seeds import torch_generator
from ddgan.data.shard import Shard
from ddgan.roles import Client
from ddgan.runtime.checkpoint import flat_state

K, B = 3, 8
CONVS = ("blocks.0.0", "blocks.1.0", "head")        # a 16-pixel D: two stride-2 layers and the head
SN = "parametrizations.weight"


def discriminators(d_norm: str, dtype=torch.float64, width: int = 8, seed: int = 0) -> list[Discriminator]:
    spec = ArchSpec(16, 3, width, 16, d_norm)
    return [init_weights(Discriminator(spec), torch_generator(seed, "init", 1, k)).to(dtype) for k in range(K)]


def optimizer(D: Discriminator, kind: str) -> torch.optim.Optimizer:
    # as ddgan.roles.make_optimizer builds them, with rates that move the weights visibly in a few steps
    if kind == "sgd":
        return torch.optim.SGD(D.parameters(), lr=0.05)
    return torch.optim.Adam(D.parameters(), lr=1e-2, betas=(0.5, 0.999))


def shard(k: int, dtype) -> Shard:
    images = torch.randn(20, 3, 16, 16, generator=torch_generator(1, "data", k)).tanh().to(dtype)
    return Shard(images, np.zeros(20, dtype=np.int64), seed=0, client=k)


def fake(step: int, dtype) -> torch.Tensor:
    return torch.randn(B, 3, 16, 16, generator=torch_generator(2, "noise", step)).tanh().to(dtype)


def targets(step: int, dtype) -> torch.Tensor:
    """Noisy real labels, one row per client."""
    return 0.8 + 0.2 * torch.rand(K, B, generator=torch_generator(3, "labels", step)).to(dtype)


class Twin:
    """The same K clients twice: real ``Client`` objects stepping alone, and a stacked set."""

    def __init__(self, d_norm: str, opt: str, loss: str, grouped: bool = False, dtype=torch.float64):
        self.loss, self.dtype, self.steps = loss, dtype, 0
        self.clients = [Client(shard(k, dtype), D, optimizer(D, opt), loss, B)
                        for k, D in enumerate(discriminators(d_norm, dtype))]
        self.shards = [shard(k, dtype) for k in range(K)]
        self.Ds = discriminators(d_norm, dtype)
        self.opts = [optimizer(D, opt) for D in self.Ds]
        self.stacked = StackedDiscriminators(self.Ds, self.opts, grouped=grouped)

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            f, t = fake(self.steps, self.dtype), targets(self.steps, self.dtype)
            alone = torch.stack([c.d_step(f, real_target=t[k]) for k, c in enumerate(self.clients)])
            reals = torch.stack([s.next(B) for s in self.shards])
            together = self.stacked.d_step(reals, f, self.loss, real_target=t)
            assert_close(together, alone, 1e-10)
            self.steps += 1

    def assert_same(self, tol: float = 1e-10) -> None:
        for k, c in enumerate(self.clients):
            assert_states(self.Ds[k].state_dict(), c.D.state_dict(), tol)
            assert_states(self.stacked.opts[k].state_dict(), c.opt.state_dict(), tol)


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def assert_states(a: dict, b: dict, tol: float) -> None:
    fa, fb = flat_state(a), flat_state(b)
    assert fa.keys() == fb.keys()
    for key, value in fa.items():
        if isinstance(value, torch.Tensor):
            assert_close(value, fb[key], tol)
        else:
            assert value == fb[key], key


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_power_iteration_and_spectral_forward_equal_torchs_parametrization(dtype, tol):
    Ds, twins = discriminators("spectral", dtype), discriminators("spectral", dtype)
    stacked = StackedDiscriminators(twins, [optimizer(D, "sgd") for D in twins])
    before = {name: t.clone() for name, t in stacked.stacked.items()}
    x = fake(0, dtype)
    # a training-mode forward: one power iteration per layer, stored in the modules' _u, _v
    assert_close(stacked.scores(x), torch.stack([D(x) for D in Ds]), tol)
    for p in CONVS:
        mods = [D.get_submodule(p) for D in Ds]
        W, u0, v0 = (before[f"{p}.{SN}.{name}"] for name in ("original", "0._u", "0._v"))
        sn = mods[0].parametrizations.weight[0]
        u, v = power_iteration(W, u0, v0, sn.eps, 1)
        assert_close(u, torch.stack([m.parametrizations.weight[0]._u for m in mods]), tol)
        assert_close(v, torch.stack([m.parametrizations.weight[0]._v for m in mods]), tol)
        # the next access of the weight in training mode: another iteration, then W / sigma
        weight = torch.stack([m.weight for m in mods])
        u2, v2 = power_iteration(W, u0, v0, sn.eps, 2)
        assert_close(spectral_weight(W, u2, v2), weight, tol)
        assert_close(u2, torch.stack([m.parametrizations.weight[0]._u for m in mods]), tol)
        assert torch.equal(u0, before[f"{p}.{SN}.0._u"]) and torch.equal(v0, before[f"{p}.{SN}.0._v"])
    for name, t in stacked.stacked.items():             # scores moved no buffer of the stacked set
        assert torch.equal(t, before[name]), name


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("d_norm, opt, loss", [("spectral", "adam", "bce"), ("spectral", "sgd", "ls"),
                                              ("layer", "adam", "ls"), ("layer", "sgd", "bce"),
                                              ("none", "adam", "bce"), ("none", "sgd", "ls")])
def test_d_steps_equal_separate_client_updates(d_norm, opt, loss, grouped):
    twin = Twin(d_norm, opt, loss, grouped)
    twin.step(3)
    twin.assert_same()
    moved = sum(float((D.head.bias - c.D.head.bias).detach().abs().max()) for D, c in
                zip(discriminators(d_norm), twin.clients))
    assert moved > 1e-4                                  # the steps did change the weights


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("d_norm", ["spectral", "layer"])
def test_scores_equal_frozen_forward_in_both_modes_and_move_no_buffer(d_norm, grouped):
    twin = Twin(d_norm, "adam", "bce", grouped)
    twin.step()
    weights = torch.randn(K, B, generator=torch_generator(4, "noise"), dtype=torch.float64)
    for train in (True, False):
        for D, c in zip(twin.Ds, twin.clients):
            D.train(train), c.D.train(train)
        before = {name: t.clone() for name, t in twin.stacked.stacked.items()}
        x, x_ref = (fake(9, torch.float64).requires_grad_() for _ in range(2))
        out = twin.stacked.scores(x)
        ref = torch.stack([frozen_forward(c.D, x_ref) for c in twin.clients])
        assert_close(out, ref, 1e-10)
        (weights * out).sum().backward()
        (weights * ref).sum().backward()
        assert_close(x.grad, x_ref.grad, 1e-10)
        for name, t in twin.stacked.stacked.items():
            assert torch.equal(t, before[name]), name
    twin.step()                      # in eval mode: no power iteration, as torch's parametrization
    twin.assert_same()


@pytest.mark.parametrize("grouped", [False, True])
def test_state_dicts_resume_and_swap_through_the_per_client_objects(grouped):
    twin = Twin("spectral", "adam", "bce", grouped)
    twin.step(2)
    twin.assert_same()
    # resume: fresh, differently initialised modules and optimisers load the separate run's states
    saved = [copy.deepcopy({"D": c.D.state_dict(), "opt": c.opt.state_dict()}) for c in twin.clients]
    twin.Ds = discriminators("spectral", seed=1)
    twin.opts = [optimizer(D, "adam") for D in twin.Ds]
    twin.stacked = StackedDiscriminators(twin.Ds, twin.opts, grouped=grouped)
    for k, state in enumerate(saved):
        twin.Ds[k].load_state_dict(state["D"])
        twin.stacked.opts[k].load_state_dict(state["opt"])
    twin.assert_same(0.0)
    twin.step(2)
    twin.assert_same()
    # MD-GAN's swap: clients 0 and 1 exchange D and optimiser state (copies: a state_dict aliases)
    for Ds, opts in ((twin.Ds, twin.opts), ([c.D for c in twin.clients], [c.opt for c in twin.clients])):
        states = [copy.deepcopy((Ds[k].state_dict(), opts[k].state_dict())) for k in (1, 0)]
        for k, (d_state, opt_state) in enumerate(states):
            Ds[k].load_state_dict(d_state)
            opts[k].load_state_dict(opt_state)
    twin.step(2)
    twin.assert_same()


def test_can_batch_only_same_shape_dtype_and_batch_free_norms():
    assert can_batch(discriminators("spectral")) and can_batch(discriminators("layer"))
    assert not can_batch(discriminators("batch"))
    assert not can_batch(discriminators("none")[:2] + discriminators("none", width=16)[:1])
    assert not can_batch(discriminators("none")[:2] + discriminators("none", torch.float32)[:1])
    Ds = discriminators("none")
    assert not can_batch([Ds[0], Ds[0]]) and not can_batch([])
    with pytest.raises(ValueError):
        StackedDiscriminators(discriminators("batch"), [optimizer(D, "sgd") for D in discriminators("batch")])
    with pytest.raises(ValueError):
        StackedDiscriminators(Ds, [optimizer(D, "sgd") for D in reversed(Ds)])


def test_a_module_moved_off_the_stack_is_caught_and_restacked():
    twin = Twin("spectral", "sgd", "ls")
    for D in twin.Ds:
        D.float()                                        # new storage for every tensor
    reals = torch.stack([s.next(B) for s in twin.shards]).float()
    with pytest.raises(RuntimeError, match="restack"):
        twin.stacked.d_step(reals, fake(0, torch.float32), "ls")
    twin.stacked.restack()
    twin.stacked.d_step(reals, fake(0, torch.float32), "ls")
    for k, D in enumerate(twin.Ds):
        for name, t in D.state_dict().items():
            assert t.dtype == torch.float32 and torch.equal(t, twin.stacked.stacked[name][k]), name


def test_a_step_between_scores_and_their_backward_is_flagged_as_with_the_modules():
    twin = Twin("none", "sgd", "ls")
    x = fake(0, torch.float64).requires_grad_()
    out = twin.stacked.scores(x)
    twin.stacked.d_step(torch.stack([s.next(B) for s in twin.shards]), fake(1, torch.float64), "ls")
    with pytest.raises(RuntimeError, match="inplace"):
        out.sum().backward()
