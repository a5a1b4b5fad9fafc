"""Datasets by name (real files where present, stand-ins where not) and model shapes."""
from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddgan.core.config import load_config
from ddgan.core.errors import DataError
from ddgan.core.models import (
    BATCH_DEPENDENT_NORMS,
    D_NORMS,
    SIZES,
    ArchSpec,
    Discriminator,
    Generator,
    frozen_forward,
)
from ddgan.data.datasets import digits_arrays, load_images, open_source
from ddgan.data.shard import Shard, load_shard
from ddgan.roles import build_discriminator


def data_cfg(*overrides):
    return load_config(None, list(overrides))


def test_digits_are_embedded_scaled_and_upsampled():
    cfg = data_cfg()
    src = open_source(cfg.data)
    assert len(src.labels) == 1437 and src.num_classes == 10
    images = load_images(src, np.arange(50), cfg.data)
    assert images.shape == (50, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert images.min() < -0.9 and images.max() > 0.9                     # uses the full range
    test = open_source(cfg.data, train=False)
    assert len(test.labels) == 1797 - 1437
    assert load_images(src, np.arange(3), data_cfg("data.image_size=8").data).shape == (3, 1, 8, 8)


def test_digits_read_from_sklearns_file_equal_load_digits_and_import_no_sklearn():
    from sklearn.datasets import load_digits
    pixels, labels = digits_arrays()
    bunch = load_digits()
    assert np.array_equal(pixels, bunch.images) and np.array_equal(labels, bunch.target)
    code = "import sys; from ddgan.data.datasets import digits_arrays; digits_arrays(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_real_mnist_and_fashion_load_from_a_root(shared_data, name, folder):
    cfg = data_cfg(f"data.name={name}", f"data.root={shared_data}")
    src = open_source(cfg.data)
    assert len(src.labels) == 60000 and np.bincount(src.labels).min() > 5000
    assert load_images(src, np.arange(4), cfg.data).shape == (4, 1, 28, 28)
    assert load_images(src, np.arange(4), data_cfg(f"data.name={name}", f"data.root={shared_data}",
                                                   "data.image_size=32").data).shape == (4, 1, 32, 32)
    assert len(open_source(cfg.data, train=False).labels) == 10000


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path, name):
    with pytest.raises(DataError) as err:
        open_source(data_cfg(f"data.name={name}", f"data.root={tmp_path}").data)
    text = str(err.value)
    assert str(tmp_path) in text and "data.download=true" in text and "\n" not in text


def _fake_cifar(root: Path, per_batch: int) -> None:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def test_cifar10_layout_from_generated_stand_in(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)   # stand-in files have other md5s
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    _fake_cifar(tmp_path, per_batch=20)
    cfg = data_cfg("data.name=cifar10", f"data.root={tmp_path}")
    src = open_source(cfg.data)
    assert len(src.labels) == 100 and src.num_classes == 10
    images = load_images(src, np.arange(5), cfg.data)
    assert images.shape == (5, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    grey = load_images(src, np.arange(5), data_cfg("data.name=cifar10", f"data.root={tmp_path}", "data.channels=1").data)
    assert grey.shape == (5, 1, 32, 32)


def test_image_folder_loads_only_its_own_shard(tmp_path, monkeypatch):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "owl"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (40 + i, 30, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    cfg = data_cfg("data.name=image_folder", f"data.root={tmp_path}", "data.image_size=16",
                   "partition.scheme=classes", "partition.clients=2", "partition.classes=[[0],[1,2]]",
                   "train.batch_size=8")
    shard = load_shard(cfg, 0, torch.device("cpu"), torch.float32)
    assert shard.images.shape[1:] == (3, 16, 16) and set(shard.labels.tolist()) == {0}
    assert opened and all("/cat/" in p for p in opened)            # never another client's files
    with pytest.raises(DataError, match="not a directory"):
        open_source(data_cfg("data.name=image_folder", f"data.root={tmp_path / 'nope'}").data)


def test_shard_sampler_is_resumable_and_covers_each_epoch():
    images = torch.arange(10.0)[:, None]
    a = Shard(images, np.zeros(10), seed=3, client=1)
    first = torch.cat([a.next(4) for _ in range(5)]).flatten()           # 20 samples = 2 epochs
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:].tolist()) == list(range(10))
    b = Shard(images, np.zeros(10), seed=3, client=1)
    b.next(4)
    c = Shard(images, np.zeros(10), seed=3, client=1)
    c.load_state_dict(b.state_dict())
    assert torch.equal(torch.cat([c.next(4) for _ in range(4)]).flatten(), first[4:])
    assert c.epoch == 3


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("norm", D_NORMS)
def test_model_shapes_for_every_size(size, channels, norm):
    spec = ArchSpec(size, channels, width=8, z_dim=12, d_norm=norm)
    G, D = Generator(spec), Discriminator(spec).eval()
    x = G(torch.randn(3, 12))
    assert x.shape == (3, channels, size, size)
    assert x.abs().max() <= 1
    out, feats = D(x, features=True)
    assert out.shape == (3,)
    assert len(feats) >= 1
    assert feats[0].shape[:2] == (3, 8)
    assert torch.equal(D(x), out)


