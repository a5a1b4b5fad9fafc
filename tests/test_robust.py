"""Dishonest clients: what each attack changes, and the robust exchange's detection and containment."""
from __future__ import annotations

import pytest
import torch

from conftest import spawn, train_in_one_group
from ddgan.core.config import load_config
from ddgan.core.models import ArchSpec, Generator
from ddgan.core.seeds import swap_permutation
from ddgan.forgiver.attacks import Attack
from ddgan.forgiver.robust import Defence, Plan
from ddgan.forgiver.temperature import lambda_grad, robust_lambda_grad
from ddgan.runtime.checkpoint import complete_checkpoints, load_rank_file
from ddgan.runtime.rundir import read_metrics

SMALL = ["model.g_width=16", "model.d_width=16", "model.z_dim=32", "train.batch_size=32", "comm.timeout_s=60"]
THREE = ["partition.clients=3", "partition.scheme=classes", "partition.classes=[[0,1,2],[3,4,5,6],[7,8,9]]"]


def attack(kind: str, start: int = 5) -> Attack:
    return Attack(kind, start, 100.0, "bce", 0)


@pytest.mark.parametrize("kind", ["always_real", "inverted", "noise", "gradient_scale", "gradient_flip"])
def test_each_attack_changes_what_it_should_and_only_from_its_start(kind):
    honest_scores = torch.tensor([-2.0, 0.5, 3.0])
    honest_grad = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    lie = attack(kind)
    assert torch.equal(lie.scores(honest_scores, 4), honest_scores)        # before its start: honest
    assert torch.equal(lie.gradient(honest_grad, 4), honest_grad)
    scores, grad = lie.scores(honest_scores, 5), lie.gradient(honest_grad, 5)
    expected_scores = {"always_real": torch.full((3,), 10.0), "inverted": -honest_scores}.get(kind, honest_scores)
    if kind == "noise":
        assert not torch.equal(scores, honest_scores)
        assert torch.equal(scores, lie.scores(honest_scores, 5))           # seeded by (seed, step)
        assert not torch.equal(scores, lie.scores(honest_scores, 6))
    else:
        assert torch.equal(scores, expected_scores)
    expected_grad = {"always_real": 0 * honest_grad, "noise": 0 * honest_grad, "inverted": -honest_grad,
                     "gradient_scale": 100 * honest_grad, "gradient_flip": -honest_grad}[kind]
    assert torch.equal(grad, expected_grad)


def test_no_attack_configured_means_every_client_is_honest():
    cfg = load_config(None, [])
    assert all(Attack.of(cfg, k) is None for k in range(5))
    liar = load_config(None, ["attack.kind=inverted", "attack.client=2"])
    assert [Attack.of(liar, k) is not None for k in range(5)] == [False, False, True, False, False]


def test_the_gradient_bound_caps_a_scaled_row_and_leaves_honest_ones_alone():
    G = torch.nn.Linear(1, 1)
    defence = Defence(load_config(None, ["defence.clip=5"]), 3, G)
    grads = torch.ones(3, 4, 2, 2)              # every row has norm 2, coefficient 1: steepness 2
    coef = torch.ones(3, 4)
    grads[1] *= 100                            # client 1 scales its gradient
    bounded = defence.bound(grads, coef, [0, 1, 2])
    assert torch.equal(bounded[0], grads[0]) and torch.equal(bounded[2], grads[2])
    assert torch.allclose(bounded[1].flatten(1).norm(dim=1), torch.full((4,), 10.0))   # 5 x median steepness 2


def _canary_round(generated: torch.Tensor, canaries: torch.Tensor):
    """A plan without probes and the K x N scores in item order: generated, then canaries."""
    b, c = generated.shape[1], canaries.shape[1]
    return Plan(torch.arange(b + c), b, c, 0, torch.zeros(0, 1, 2, 2)), torch.cat([generated, canaries], 1)


