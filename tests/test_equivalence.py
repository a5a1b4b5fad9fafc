"""The distributed generator update equals the single-process reference (float64, 2 and 3 ranks)."""
from __future__ import annotations

import pytest
import torch

from conftest import saved_client, spawn, train_in_one_group
from ddgan.core.config import load_config
from ddgan.forgiver.simulate import Simulation
from ddgan.runtime.checkpoint import complete_checkpoints, load_rank_file

STEPS = 3


def small_config(run_dir, world: int, algo: str, exchange: str, extra: tuple[str, ...] = ()):
    classes = {2: "[[0,1,2,3,4],[5,6,7,8,9]]", 3: "[[0,1,2,3],[3,4,5,6],[6,7,8,9,0]]"}[world]
    return load_config(None, [
        f"partition.clients={world}", "partition.scheme=classes", f"partition.classes={classes}",
        f"algo.name={algo}", f"comm.exchange={exchange}", "train.dtype=float64", f"train.steps={STEPS}",
        "train.batch_size=16", "model.g_width=8", "model.d_width=8", "model.z_dim=16", "algo.lambda_lr=0.1",
        f"run.dir={run_dir}", "run.log_every=1", "comm.timeout_s=60", *extra])


def _reference(cfg) -> Simulation:
    """The one-process reference of ``cfg``, STEPS steps on."""
    sim = Simulation(cfg)
    for _ in range(STEPS):
        sim.step()
    return sim


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _assert_same_models(where, sim: Simulation, label) -> None:
    gen_state = load_rank_file(where, 0)["generator"]
    for name, ref in sim.generator.G.state_dict().items():
        assert _rel(gen_state["G"][name], ref) < 1e-5, (label, name)
    for name, ref in sim.generator.ema.state_dict().items():
        assert _rel(gen_state["G_ema"][name], ref) < 1e-5, (label, "G_ema", name)
    assert _rel(gen_state["lam"], sim.generator.lam.detach()) < 1e-5, label
    for k, c in enumerate(sim.clients):
        d_state = saved_client(where, k)["D"]
        for name, ref in c.D.state_dict().items():
            assert _rel(d_state[name], ref) < 1e-5, (label, k, name)


CASES = [(algo, ()) for algo in ("f2u", "f2u_balanced", "f2a", "mean", "gman")] + [
    ("mean", ("algo.swap_every=1",)), ("f2a", ("algo.lambda_objective=generator",)),
    ("f2a", ("model.d_norm=batch",)), ("f2u", ("model.d_norm=layer",)), ("f2a", ("algo.lambda_refresh=2",)),
    ("f2a", ("algo.fake_weights=rule",)), ("f2u", ("algo.fake_weights=rule",))]


def test_rule_weighted_fake_terms_change_the_discriminators_except_under_the_mean_rule(tmp_path):
    """algo.fake_weights=rule is no no-op in the reference the distributed runs are held to: F2A's
    discriminators move elsewhere than under uniform weights; the mean rule's weights are uniform."""
    def discriminators(algo: str, weights: str) -> list[dict[str, torch.Tensor]]:
        sim = _reference(small_config(tmp_path / "ref", 3, algo, "feedback", (f"algo.fake_weights={weights}",)))
        return [c.D.state_dict() for c in sim.clients]

    for algo, apart in (("f2a", True), ("mean", False)):
        rule, uniform = discriminators(algo, "rule"), discriminators(algo, "uniform")
        gap = max(_rel(r[name], u[name]) for r, u in zip(rule, uniform) for name in u if u[name].is_floating_point())
        assert gap > 1e-3 if apart else gap < 1e-12, (algo, gap)


@pytest.mark.dist
@pytest.mark.parametrize("world", [pytest.param(2, marks=pytest.mark.slow), 3])    # 3 ranks cover 2 (CI time)
def test_distributed_update_equals_reference(tmp_path, world):
    """feedback and params exchange, for every rule (and MD-GAN's swap), equal the one-process reference."""
    runs = []
    for algo, extra in CASES:
        sim = Simulation(small_config(tmp_path / "ref", world, algo, "feedback", extra))
        g0 = {k: v.clone() for k, v in sim.generator.G.state_dict().items()}
        for _ in range(STEPS):
            sim.step()
        moved = max(_rel(sim.generator.G.state_dict()[k], g0[k]) for k in g0 if g0[k].is_floating_point())
        assert moved > 1e-4, "the reference generator did not move; the comparison would prove nothing"
        for exchange in ("feedback", "params"):
            cfg = small_config(tmp_path / f"{algo}-{'-'.join(extra)}-{exchange}", world, algo, exchange, extra)
            runs.append((cfg, sim, f"{algo} {extra} {exchange}"))
    spawn(train_in_one_group, world, [cfg for cfg, _, _ in runs])
    for cfg, sim, label in runs:
        _assert_same_models(complete_checkpoints(cfg.run.dir)[0], sim, label)