@pytest.mark.parametrize("dataset", ["digits", "mnist"])
@pytest.mark.parametrize("norm", ["default", *[n for n in D_NORMS if n not in BATCH_DEPENDENT_NORMS]])
def test_a_samples_score_depends_on_that_sample_alone(dataset, norm):
    """The rules compare the clients' scores of each sample, so D_k(x_i) must not depend on the
    rest of the batch, in the mode in which D scores G's batch (training mode, frozen_forward).
    float64: float32 convolutions of different batch sizes differ by ~1e-6 on their own."""
    overrides = [f"data.name={dataset}", "train.dtype=float64"] + ([] if norm == "default" else [f"model.d_norm={norm}"])
    cfg = load_config(None, overrides)
    D = build_discriminator(cfg, 0, torch.device("cpu"))
    assert D.training
    size = D.spec.image_size
    x = torch.rand(16, 1, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    others = torch.rand(16, 1, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    in_batch = frozen_forward(D, x)
    alone = torch.cat([frozen_forward(D, x[i:i + 1]) for i in range(16)])
    replaced = frozen_forward(D, torch.cat([x[:1], others[1:]]))
    torch.testing.assert_close(alone, in_batch, rtol=0, atol=1e-6)
    torch.testing.assert_close(replaced[0], in_batch[0], rtol=0, atol=1e-6)


def test_batchnorm_scores_do_depend_on_the_batch():
    """What the test above guards against: with d_norm batch, replacing the other samples moves a score."""
    D = build_discriminator(load_config(None, ["model.d_norm=batch"]), 0, torch.device("cpu"))
    x = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    replaced = torch.cat([x[:1], -x[1:]])
    assert (frozen_forward(D, x)[0] - frozen_forward(D, replaced)[0]).abs() > 1e-3


def test_the_core_and_the_roles_never_import_torch_distributed():
    """Nothing below the runtime communicates; the PyTorch seam alone looks names up there."""
    package = Path(__file__).resolve().parents[1] / "ddgan"
    modules = [p for p in (package / "core").glob("*.py") if p.name != "compat.py"] + [package / "roles.py"]
    assert len(modules) >= 9
    for module in modules:
        tree = ast.parse(module.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any("distributed" in n for n in names), module


def test_the_averaged_generator_follows_its_ramped_decay_and_leaves_g_alone():
    """Each G step moves the average towards G by 1 - min(g_ema, (1 + n) / (10 + n)); the grid is
    drawn from the average; g_ema = 0 keeps none."""
    from ddgan.roles import GeneratorSide
    cfg = load_config(None, ["model.g_width=4", "model.z_dim=8", "data.image_size=8", "train.g_ema=0.5"])
    side = GeneratorSide.build(cfg, torch.device("cpu"), learns_lambda=False)
    expect = [p.detach().clone() for p in side.ema.parameters()]
    for n in range(1, 4):
        drawn = side.draw(4)
        side.step(drawn, loss=drawn.x.square().mean())
        decay = min(0.5, (1 + n) / (10 + n))
        expect = [e * decay + p.detach() * (1 - decay) for e, p in zip(expect, side.G.parameters())]
    for e, avg, p in zip(expect, side.ema.parameters(), side.G.parameters()):
        assert torch.allclose(avg, e, atol=1e-7) and not avg.requires_grad
    assert any(not torch.equal(a, p) for a, p in zip(side.ema.parameters(), side.G.parameters()))
    assert side.state_dict()["ema_updates"] == 3 and "G_ema" in side.state_dict()
    ema_only = torch.func.functional_call(side.G, dict(side.ema.named_parameters()) | dict(side.ema.named_buffers()),
                                          (side.fixed_z,))
    assert torch.allclose(side.samples(), ema_only.detach(), atol=1e-6)
    plain = GeneratorSide.build(load_config(None, ["model.g_width=4", "model.z_dim=8", "data.image_size=8",
                                                   "train.g_ema=0"]), torch.device("cpu"), learns_lambda=False)
    assert plain.ema is None and "G_ema" not in plain.state_dict()