def test_the_log_line_names_the_check_that_caught_the_client_and_old_checkpoints_resume(capsys):
    defence = Defence(load_config(None, ["defence.warmup=10"]), 4, torch.nn.Linear(1, 1))
    honest = torch.linspace(-0.3, 0.3, 20)
    generated = torch.stack([honest, honest, -honest, honest])            # client 2 reports -score
    canaries = torch.tensor([-3.0, -3.0, 3.0, -3.0])[:, None].expand(4, 4)  # realness 0.05 vs its 0.95
    plan, scores = _canary_round(generated, canaries)
    for step in range(1, 21):
        defence.observe("bce", plan, scores, torch.zeros(4, 24, 1, 2, 2), step)
        defence.name_suspects(step)
    assert defence.named == {2: 20}
    assert "client 2 named" in (err := capsys.readouterr().err) and "realer than its peers did" in err
    before = {k: v for k, v in defence.state_dict().items() if k != "by_check"}     # a checkpoint from before
    resumed = Defence(load_config(None, []), 4, torch.nn.Linear(1, 1))
    resumed.load_state_dict(before)
    assert resumed.named == {2: 20} and torch.equal(resumed.suspicion, defence.suspicion)
    assert all(v.abs().sum() == 0 for v in resumed.by_check.values())


def _swap_round(perm: list[int], liar: int | None, seed: int = 0):
    """Every D's scores of 10 check items before a swap (client k holds D_k) and after it (client
    perm[k] holds D_k, one D step later); the liar reports its D's negated scores."""
    rng = torch.Generator().manual_seed(seed)
    honest = torch.randn(len(perm), 10, generator=rng) * 0.2
    before = honest.clone()
    after = torch.empty_like(honest)
    after[perm] = honest - 0.05 + 0.02 * torch.randn(honest.shape, generator=rng)
    if liar is not None:
        before[liar], after[liar] = -before[liar], -after[liar]
    return before, after


@pytest.mark.parametrize("perm, convicted", [
    ([1, 2, 4, 0, 3], {2}),          # one 5-cycle: the liar's two pairs disagree, its partners' others agree
    ([0, 2, 4, 1, 3], {2}),          # a 4-cycle and a fixed point
    ([1, 2, 0, 4, 3], {2}),          # the liar in a 3-cycle, two honest clients in a 2-cycle
    ([0, 1, 4, 3, 2], set()),        # the liar in a 2-cycle: it and its partner accuse each other
    ([1, 0, 2, 4, 3], set()),        # the liar a fixed point: its D never changed hands
])
def test_the_swap_check_convicts_a_liar_only_where_the_permutation_tells_it_apart(perm, convicted):
    defence = Defence(load_config(None, ["algo.swap_every=10"]), 5, torch.nn.Linear(1, 1))
    for seed in range(5):
        before, after = _swap_round(perm, 2, seed)
        assert set(torch.nonzero(defence._contradicted(before, after, perm)).flatten().tolist()) == convicted
        assert not defence._contradicted(*_swap_round(perm, None, seed), perm).any()      # honest: nobody


def test_the_batch_after_a_swap_repeats_its_checks_and_a_contradicted_client_is_named(capsys):
    G = Generator(ArchSpec(image_size=8, channels=1, width=4, z_dim=4))
    defence = Defence(load_config(None, ["algo.swap_every=10", "defence.warmup=5", "defence.seed=1"]), 5, G)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    batches = {step: defence.compose(x, step) for step in (9, 10, 11, 12)}
    checks = {step: plan.items(batch[None])[0, plan.generated:] for step, (batch, plan) in batches.items()}
    assert torch.equal(checks[10], checks[11])                          # the swap step's checks, again
    assert not torch.equal(checks[9], checks[10]) and not torch.equal(checks[11], checks[12])
    perm = swap_permutation(defence.swap_seed, 10, 5)             # a 3-cycle through client 2
    before, after = _swap_round(perm, 2)
    for step, scores in ((10, before), (11, after)):
        plan = batches[step][1]
        rows = torch.cat([torch.zeros(5, plan.generated), scores], 1)
        defence.observe("bce", plan, rows, torch.zeros(5, *batches[step][0].shape), step)
    defence.name_suspects(20)
    assert defence.named == {2: 20} and defence.suspicion[2] > 0.3 and "the swap check" in capsys.readouterr().err


