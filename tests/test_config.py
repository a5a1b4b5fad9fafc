"""Config loading: typed sections, dotted overrides, and one-line errors that name key, value, file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_configs
from ddgan.core.config import Config, load_config
from ddgan.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads():
    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert paths
    for path in paths:
        assert isinstance(load_config(path), Config), path


def test_overrides_are_typed_yaml_values():
    cfg = load_config(ROOT / "configs/default.yaml",
                      ["train.steps=20", "partition.clients=2", "partition.scheme=classes",
                       "partition.classes=[[0, 1], [2, 3]]", "algo.lambda_init=2", "data.download=true",
                       "train.lr_d=1e-4"])
    assert cfg.train.lr_d == 1e-4
    assert cfg.train.steps == 20 and cfg.partition.classes == [[0, 1], [2, 3]]
    assert cfg.algo.lambda_init == 2.0 and isinstance(cfg.algo.lambda_init, float)
    assert cfg.data.download is True
    assert load_config(None).run.dir == "runs/default"
    assert load_config(ROOT / "configs/default.yaml", ["run.dir="]).run.dir == "runs/default"


@pytest.mark.parametrize("body, override, message", [
    ({"train": {"stpes": 5}}, None, "unknown key 'train.stpes'; did you mean 'train.steps'?"),
    ({"trian": {"steps": 5}}, None, "unknown key 'trian'; did you mean 'train'?"),
    ({"train": {"steps": "many"}}, None, "train.steps = 'many': expected int, got str"),
    ({"train": {"steps": 1.5}}, None, "train.steps = 1.5: expected int, got float"),
    ({"data": {"download": "yes"}}, None, "data.download = 'yes': expected bool, got str"),
    ({"partition": {"classes": [[0, "a"]]}}, None, "partition.classes"),
    ({"train": {"steps": 0}}, None, "train.steps = 0: must be >= 1"),
    ({"algo": {"name": "f3u"}}, None, "algo.name = 'f3u': unknown algorithm"),
    ({"partition": {"scheme": "non_ovl", "clients": 4}}, None,
     "partition.clients = 4: scheme non_ovl is the paper's 5-client split"),
    ({"partition": {"scheme": "classes", "clients": 2, "classes": [[0], []]}}, None, "client 1 holds no class"),
    ({"data": {"image_size": 30}}, None, "data.image_size = 30"),
    ({"algo": {"name": "centralized"}}, None, "partition.clients = 5: algo centralized is one client"),
    ({"model": {"d_norm": "instance"}}, None, "model.d_norm = 'instance': choose one of none, batch, spectral, layer"),
    ({"model": {"d_batchnorm": True, "d_norm": "none"}}, None,
     "model.d_batchnorm is deprecated and model.d_norm is set too; keep only model.d_norm"),
    ({"algo": {"lambda_objective": "both"}}, None, "algo.lambda_objective = 'both': choose generator or discriminator"),
    ({"algo": {"fake_weights": "forgiven"}}, None, "algo.fake_weights = 'forgiven': choose uniform or rule"),
    ({"algo": {"fake_weights": "rule"}, "comm": {"robust": True}}, None,
     "algo.fake_weights = 'rule': the rule's weights need every client's own scores"),
    ({"algo": {"fake_weights": "rule", "name": "gossip"}, "partition": {"scheme": "iid"}}, None,
     "algo.fake_weights = 'rule': the rule's weights belong to the forgiver-first algorithms"),
    ({}, "train.stesp=3", "command line: unknown key 'train.stesp'; did you mean 'train.steps'?"),
    ({}, "train.steps=-3", "command line: train.steps = -3: must be >= 1"),
    ({}, "steps", "override 'steps' must look like section.key=value"),
])
def test_bad_configs_name_the_key_value_and_source(tmp_path, body, override, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError) as err:
        load_config(path, [override] if override else [])
    assert message in str(err.value)
    source = "command line" if override else str(path)
    assert str(err.value).startswith(source) or "default" in str(err.value).split(":")[0]
    assert "\n" not in str(err.value)


def test_malformed_yaml_and_wrong_shapes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    bad.write_text("train: 5\n")
    with pytest.raises(ConfigError, match="section 'train' must be a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_cli_error_is_one_line_exit_2_without_traceback(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("train:\n  setps: 3\n")
    for module in ("ddgan.train", "ddgan.partition"):
        proc = subprocess.run([sys.executable, "-m", module, "--config", str(path)], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"error: {path}: unknown key 'train.setps'; did you mean 'train.steps'?"
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_paper_configs_match_their_generator():
    files = make_configs().all_files()
    assert len(files) == 36
    for name, text in files.items():
        assert (ROOT / "configs" / "paper" / name).read_text() == text, name


def test_a_removed_key_loads_only_at_the_value_at_which_it_did_nothing(tmp_path):
    """Checkpoints of 0.2.0 hold train.d_flood = 0.0; the option is gone, so any other value is refused."""
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"train": {"d_flood": 0.0, "steps": 7}}))
    assert load_config(path).train.steps == 7
    path.write_text(yaml.safe_dump({"train": {"d_flood": 0.5}}))
    with pytest.raises(ConfigError, match=r"train.d_flood was removed; only train.d_flood = 0.0 \(off\) still loads"):
        load_config(path)


@pytest.mark.parametrize("old, new", [(True, "batch"), (False, "none")])
def test_the_old_batchnorm_key_still_loads_and_says_what_it_became(tmp_path, capsys, old, new):
    """Configs and checkpoints written before model.d_norm keep working."""
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"model": {"d_batchnorm": old}}))
    assert load_config(path).model.d_norm == new
    assert capsys.readouterr().err == (f"warning: {path}: model.d_batchnorm = {old} is deprecated; "
                                       f"read as model.d_norm = '{new}'\n")
