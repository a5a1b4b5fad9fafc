"""The package's layers: each module imports only from its own layer or a lower one, the two trainer
packages never import each other, and the config loads without torch or any other ddgan module."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from conftest import ROOT

# lower number = lower layer; data and runtime share a level but never import each other
LAYERS = {"ddgan.core": 0, "ddgan.data": 1, "ddgan.runtime": 1, "ddgan.roles": 2, "ddgan.forgiver": 3,
          "ddgan.nodes": 3}
ENTRY = 4          # everything else: the commands (train, sample, eval, layout, partition, slurm, cli)
APART = [{"ddgan.data", "ddgan.runtime"}, {"ddgan.forgiver", "ddgan.nodes"}]


def group(module: str) -> str:
    return next((g for g in LAYERS if module == g or module.startswith(g + ".")), "entry")


def level(module: str) -> int:
    return LAYERS.get(group(module), ENTRY)


def imports() -> list[tuple[str, str]]:
    """(importing module, imported ddgan module) for every import in the package, lazy ones too."""
    pairs = []
    for path in sorted((ROOT / "ddgan").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddgan"):
                names = [node.module] if node.module != "ddgan" else [f"ddgan.{a.name}" for a in node.names]
                pairs += [(module, n) for n in names]
            elif isinstance(node, ast.Import):
                pairs += [(module, a.name) for a in node.names if a.name.startswith("ddgan")]
    return pairs


def test_every_import_points_down_or_sideways_within_its_group():
    pairs = imports()
    assert len(pairs) > 100
    upward = [(a, b) for a, b in pairs if level(b) > level(a)]
    across = [(a, b) for a, b in pairs if {group(a), group(b)} in APART]
    assert not upward, upward
    assert not across, across


def test_the_layer_rule_catches_an_upward_import():
    assert level("ddgan.core.config") < level("ddgan.forgiver.trainer") < level("ddgan.train")
    assert {group("ddgan.nodes.gossip"), group("ddgan.forgiver.robust")} in APART


def test_importing_the_config_loads_no_torch_and_no_other_ddgan_module():
    code = ("import sys, ddgan.core.config as c; c.load_config('configs/default.yaml');"
            "print(sorted(m for m in sys.modules if m.startswith('ddgan') or m == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "['ddgan', 'ddgan.core', 'ddgan.core.config', 'ddgan.core.errors']"


def _choices():
    from ddgan import roles
    from ddgan.core import algorithms, config, layout, losses, models
    from ddgan.data import datasets, partition
    from ddgan.forgiver import attacks, exchange
    from ddgan.nodes import neighbours, topology
    return [
        (config.DATASETS, datasets.DATASETS), (config.SIZES, models.SIZES), (config.D_NORMS, models.D_NORMS),
        (config.SCHEMES, partition.SCHEMES), (config.LOSSES, losses.LOSSES), (config.DTYPES, roles.DTYPES),
        (config.OPTIMIZERS, roles.OPTIMIZERS), (config.STACK_CLIENTS, roles.STACK_CLIENTS),
        (config.GENERATOR_RANKS, layout.GENERATOR_RANKS),
        (config.EXCHANGES, exchange.EXCHANGES), (config.ATTACKS, attacks.ATTACKS),
        (config.TOPOLOGIES, topology.TOPOLOGIES), (config.SELECTORS, neighbours.SELECTORS),
        (config.TRAINERS, algorithms.ALGORITHMS)]


@pytest.mark.parametrize("index", range(14))
def test_each_config_choice_list_is_the_table_of_the_module_that_dispatches_on_it(index):
    ours, theirs = _choices()[index]
    assert list(ours) == list(theirs)


def test_the_select_module_no_longer_shadows_the_standard_library():
    proc = subprocess.run([sys.executable, "ddgan/slurm.py", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "SLURM" in proc.stdout