@pytest.mark.dist
def test_dedicated_generator_rank_and_pipeline_equal_their_references(tmp_path):
    """2 clients on ranks 1-2 and G alone on rank 0 give the shared layout's update (its reference),
    for every rule and both exchange modes; the pipelined step equals the pipelined reference."""
    runs = []
    cases = [(algo, exchange, False) for algo in ("f2u", "f2u_balanced", "f2a", "mean", "gman")
             for exchange in ("feedback", "params")]
    cases += [(algo, exchange, True) for algo in ("f2u", "f2a") for exchange in ("feedback", "params")]
    for algo, exchange, pipeline in cases:
        extra = ("train.generator_rank=dedicated", f"train.pipeline={str(pipeline).lower()}")
        sim = _reference(small_config(tmp_path / "ref", 2, algo, exchange, extra))
        cfg = small_config(tmp_path / f"{algo}-{exchange}-{pipeline}", 2, algo, exchange, extra)
        runs.append((cfg, sim, f"{algo} {exchange} pipeline={pipeline}"))
    spawn(train_in_one_group, 3, [cfg for cfg, _, _ in runs])
    for cfg, sim, label in runs:
        _assert_same_models(complete_checkpoints(cfg.run.dir)[0], sim, label)
    # the pipeline really is one step stale: its generator differs from the synchronous one
    sync = _reference(small_config(tmp_path / "ref", 2, "f2u", "feedback", ("train.generator_rank=dedicated",)))
    piped = load_rank_file(complete_checkpoints(tmp_path / "f2u-feedback-True")[0], 0)["generator"]["G"]
    assert max(_rel(piped[k], v) for k, v in sync.generator.G.state_dict().items() if v.is_floating_point()) > 1e-3


@pytest.mark.dist
def test_robust_exchange_with_honest_clients_equals_the_reference(tmp_path):
    """With nothing hidden in the batch, the robust exchange (gather, scatter, gather, bounded
    gradients, F2A's lambda from separate bounded terms) gives the plain feedback update to 1e-5:
    honest gradients are never cut; also with G on a rank of its own."""
    runs = []
    for algo in ("f2u", "f2u_balanced", "f2a", "mean", "gman"):
        sim = _reference(small_config(tmp_path / "ref", 3, algo, "feedback"))
        cfg = small_config(tmp_path / f"robust-{algo}", 3, algo, "feedback",
                           ("comm.robust=true", "defence.canaries=0", "defence.probes=0"))
        runs.append((cfg, sim, f"{algo} robust", 0))
    for algo in ("f2u", "f2a"):         # 2 clients on ranks 1-2, G alone on rank 0
        dedicated = ("train.generator_rank=dedicated",)
        sim = _reference(small_config(tmp_path / "ref", 2, algo, "feedback", dedicated))
        cfg = small_config(tmp_path / f"robust-dedicated-{algo}", 2, algo, "feedback",
                           (*dedicated, "comm.robust=true", "defence.canaries=0", "defence.probes=0"))
        runs.append((cfg, sim, f"{algo} robust dedicated", 1))
    spawn(train_in_one_group, 3, [cfg for cfg, _, _, _ in runs])
    for cfg, sim, label, first in runs:
        _assert_same_models(complete_checkpoints(cfg.run.dir)[0], sim, label)


@pytest.mark.dist
def test_co_hosted_clients_equal_the_reference(tmp_path):
    """3 clients on 2 ranks ({0, 1} together, {2} alone; train.client_ranks) give the one-process
    reference's update, on stacked storage and one after another, for every rule and exchange mode, MD-GAN's swap (within a rank and across),
    lambda's discriminator-side copies, the robust and secure exchanges, and G on a rank of its own
    with all 3 clients on the other (pipelined too)."""
    runs = []
    cases = [(algo, exchange, ()) for algo in ("f2u", "f2u_balanced", "f2a", "mean", "gman")
             for exchange in ("feedback", "params")]
    cases += [("mean", "feedback", ("algo.swap_every=1",)), ("mean", "params", ("algo.swap_every=1",)),
              ("f2a", "feedback", ("algo.lambda_refresh=2",)),
              ("f2u", "feedback", ("comm.robust=true", "defence.canaries=0", "defence.probes=0")),
              ("f2a", "feedback", ("comm.robust=true", "defence.canaries=0", "defence.probes=0")),
              ("f2a", "secure", ("algo.lambda_objective=generator", "algo.lambda_max=20")), ("mean", "secure", ()),
              ("f2a", "feedback", ("train.generator_rank=dedicated", "train.client_ranks=1")),
              ("f2u", "params", ("train.generator_rank=dedicated", "train.client_ranks=1", "train.pipeline=true")),
              ("f2u_balanced", "feedback", ("algo.fake_weights=rule",)),
              ("f2a", "params", ("algo.fake_weights=rule", "train.generator_rank=dedicated", "train.client_ranks=1",
                                 "train.pipeline=true"))]
    cases = [(algo, exchange, (*extra, "train.stack_clients=always")) for algo, exchange, extra in cases]
    cases += [("f2a", "feedback", ("train.stack_clients=never",)),      # the CPU's default: one after another
              ("mean", "params", ("algo.swap_every=1", "train.stack_clients=never"))]
    for algo, exchange, extra in cases:
        extra = extra if "train.client_ranks=1" in extra else (*extra, "train.client_ranks=2")
        sim = _reference(small_config(tmp_path / "ref", 3, algo, "feedback" if exchange == "secure" else exchange,
                                      tuple(e for e in extra if not e.startswith(("comm.", "defence.")))))
        cfg = small_config(tmp_path / f"{algo}-{exchange}-{'-'.join(extra)}", 3, algo, exchange, extra)
        runs.append((cfg, sim, f"{algo} {exchange} {extra}"))
    spawn(train_in_one_group, 2, [cfg for cfg, _, _ in runs])
    for cfg, sim, label in runs:
        _assert_same_models(complete_checkpoints(cfg.run.dir)[0], sim, label)
