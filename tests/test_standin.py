"""Every mode on a stand-in GPU (ddgan.runtime.standin): device-correct under NCCL, and no host
sync in a steady-state step.

Ranks form a real gloo group; the trainers run on the stand-in device with ``comm`` as NCCL would
have it (every message on the device). torch.distributed's calls are wrapped to check each tensor
(device, contiguity, dtype), and every host read and blocking upload is recorded with its step.
Runs are 3 steps: step 1 starts (optimiser state, lambda's first copies), step 3 ends (log record,
sample grid, checkpoint), step 2 is the steady state.
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from conftest import spawn
from ddgan.core.aggregate import RuleInputs
from ddgan.core.algorithms import ALGORITHMS
from ddgan.runtime import standin

STEPS = 3
STEADY = 2
BASE = ["train.batch_size=8", "model.g_width=8", "model.d_width=8", "model.z_dim=16", f"train.steps={STEPS}",
        f"run.log_every={STEPS}", f"run.sample_every={STEPS}", f"run.checkpoint_every={STEPS}", "comm.timeout_s=60"]
THREE = ["partition.clients=3", "partition.scheme=classes", "partition.classes=[[0,1,2,3],[3,4,5,6],[6,7,8,9,0]]"]
TWO_AND_G = ["partition.clients=2", "partition.scheme=classes", "partition.classes=[[0,1,2,3,4],[5,6,7,8,9]]",
             "train.generator_rank=dedicated"]
EXCHANGES = {"feedback": [], "params": ["comm.exchange=params"],
             "secure": ["comm.exchange=secure", "algo.lambda_objective=generator", "algo.lambda_max=20"],
             "robust": ["comm.robust=true"]}
LAYOUTS = {"shared": THREE, "dedicated": TWO_AND_G, "pipeline": TWO_AND_G + ["train.pipeline=true"]}
MODES = {f"{mode}_{layout}": clients + extra for mode, extra in EXCHANGES.items()
         for layout, clients in LAYOUTS.items() if not (mode == "robust" and layout == "pipeline")}
OTHERS = {
    "co_hosted": ["partition.clients=5", "partition.scheme=dirichlet", "train.client_ranks=3"],
    "co_hosted_stacked": ["partition.clients=5", "partition.scheme=dirichlet", "train.client_ranks=3",
                          "train.stack_clients=always", "comm.exchange=params"],
    # each D's fake term weighted by the rule (one more gather), on stacked storage
    "rule_weighted_fakes": ["partition.clients=5", "partition.scheme=dirichlet", "train.client_ranks=3",
                            "train.stack_clients=always", "algo.fake_weights=rule"],
    "swap": THREE + ["algo.name=mean", "algo.swap_every=2"],
    "gossip": THREE + ["algo.name=gossip"],
    "fedavg": THREE + ["algo.name=fedavg", "algo.sync_every=2"],
    # trained on the CPU to a swap step's checkpoint, then resumed on the device: steps 3 (the echo
    # of the swap's checks), 4 (steady, a swap) and 5
    "resumed_at_a_swap": THREE + ["algo.name=mean", "algo.swap_every=2", "comm.robust=true"],
}
RESUMED = {"resumed_at_a_swap": 2}       # steps trained on the CPU first
# Host syncs a step may make, and why (each is also said where the code makes it).
ALLOWED = {
    # gossip trains D_k while its loss is above the threshold, draws the neighbour whose D it uses,
    # and checks a received D's spec before copying it: decisions the host makes
    # (ddgan/nodes/local_gan.py, train_d; neighbours.py, draw; gossip.py, share_discriminators)
    "gossip": {"ddgan/nodes/local_gan.py", "ddgan/nodes/neighbours.py", "ddgan/nodes/gossip.py"},
    # after each sync (every algo.sync_every steps), fedavg compares the replicas' checksums on the
    # host, gathered from every rank: every node must hold the same model
    "fedavg": {"ddgan/nodes/fedavg.py", "ddgan/runtime/comm.py"},
    # Adam keeps its step count on the host beside device weights; a swap (every algo.swap_every
    # steps, 100 in the paper's configs) carries it through the device and back
    "swap": {"ddgan/runtime/comm.py"}, "resumed_at_a_swap": {"ddgan/runtime/comm.py"},
}


def _audited(rank: int, cases: list[tuple[str, list[str]]], out) -> None:
    import torch.distributed as dist

    from ddgan.core.config import load_config
    from ddgan.runtime.comm import Comm
    from ddgan.runtime.distributed import Dist
    from ddgan.train import trainer_for

    dist.init_process_group("gloo")
    found = {}
    try:
        for name, overrides in cases:
            cfg = load_config(None, [*BASE, f"run.dir={out / name}", *overrides])
            if name in RESUMED:
                before = load_config(None, [*BASE, f"run.dir={out / name}", *overrides,
                                            f"train.steps={RESUMED[name]}", f"run.checkpoint_every={RESUMED[name]}"])
                on_cpu = Dist(rank, dist.get_world_size(), rank, torch.device("cpu"), "gloo")
                trainer_for(before)(before, on_cpu, Comm(rank, on_cpu.world, before.comm.timeout_s))
                cfg = load_config(None, [*BASE, f"run.dir={out / name}", *overrides,
                                         f"train.steps={RESUMED[name] + STEPS}"])
            ctx = Dist(rank, dist.get_world_size(), rank, standin.DEVICE, "nccl")
            comm = Comm(rank, ctx.world, cfg.comm.timeout_s, device=ctx.comm_device)
            said = io.StringIO()
            with standin.checked_collectives(standin.DEVICE), standin.stand_in(lambda: comm.step) as syncs, \
                    contextlib.redirect_stdout(said):
                trainer_for(cfg)(cfg, ctx, comm)
            found[name] = [[s.step, s.kind, s.where] for s in syncs]
            if name in RESUMED and rank == 0:
                assert f"resumed from step {RESUMED[name]}" in said.getvalue(), said.getvalue()
    finally:
        dist.destroy_process_group()
    (out / f"syncs_{rank}.json").write_text(json.dumps(found))


def _steady(out, world: int) -> dict[str, list]:
    """Per case, the host syncs of the steady-state step on any rank."""
    found: dict[str, list] = {}
    for rank in range(world):
        for name, syncs in json.loads((out / f"syncs_{rank}.json").read_text()).items():
            found.setdefault(name, []).extend([rank, *s] for s in syncs if s[0] == STEADY + RESUMED.get(name, 0))
    return found


@pytest.mark.dist
@pytest.mark.parametrize("cases", [MODES, OTHERS], ids=["exchanges_and_layouts", "swaps_nodes_co_hosting_resume"])
def test_every_mode_is_device_correct_and_sync_free_on_a_stand_in_gpu(tmp_path, cases):
    spawn(_audited, 3, list(cases.items()), tmp_path, timeout=900)
    steady = _steady(tmp_path, 3)
    assert set(steady) == set(cases)
    for name, syncs in steady.items():
        unexplained = [s for s in syncs if s[3].split(":")[0] not in ALLOWED.get(name, ())]
        assert unexplained == [], f"{name}: host syncs in a steady-state step (rank, step, kind, line): {unexplained}"
    if "gossip" in cases:       # each of gossip's reads is made, where the code says why
        assert {s[3].split(":")[0] for s in steady["gossip"]} == ALLOWED["gossip"], steady["gossip"]


@pytest.mark.parametrize("name", [a.name for a in ALGORITHMS.values() if a.rule is not None])
def test_every_rule_runs_on_the_device_without_a_host_sync(name):
    """The rules run on the generator rank's device in every exchange: K x B scores in, a loss and
    weights out, with nothing read on the host."""
    rule = ALGORITHMS[name].rule
    out = torch.randn(3, 8, dtype=torch.float64)
    lam = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    inputs = RuleInputs(loss="bce", lam=lam, tau=10.0, sinkhorn_iters=10,
                        shares=torch.full((3,), 1 / 3, dtype=torch.float64), gman_penalty=1e-3)
    on_cpu = rule(out.clone().requires_grad_(True), inputs)
    with standin.stand_in() as syncs:
        dev = standin.DEVICE
        moved = RuleInputs(loss="bce", lam=lam.detach().to(dev).requires_grad_(True), tau=10.0, sinkhorn_iters=10,
                           shares=inputs.shares.to(dev), gman_penalty=1e-3)
        scores = out.to(dev).requires_grad_(True)
        before = len(syncs)
        loss, weights = rule(scores, moved)
        loss.backward()
        assert syncs[before:] == []
    assert torch.equal(loss.elem, on_cpu[0]) and (weights is None or torch.equal(weights.elem, on_cpu[1]))


def test_the_stand_in_catches_what_a_gpu_would_refuse():
    """The checks themselves: a mixed-device op, a host read, a blocking upload, and a collective's
    tensor that is on the CPU, not contiguous, or of a dtype NCCL does not carry."""
    with standin.stand_in() as syncs:
        x = torch.ones(4, device=standin.DEVICE)
        with pytest.raises(RuntimeError, match="expected all tensors to be on meta"):
            x + torch.ones(4)
        assert float((x * torch.tensor(2.0)).sum()) == 8.0     # a 0-d CPU scalar is fine; the read is not
        x[[1, 2]] = 0.0
        torch.zeros(2).to(standin.DEVICE, non_blocking=True)
        assert [s.kind for s in syncs] == ["read", "upload"]
    import torch.distributed as dist
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        with standin.checked_collectives("cpu"):
            dist.broadcast(torch.ones(2), 0)
            for what, t in {"not contiguous": torch.ones(2, 2).t(), "int16": torch.ones(2, dtype=torch.int16)}.items():
                with pytest.raises(standin.OffDevice, match=what):
                    dist.broadcast(t, 0)
        with standin.checked_collectives(standin.DEVICE), pytest.raises(standin.OffDevice, match="is on cpu"):
            dist.all_reduce(torch.ones(2))
    finally:
        dist.destroy_process_group()
