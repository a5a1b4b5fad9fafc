"""Gossip and FedAvg-GAN: selection maths, graphs, the point-to-point schedule on real gloo groups,
end-to-end runs on digits, replica consistency and exact resume."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, flat_state, make_configs, spawn
from ddgan.cli import load_checked
from ddgan.core.config import load_config
from ddgan.core.errors import ConfigError
from ddgan.nodes import neighbours, topology
from ddgan.nodes.local_gan import saved_node
from ddgan.runtime.checkpoint import complete_checkpoints, load_rank_file, step_dir
from ddgan.runtime.rundir import read_metrics

TINY = ["data.name=digits", "data.image_size=8", "model.g_width=4", "model.d_width=4", "model.z_dim=8",
        "train.batch_size=8", "comm.timeout_s=60", "run.log_every=2", "run.sample_every=4",
        "run.checkpoint_every=4", "algo.max_d_steps=2", "train.resume=never"]


def tiny(run_dir, world: int, *extra: str):
    return load_config(None, [*TINY, f"partition.clients={world}", "partition.scheme=iid",
                              f"run.dir={run_dir}", *extra])


# --------------------------------------------------------------------------- eq. 6-7

def test_kl_and_eq7_probabilities_match_hand_computed_values():
    p_own = torch.tensor([0.4, 0.5])
    p_nbrs = torch.tensor([[0.8, 0.5], [0.2, 0.4], [0.9, 0.6]])
    hand = [0.8 * math.log(0.8 / 0.4) + 0.5 * math.log(0.5 / 0.5),
            0.2 * math.log(0.2 / 0.4) + 0.4 * math.log(0.4 / 0.5),
            0.9 * math.log(0.9 / 0.4) + 0.6 * math.log(0.6 / 0.5)]
    kls = neighbours.kl(p_nbrs, p_own)
    assert kls.tolist() == pytest.approx(hand, rel=1e-6)
    assert hand[1] < 0                                  # the batch sum can be negative: clamped to 0
    probs = neighbours.infogain(kls)
    assert probs.tolist() == pytest.approx([hand[0] / (hand[0] + hand[2]), 0.0, hand[2] / (hand[0] + hand[2])])
    assert neighbours.kl(p_own[None], p_own).item() == pytest.approx(0.0, abs=1e-7)


def test_infogain_falls_back_to_uniform_and_draws_follow_the_probabilities():
    for kls in ([-0.3, -0.1], [0.0, 0.0], [math.nan, 1.0], [math.inf, 1.0]):
        assert neighbours.infogain(torch.tensor(kls)).tolist() == [0.5, 0.5], kls
    assert neighbours.uniform(torch.tensor([5.0, 1.0, 0.0, 2.0])).tolist() == [0.25] * 4
    assert not neighbours.SELECTORS["none"].consults and neighbours.SELECTORS["infogain"].consults
    assert set(neighbours.SELECTORS) == {"infogain", "uniform", "none"}
    rng = torch.Generator().manual_seed(0)
    draws = [neighbours.draw(torch.tensor([0.2, 0.0, 0.8]), rng) for _ in range(2000)]
    assert draws.count(1) == 0 and 0.75 < draws.count(2) / 2000 < 0.85
    # saturated discriminators give large but finite values
    assert math.isfinite(neighbours.kl(torch.tensor([[1.0, 1.0]]), torch.tensor([0.0, 0.0])).item())


# --------------------------------------------------------------------------- graphs

def test_graph_builders():
    assert topology.ring(5) == [[1, 4], [0, 2], [1, 3], [2, 4], [0, 3]]
    assert topology.path(4) == [[1], [0, 2], [1, 3], [2]]
    assert topology.star(4) == [[1, 2, 3], [0], [0], [0]]
    assert topology.ring(2) == [[1], [0]] and topology.ring(1) == [[]]
    for n, degree in ((6, 3), (8, 4), (5, 2)):
        g = topology.random_regular(n, degree, seed=1)
        assert all(len(nbrs) == degree for nbrs in g) and topology.check(g, n) is g
        assert g == topology.random_regular(n, degree, seed=1)           # seeded: every rank agrees
    assert len({str(topology.random_regular(10, 3, s)) for s in range(5)}) > 1
    for p in (0.3, 0.9):
        g = topology.erdos_renyi(7, p, seed=2)
        assert topology.connected(g) and g == topology.erdos_renyi(7, p, seed=2)
    cfg = load_config(ROOT / "configs/gossip_5node.yaml")
    assert topology.graph_of(cfg) == topology.ring(5)
    edges = load_config(None, ["algo.name=gossip", "partition.clients=4", "partition.scheme=iid",
                               "topology.kind=edges", "topology.edges=[[0, 1], [1, 0], [2, 1], [3, 0]]"])
    assert topology.graph_of(edges) == [[1, 3], [0, 2], [1], [0]]


@pytest.mark.parametrize("overrides, message", [
    (["topology.kind=edges", "topology.edges=[[0, 1], [1, 1], [1, 2], [2, 3]]"], "[1, 1] is a self-loop"),
    (["topology.kind=edges", "topology.edges=[[0, 1], [1, 2], [2, 4]]"], "names node 4, but the graph has nodes 0..3"),
    (["topology.kind=edges", "topology.edges=[[0, 1], [2, 3]]"],
     "does not connect every node (components [0, 1], [2, 3])"),
    (["topology.kind=random_regular", "topology.degree=3", "partition.clients=5"], "nodes * degree even"),
    (["topology.kind=random_regular", "topology.degree=4"], "degree < nodes"),
    (["topology.kind=erdos_renyi", "topology.p=0.001"], "no connected Erdos-Renyi graph"),
])
def test_graph_errors_are_one_line_config_errors(overrides, message):
    base = ["algo.name=gossip", "partition.clients=4", "partition.scheme=iid"]
    with pytest.raises(ConfigError) as info:
        load_checked(None, [*base, *overrides])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_kosmopoulos_paper_configs_match_their_generator_and_load():
    files = make_configs().gossip_files()
    assert len(files) == 4
    for name, text in files.items():
        assert (ROOT / "configs" / "paper" / name).read_text() == text, name
        cfg = load_config(ROOT / "configs" / "paper" / name)
        assert cfg.partition.samples_per_client == 10000 and cfg.train.d_optimizer == "sgd"


def test_graph_checks_symmetry_self_loops_and_world_size():
    with pytest.raises(ConfigError, match="not symmetric: 1 is a neighbour of 0 but 0 is not one of 1"):
        topology.check([[1], [2], [1]], 3)
    with pytest.raises(ConfigError, match="node 1 is its own neighbour"):
        topology.check([[1], [0, 1]], 2)
    with pytest.raises(ConfigError, match="the graph has 5 nodes but the run has 4 \\(partition.clients\\)"):
        topology.check(topology.ring(5), 4)
    with pytest.raises(ConfigError, match="fedavg averages the nodes' weights"):
        load_config(ROOT / "configs/fedavg_5node.yaml", ["model.node_d_width=[8, 8, 8, 4, 8]"])


def test_a_bad_graph_fails_the_cli_with_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ddgan.train", "--config", "configs/gossip_5node.yaml",
                           "topology.edges=[[0, 1], [1, 2], [3, 4]]", f"run.dir={tmp_path}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: topology: the graph does not connect every node (components [0, 1, 2], [3, 4])"]


# --------------------------------------------------------------------------- point to point

GRAPHS = {4: ["ring", "path", "star", "random_regular:2", "erdos_renyi:0.5"],
          5: ["ring", "path", "star", "random_regular:4", "erdos_renyi:0.4"]}


def _schedule_worker(rank, world, nodes, p_consider, out):
    """Every graph of ``nodes`` nodes on ``world`` ranks (contiguous groups when fewer): 20 cycles of
    the share step, each D filled with (its node * 100 + the cycle)."""
    import torch.distributed as dist

    from ddgan.core.errors import TrainingError
    from ddgan.core.layout import Layout
    from ddgan.nodes.gossip import Exchange, exchange, peer_ranks, share_discriminators
    from ddgan.roles import build_discriminator
    from ddgan.runtime.comm import Comm, module_tensors

    dist.init_process_group("gloo")
    results = {}
    try:
        for kind in GRAPHS[nodes]:
            name, _, arg = kind.partition(":")
            extra = {"random_regular": [f"topology.degree={arg}"], "erdos_renyi": [f"topology.p={arg}"]}.get(name, [])
            cfg = tiny("unused", nodes, "algo.name=gossip", f"topology.kind={name}", f"algo.p_consider={p_consider}",
                       *extra, f"model.node_d_width={[2 + k for k in range(nodes)]}",
                       f"train.client_ranks={world if world < nodes else 0}")
            graph, layout = topology.graph_of(cfg), Layout.of(cfg)
            comm = Comm(rank, world, 30, allowed_peers=peer_ranks(graph, layout, rank))
            hosted = layout.clients_of(rank)
            mine = {k: build_discriminator(cfg, k, torch.device("cpu"), 2 + k) for k in hosted}
            peers = {j: build_discriminator(cfg, j, torch.device("cpu"), 2 + j) for k in hosted for j in graph[k]}
            received = 0
            for cycle in range(1, 21):
                comm.step = cycle
                with torch.no_grad():
                    for k, D in mine.items():
                        for t in module_tensors(D).values():
                            t.fill_(k * 100 + cycle)
                plan = exchange(cfg, graph, layout, rank, cycle)
                share_discriminators(comm, plan, mine, peers)
                for k in plan.consulting:      # every neighbour's D of this very cycle, sent or copied
                    for j in graph[k]:
                        assert all(bool((t == j * 100 + cycle).all()) for t in module_tensors(peers[j]).values())
                received += sum(len(graph[k]) for k in plan.consulting)
            stranger = next((r for r in range(world) if r != rank and r not in peer_ranks(graph, layout, rank)), None)
            if stranger is not None:
                with pytest.raises(TrainingError, match=f"tried to reach non-neighbours \\[{stranger}\\]"):
                    share_discriminators(comm, Exchange(frozenset(), {stranger: [hosted[0]]}, {}, []), mine, peers)
                with pytest.raises(TrainingError, match="non-neighbours"):
                    comm.send_recv({}, {stranger: torch.empty(4)}, "a receive from a stranger")
            results[kind] = {"log": sorted(set(comm.log)), "received": received, "graph": graph}
        (out / f"rank_{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
# CI runs the harder case: every node exchanging every cycle, on odd rings (4 ranks: -m slow); and
# 5 nodes on 2 ranks, where a D a co-hosted node consults is copied and the rest travel per rank
@pytest.mark.parametrize("world, nodes, p_consider", [pytest.param(4, 4, 0.5, marks=pytest.mark.slow), (5, 5, 1.0),
                                                      (2, 5, 1.0)])
def test_p2p_schedule_never_deadlocks_and_only_reaches_neighbours(tmp_path, world, nodes, p_consider):
    from ddgan.core.layout import Layout
    from ddgan.nodes.gossip import peer_ranks

    spawn(_schedule_worker, world, world, nodes, p_consider, tmp_path, timeout=120)
    results = [json.loads((tmp_path / f"rank_{r}.json").read_text()) for r in range(world)]
    layout = Layout(nodes, client_ranks=world if world < nodes else 0, nodes=True)
    for kind in GRAPHS[nodes]:
        graph = results[0][kind]["graph"]
        for r in range(world):
            reached = {peer for _, peer in results[r][kind]["log"]}
            assert reached <= peer_ranks(graph, layout, r) and r not in reached       # never itself
            assert results[r][kind]["received"] > 0
            if p_consider == 1:
                assert results[r][kind]["received"] == 20 * sum(len(graph[k]) for k in layout.clients_of(r))


# --------------------------------------------------------------------------- end to end

def _train_worker(rank, jobs, threads=None):
    """Runs configs in one gloo group, each by its trainer, and records every rank's p2p log.
    ``threads``: pinned, so that groups of different sizes reduce in the same order (bit for bit)."""
    import torch.distributed as dist

    from ddgan.runtime.comm import Comm
    from ddgan.runtime.distributed import process_group
    from ddgan.train import trainer_for

    dist.init_process_group("gloo")
    try:
        for cfg in jobs:
            with process_group(cfg) as ctx:
                if threads:
                    torch.set_num_threads(threads)
                comm = Comm(ctx.rank, ctx.world, cfg.comm.timeout_s)
                trainer_for(cfg)(cfg, ctx, comm)
                (Path(cfg.run.dir) / f"p2p_rank_{rank}.json").write_text(json.dumps(comm.log))
    finally:
        dist.destroy_process_group()


def _check_gossip_run(run, world: int, select_rule: str, steps: int) -> None:
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(2, steps + 1, 2))
    graph = records[-1]["neighbours"]
    for r in records:
        for k in range(world):
            assert 1 <= r["d_steps_last"][k] <= 2 and math.isfinite(r["d_loss"][k])
            chosen, kl = r["chosen"][k], r["kl"][k]
            if select_rule == "none":
                assert chosen == -1 and r["bytes_sent"][k] == 0 and r["considered"][k] == 0
            if chosen != -1:
                assert chosen in graph[k] and len(kl) == len(graph[k]) and all(v is not None for v in kl)
            else:
                assert all(v is None for v in kl)
    if select_rule != "none":
        assert any(c != -1 for r in records for c in r["chosen"])
        assert sum(b for r in records for b in r["bytes_sent"]) > 0
    for k in range(world):
        log = json.loads((run / f"p2p_rank_{k}.json").read_text())
        assert {peer for _, peer in log} <= set(graph[k])
        assert (log == []) == (select_rule == "none")
        assert sorted(p.name for p in (run / "samples" / f"node_{k}").iterdir()) == \
            [f"step_{s:07d}.png" for s in sorted({*range(4, steps + 1, 4), steps})]
    assert [p.name for p in complete_checkpoints(run)] == [f"step_{steps:07d}", "step_0000004"]


E2E_STEPS = 6


@pytest.mark.dist
def test_three_node_runs_fedavg_consistency_and_exact_resume(tmp_path):
    """3 nodes: gossip with each selection rule, fedavg, and resume == uninterrupted for both."""
    jobs = [tiny(tmp_path / sel, 3, "algo.name=gossip", f"algo.select={sel}", f"train.steps={E2E_STEPS}")
            for sel in ("infogain", "uniform", "none")]
    fed = ["algo.name=fedavg", "algo.sync_every=3", "run.checkpoint_every=2", "run.keep_checkpoints=5"]
    jobs.append(tiny(tmp_path / "fedavg", 3, *fed, "train.steps=6"))
    for trainer, extra in (("gossip", ["algo.name=gossip", "algo.select=infogain"]), ("fedavg", fed)):
        base = [*extra, "train.resume=auto", "algo.p_consider=0.7"]
        jobs += [tiny(tmp_path / f"{trainer}_straight", 3, *base, "train.steps=9"),
                 tiny(tmp_path / f"{trainer}_resumed", 3, *base, "train.steps=5"),
                 tiny(tmp_path / f"{trainer}_resumed", 3, *base, "train.steps=9")]
    spawn(_train_worker, 3, jobs, timeout=300)
    for sel in ("infogain", "uniform", "none"):
        _check_gossip_run(tmp_path / sel, 3, sel, E2E_STEPS)
    # fedavg: replicas bit-identical right after a sync (step 6), apart otherwise (step 4)
    for step, same in ((6, True), (4, False)):
        where = [c for c in complete_checkpoints(tmp_path / "fedavg") if c.name == f"step_{step:07d}"][0]
        states = [saved_node(where, k) for k in range(3)]
        for part, key in (("generator", "G"), ("client", "D")):
            for k in (1, 2):
                equal = all(torch.equal(v, states[0][part][key][n]) for n, v in states[k][part][key].items())
                assert equal == same, (step, part, k)
    # resume: the run stopped at step 5 and continued to 9 equals the straight run, bit for bit
    for trainer in ("gossip", "fedavg"):
        a = complete_checkpoints(tmp_path / f"{trainer}_straight")[0]
        b = complete_checkpoints(tmp_path / f"{trainer}_resumed")[0]
        assert a.name == b.name == "step_0000009"
        for k in range(3):
            fa, fb = flat_state(load_rank_file(a, k)), flat_state(load_rank_file(b, k))
            assert fa.keys() == fb.keys() and f"nodes.{k}.generator.G_opt.state.0.exp_avg." in fa
            for key, value in fa.items():
                same = torch.equal(value, fb[key]) if isinstance(value, torch.Tensor) else value == fb[key]
                assert same, (trainer, k, key)
        assert [r["step"] for r in read_metrics(tmp_path / f"{trainer}_resumed")] == [2, 4, 5, 6, 8, 9]


@pytest.mark.dist
def test_five_node_runs_with_different_widths_on_a_sparse_graph(tmp_path):
    widths = ["model.node_g_width=[4, 4, 2, 4, 6]", "model.node_d_width=[4, 2, 4, 6, 4]"]
    jobs = [tiny(tmp_path / sel, 5, "algo.name=gossip", f"algo.select={sel}", "topology.kind=ring",
                 "algo.p_consider=0.8", f"train.steps={E2E_STEPS}", *widths)
            for sel in ("infogain", "uniform", "none")]
    spawn(_train_worker, 5, jobs, timeout=300)
    for sel in ("infogain", "uniform", "none"):
        _check_gossip_run(tmp_path / sel, 5, sel, E2E_STEPS)
    from ddgan.sample import generate, load_generator
    for k, width in ((2, 2), (4, 6)):
        G, _ = load_generator(complete_checkpoints(tmp_path / "infogain")[0], k)
        assert G.spec.width == width and generate(G, 5).shape == (5, 1, 8, 8)
    assert set(load_rank_file(complete_checkpoints(tmp_path / "infogain")[0], 3)) == {"step", "nodes"}
    state = saved_node(complete_checkpoints(tmp_path / "infogain")[0], 3)
    assert set(state) == {"step", "client", "generator"} and {"D", "D_opt", "shard"} <= set(state["client"])
    assert {"G", "G_opt", "noise"} <= set(state["generator"])


# --------------------------------------------------------------------------- many nodes per rank

CO_STEPS = 6
CO_CASES = {"infogain": ["algo.name=gossip", "algo.select=infogain", "model.node_d_width=[4, 2, 4, 6, 4]"],
            "uniform": ["algo.name=gossip", "algo.select=uniform"],
            "none": ["algo.name=gossip", "algo.select=none"],
            "fedavg": ["algo.name=fedavg", "algo.sync_every=3"]}
RESUMED = ("infogain", "fedavg")


def co_hosted(run_dir, ranks: int, case: str, steps: int = CO_STEPS):
    """5 nodes on a ring, on ``ranks`` ranks (5: one node per rank), float64, a checkpoint every 3 cycles."""
    return tiny(run_dir, 5, *CO_CASES[case], f"train.client_ranks={0 if ranks == 5 else ranks}",
                "train.dtype=float64", "topology.kind=ring", "algo.p_consider=0.7", "run.checkpoint_every=3",
                "run.keep_checkpoints=5", "train.resume=auto", f"train.steps={steps}")


def _node_states(run: Path, step: int = CO_STEPS) -> list[dict]:
    return [flat_state(saved_node(step_dir(run, step), k)) for k in range(5)]


def _largest_difference(a: list[dict], b: list[dict]) -> float:
    """The largest relative difference between two runs' float tensors, node by node (0.0: equal
    values throughout); every other value (steps, random states, shard positions) must be equal."""
    worst = 0.0
    for state_a, state_b in zip(a, b, strict=True):
        assert state_a.keys() == state_b.keys()
        for key, va in state_a.items():
            vb = state_b[key]
            if isinstance(va, torch.Tensor) and va.is_floating_point():
                worst = max(worst, float((va - vb).norm() / vb.norm().clamp_min(1e-30)))
            else:
                assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, key
    return worst


def _as_before_co_hosting(where: Path) -> None:
    """Rewrite a one-node-per-rank checkpoint as ddgan wrote it before co-hosting: each rank file is
    its node's state itself (no "nodes"); the manifest's sizes and checksums follow."""
    manifest = json.loads((where / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        path, rank = where / name, int(name.removeprefix("rank_").removesuffix(".pt"))
        torch.save(torch.load(path, weights_only=True)["nodes"][str(rank)], path)
        entry.update(bytes=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (where / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.dist
def test_nodes_on_fewer_ranks_equal_one_node_per_rank_and_resume_on_any_layout(tmp_path):
    """5 nodes on 2 ranks ({0, 1, 2} and {3, 4}: on the ring some Ds stay on a rank, some cross) and
    on 1 give the 5-rank run's nodes: gossip bit for bit (a node computes as it would alone), fedavg
    to 1e-5 (a rank adds up its nodes' shares before the all_reduce, so the sum is ordered
    otherwise). A co-hosted run resumes bit for bit on its own layout, and moves: from a 5-rank
    checkpoint written before co-hosting (rank files without "nodes") onto 2 ranks, from 2 onto 1."""
    from ddgan.sample import load_generator

    ref = [co_hosted(tmp_path / f"ref_{c}", 5, c) for c in CO_CASES]
    spawn(_train_worker, 5, [*ref, *(co_hosted(tmp_path / f"old_{c}", 5, c, steps=3) for c in RESUMED)], 1,
          timeout=400)
    for c in RESUMED:
        _as_before_co_hosting(step_dir(tmp_path / f"old_{c}", 3))
    assert load_generator(step_dir(tmp_path / "old_infogain", 3), 4)[0].spec.width == 4   # old files still load
    jobs = [co_hosted(tmp_path / f"two_{c}", 2, c) for c in CO_CASES]
    for c in RESUMED:
        jobs += [co_hosted(tmp_path / f"same_{c}", 2, c, steps=3), co_hosted(tmp_path / f"same_{c}", 2, c),
                 co_hosted(tmp_path / f"old_{c}", 2, c)]
    spawn(_train_worker, 2, jobs, 1, timeout=400)
    for c in RESUMED:
        shutil.copytree(step_dir(tmp_path / f"same_{c}", 3), step_dir(tmp_path / f"moved_{c}", 3))
    jobs = [co_hosted(tmp_path / f"{run}_{c}", 1, c) for run in ("one", "moved") for c in RESUMED]
    spawn(_train_worker, 1, jobs, 1, timeout=300)

    differences = {}
    for c in CO_CASES:
        runs = ["two"] + (["one", "old", "moved"] if c in RESUMED else [])
        for run in runs:
            differences[f"{run}_{c}"] = _largest_difference(_node_states(tmp_path / f"{run}_{c}"),
                                                            _node_states(tmp_path / f"ref_{c}"))
        if c != "fedavg":       # the metrics, gathered in node order, agree too
            a, b = read_metrics(tmp_path / f"two_{c}")[-1], read_metrics(tmp_path / f"ref_{c}")[-1]
            assert a["d_loss"] == b["d_loss"] and a["chosen"] == b["chosen"], c
    assert all(d == 0.0 for run, d in differences.items() if not run.endswith("fedavg")), differences
    assert all(d < 1e-5 for d in differences.values()), differences
    assert differences["two_fedavg"] > 0.0       # the comparison can tell the sums apart
    for c in RESUMED:
        assert _largest_difference(_node_states(tmp_path / f"same_{c}"), _node_states(tmp_path / f"two_{c}")) == 0.0
        # each run really resumed (a fresh one would give the same nodes, and log steps 2 and 3 again)
        assert [r["step"] for r in read_metrics(tmp_path / f"same_{c}")] == [2, 3, 4, 6]
        assert [r["step"] for r in read_metrics(tmp_path / f"old_{c}")] == [2, 3, 4, 6]
        assert [r["step"] for r in read_metrics(tmp_path / f"moved_{c}")] == [4, 6]
    # co-hosted nodes exchange on their rank: each rank reaches only the other, never itself
    for rank in range(2):
        assert {peer for _, peer in json.loads((tmp_path / "two_infogain" / f"p2p_rank_{rank}.json").read_text())} \
            == {1 - rank}
    assert set(load_rank_file(step_dir(tmp_path / "two_infogain", CO_STEPS), 1)["nodes"]) == {"3", "4"}


def test_a_co_hosted_gossip_run_trains_in_one_process_and_evaluates(tmp_path, digits_classifier_cache):
    """3 nodes on one rank: no torchrun; ``python -m ddgan.eval --run`` reads every node's checkpoint."""
    run = tmp_path / "run"
    train = [sys.executable, "-m", "ddgan.train", "algo.name=gossip", "partition.clients=3", "partition.scheme=iid",
             "train.client_ranks=1", "model.g_width=4", "model.d_width=4", "model.z_dim=8", "train.batch_size=8",
             "algo.max_d_steps=2", "train.steps=4", "run.log_every=2", f"run.dir={run}"]
    proc = subprocess.run(train, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(read_metrics(run)[-1]["d_loss"]) == 3
    proc = subprocess.run([sys.executable, "-m", "ddgan.eval", "--run", str(run), "--n", "200", "--cache",
                           str(digits_classifier_cache), "--svm-train", "100", "--svm-test", "50"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run / "eval.json").read_text())
    assert list(result["generators"]) == ["0", "1", "2"] and set(result["svm"]["test_error"]) == {"0", "1", "2"}
    assert (run / "eval" / "samples_node_2.png").exists()
