"""Which rank hosts which clients (train.client_ranks): pure checks of the layout's arithmetic."""
from __future__ import annotations

import pytest
import torch

from ddgan.core.config import load_config
from ddgan.core.errors import ConfigError
from ddgan.core.layout import Layout, fit


@pytest.mark.parametrize("clients, hosts, dedicated", [(5, 2, False), (5, 5, False), (7, 3, True), (100, 8, False),
                                                       (3, 1, True)])
def test_groups_are_contiguous_balanced_and_rows_round_trip(clients, hosts, dedicated):
    layout = Layout(clients, dedicated, hosts)
    groups = [layout.clients_of(r) for r in range(layout.world)]
    assert [k for g in groups for k in g] == list(range(clients))          # every client once, in order
    sizes = [len(g) for g in groups[int(dedicated):]]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) == layout.per_rank and sorted(sizes, reverse=True) == sizes
    assert all(layout.rank_of(k) == r for r, g in enumerate(groups) for k in g)
    rows = torch.arange(clients * 3.0).view(clients, 3)
    spread = layout.rank_rows(rows)
    assert spread.shape == (layout.world, layout.per_rank, 3)
    assert torch.equal(layout.client_rows(spread), rows)
    assert spread.sum() == rows.sum()                                      # padding is zeros


def test_the_plan_names_each_ranks_clients():
    assert Layout(5, False, 2).plan() == "rank 0: the generator and clients 0-2 (3)\nrank 1: clients 3-4 (2)"
    assert Layout(2, True, 0).plan() == "rank 0: the generator\nrank 1: client 0\nrank 2: client 1"
    gossip = Layout.of(load_config("configs/gossip_5node.yaml", ["train.client_ranks=2"]))
    assert gossip.nodes and gossip.plan() == "rank 0: nodes 0-2 (3)\nrank 1: nodes 3-4 (2)"
    assert Layout.of(load_config("configs/fedavg_5node.yaml", [])).plan().splitlines()[4] == "rank 4: node 4"


def test_layout_cli_prints_the_plan_of_a_gossip_run(capsys):
    from ddgan.layout import main

    assert main(["--plan", "--config", "configs/gossip_5node.yaml", "train.client_ranks=1"]) == 0
    assert capsys.readouterr().out == "1\nrank 0: nodes 0-4 (5)\n"


def test_fit_co_hosts_clients_and_nodes_and_refuses_what_cannot_fit():
    cfg = load_config("configs/default.yaml", [])
    assert fit(cfg, 5) == [] and fit(cfg, 1) == ["train.client_ranks=1"] and fit(cfg, 3) == ["train.client_ranks=3"]
    assert fit(load_config("configs/default.yaml", ["train.generator_rank=dedicated"]), 2) == ["train.client_ranks=1"]
    with pytest.raises(ConfigError, match="need 1 to 5"):
        fit(cfg, 6)
    assert fit(load_config("configs/gossip_5node.yaml", []), 2) == ["train.client_ranks=2"]
    with pytest.raises(ConfigError, match="5 nodes cannot run on 6 rank"):
        fit(load_config("configs/gossip_5node.yaml", []), 6)
    with pytest.raises(ConfigError, match="more ranks than the 5 clients"):
        load_config("configs/default.yaml", ["train.client_ranks=6"])
    assert Layout.of(load_config("configs/fedavg_5node.yaml", ["train.client_ranks=2"])).world == 2


@pytest.mark.parametrize("choice, norm, stacked", [("always", "spectral", True), ("auto", "spectral", False),
                                                   ("never", "spectral", False), ("always", "batch", False)])
def test_a_ranks_clients_are_stacked_as_train_stack_clients_says_on_the_cpu(choice, norm, stacked):
    """auto stacks on a GPU only (on the CPU the loop measured faster); batchnorm never stacks."""
    from ddgan.data.shard import client_shards
    from ddgan.roles import STACK_CLIENTS, ClientGroup

    cfg = load_config("configs/default.yaml", [f"train.stack_clients={choice}", f"model.d_norm={norm}"])
    source, shards = client_shards(cfg)
    group = ClientGroup.build(cfg, range(2), torch.device("cpu"), source, shards)
    assert (group.stacked is not None) == stacked
    assert STACK_CLIENTS["auto"](torch.device("cuda")) and not STACK_CLIENTS["auto"](torch.device("cpu"))