def test_lambda_under_the_robust_exchange_ignores_a_named_client_and_bounds_the_terms():
    lam = torch.tensor(3.0)
    fake = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    real = torch.tensor([-0.2, -0.3, -0.25, -0.1])
    everyone = torch.ones(4, dtype=torch.bool)
    plain = real.mean() + lambda_grad(lam, "bce", None, fake)
    assert torch.allclose(robust_lambda_grad(lam, "bce", real, fake, everyone, 5.0), plain)     # honest: unchanged
    named = torch.tensor([True, True, False, True])
    lying_fake, lying_real = fake.clone(), real.clone()
    lying_fake[2], lying_real[2] = 10.0, 1e6              # a constant "real" and a huge term
    without = real[named].mean() + lambda_grad(lam, "bce", None, fake[named])
    assert torch.allclose(robust_lambda_grad(lam, "bce", lying_real, lying_fake, named, 5.0), without)
    # not named yet: its term is capped at 5 x the median magnitude (0.2, the lower middle of four)
    pushed = robust_lambda_grad(lam, "bce", lying_real, fake, everyone, 5.0)
    assert torch.allclose(pushed, torch.tensor([-0.2, -0.3, 1.0, -0.1]).mean() + lambda_grad(lam, "bce", None, fake))


def _runs(tmp_path, extra, steps=110):
    base = [*THREE, *SMALL, "algo.name=f2u", "comm.robust=true", f"train.steps={steps}", "run.log_every=10",
            "defence.warmup=40", "defence.seed=3"]
    return [load_config(None, [*base, *e, f"run.dir={tmp_path / name}"]) for name, e in extra.items()]


@pytest.mark.dist
def test_an_always_real_client_is_named_and_silenced_and_an_honest_run_names_nobody(tmp_path):
    cfgs = _runs(tmp_path, {"honest": [], "liar": ["attack.kind=always_real", "attack.client=1", "attack.start=50"]})
    spawn(train_in_one_group, 3, cfgs)
    honest, liar = read_metrics(tmp_path / "honest"), read_metrics(tmp_path / "liar")
    assert all(r["named"] == {} for r in honest)
    assert all(max(r["suspicion"]) < 0.5 for r in honest if r["step"] > 40)
    named = [r for r in liar if r["named"]]
    assert named and set(named[0]["named"]) == {"1"}
    assert 50 < named[0]["named"]["1"] <= 150                   # within 100 steps of the attack's start
    # contained: from the record after the naming on, client 1 has no weight in G's objective
    after = [r for r in liar if r["step"] > named[0]["named"]["1"] + 10]
    assert after and all(r["weight_share"][1] == 0 for r in after)
    # and its D still trains: the liar only lies in what it sends
    assert load_rank_file(complete_checkpoints(tmp_path / "liar")[0], 1)["clients"]["1"]["D"]


@pytest.mark.dist
def test_an_inverted_md_gan_client_is_named_by_the_first_swap_that_can_tell_it_apart(tmp_path):
    """An inverted score is a true function of x (the probes pass it) and weak Ds give the canaries
    nothing to go by; a threshold of 0.99 keeps those checks from naming anyone, so only the swap
    check can. Seed 0 swaps along a 3-cycle at step 60: the liar is named at the look after it."""
    mdgan = ["algo.name=mean", "algo.swap_every=20", "defence.threshold=0.99"]
    cfgs = _runs(tmp_path, {"honest": mdgan, "liar": [*mdgan, "attack.kind=inverted", "attack.client=1",
                                                       "attack.start=50"]}, steps=80)
    spawn(train_in_one_group, 3, cfgs)
    assert all(r["named"] == {} for r in read_metrics(tmp_path / "honest"))
    liar = read_metrics(tmp_path / "liar")
    assert [r["named"] for r in liar if r["step"] in (60, 70)] == [{}, {"1": 70}]


def test_the_sorted_median_is_torchs_median_along_the_first_dimension():
    from ddgan.forgiver.robust import lower_median
    g = torch.Generator().manual_seed(0)
    for rows in (1, 2, 3, 4, 7):
        x = torch.rand(rows, 9, generator=g)
        x[0, 0] = x[-1, 0]                  # ties too
        assert torch.equal(lower_median(x), x.median(0).values)
