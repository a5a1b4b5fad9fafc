"""Evaluation: metric functions on constructed inputs, the SVM pipeline, and ddgan.eval on a real run."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from ddgan.core.config import load_config
from ddgan.eval import metrics
from ddgan.eval.__main__ import evaluate
from ddgan.eval.classifier import load_or_train, real_split, train
from ddgan.eval.inception import features
from ddgan.eval.metrics import frechet_distance
from ddgan.eval.svm import svm_test_error
from ddgan.roles import build_discriminator
from ddgan.sample import generate, load_generator, newest_checkpoint


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    # N(0, I) vs N(m, 4 I): |m|^2 + tr(I) + tr(4I) - 2 tr(2I) = |m|^2 + 3 + 12 - 12
    m = np.array([1.0, -2.0, 0.5])
    b = m + 2 * rng.normal(size=(20000, 3))
    assert metrics.frechet_distance(a, b) == pytest.approx(np.sum(m ** 2) + 3, rel=0.03)
    # non-commuting covariances: the eigh-based square root against a direct construction
    ca, cb = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, -0.3], [-0.3, 3.0]])
    x = rng.multivariate_normal([0, 0], ca, 200000)
    y = rng.multivariate_normal([0, 0], cb, 200000)
    vals, vecs = np.linalg.eig(ca @ cb)                      # tr sqrt(ca cb) = sum sqrt(eigenvalues)
    expected = np.trace(ca) + np.trace(cb) - 2 * np.sqrt(vals.real).sum()
    assert metrics.frechet_distance(x, y) == pytest.approx(expected, abs=0.03)


def test_coverage_confidence_and_kl():
    one_class = np.tile(np.eye(10)[3] * 0.95 + 0.005, (100, 1))
    hist = metrics.class_histogram(one_class, 10)
    assert metrics.classes_covered(hist) == 1
    fraction, confident = metrics.confident(one_class)
    assert fraction == 1.0 and confident[3] == 1.0
    blurry = np.full((100, 10), 0.1)
    blurry[np.arange(100), np.arange(100) % 10] += 0.05       # argmax spread over 10 classes, never confident
    assert metrics.classes_covered(metrics.class_histogram(blurry, 10)) == 10
    assert metrics.confident(blurry)[0] == 0.0
    uniform = np.full(10, 0.1)
    assert metrics.kl_to_target(uniform, list(range(10))) == pytest.approx(0, abs=1e-9)
    # half the target classes, evenly: KL = log 2
    half = np.where(np.arange(10) < 5, 0.2, 0.0)
    assert metrics.kl_to_target(half, list(range(10))) == pytest.approx(np.log(2), rel=1e-3)
    # mass outside the target is heavily penalised but finite
    assert 5 < metrics.kl_to_target(np.eye(10)[9], [0, 1]) < 20


def test_fid_classifier_scaled_does_not_depend_on_the_scale_of_the_features():
    """Another classifier may spread the same images' features wider: fid_classifier grows with the
    square of that scale, fid_classifier_scaled (in units of the real features' E||f||^2) does not."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(1.0, 1.0, (400, 8)), rng.normal(1.3, 1.2, (400, 8))
    probs, labels = np.full((400, 2), 0.5), np.zeros(400, int)
    one = metrics.summarize(probs, fake, real, [0, 1], labels)
    wider = metrics.summarize(probs, 3 * fake, 3 * real, [0, 1], labels)
    assert wider["fid_classifier"] == pytest.approx(9 * one["fid_classifier"], rel=1e-3)
    assert wider["fid_classifier_scaled"] == pytest.approx(one["fid_classifier_scaled"], rel=1e-3)
    unit = (real ** 2).sum(1).mean()
    assert one["fid_classifier_scaled"] == pytest.approx(1000 * one["fid_classifier"] / unit, rel=1e-3)


def test_precision_recall():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(500, 4))
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    far = real + 100
    assert metrics.precision_recall(real, far) == (0.0, 0.0)
    # a generator that covers only half of the real data: high precision, recall about one half
    half = real[real[:, 0] > 0]
    precision, recall = metrics.precision_recall(real, half)
    assert precision == 1.0 and 0.4 < recall < 0.8


def test_precision_recall_per_class_finds_the_class_drawn_narrowly():
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 50])
    labels = np.repeat([0, 1], 300)
    # class 0 drawn as widely as the real one, class 1 only around one of its images; class 2: no samples
    fake = np.concatenate([real[:300] + 0.01, real[300] + 0.01 * rng.normal(size=(300, 4))])
    precision, recall = metrics.precision_recall_per_class(real, labels, fake, labels, n_classes=3)
    assert recall[0] > 0.95 and recall[1] < 0.05 and recall[2] is None
    assert precision[0] > 0.95 and precision[1] == 1.0 and precision[2] is None
    overall = metrics.precision_recall(real, fake)[1]
    assert 0.4 < overall < 0.6          # the overall recall blurs the two classes into one number


@pytest.fixture(scope="session")
def digits_classifier(digits_classifier_cache):
    cfg = load_config(None, [])
    return load_or_train(cfg.data, digits_classifier_cache, log=lambda *_: pytest.fail("not the shared one")), cfg


def test_digits_classifier_is_accurate_and_cached(digits_classifier):
    clf, cfg = digits_classifier
    assert clf.accuracy >= 0.95
    again = load_or_train(cfg.data, clf.path.parent, log=lambda *_: pytest.fail("retrained a cached classifier"))
    assert again.accuracy == clf.accuracy
    x, y = real_split(cfg.data, train=False)
    probs, features = clf.run(x)
    assert features.shape == (len(x), 128)
    assert (probs.argmax(1) == y).mean() == pytest.approx(clf.accuracy)


def test_the_classifier_comes_out_the_same_whatever_the_thread_count():
    """fid_classifier is only comparable under one classifier: two machines with different core
    counts must train the same one (on 2 threads the weights used to differ from 1 thread's)."""
    cfg = load_config(None, [])
    weights = []
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            weights.append(train(cfg.data, epochs=2, log=lambda *_: None).model.state_dict())
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_svm_on_a_discriminator_beats_chance_and_a_trained_one_is_read(digits_classifier):
    _, cfg = digits_classifier
    train_x, train_y = real_split(cfg.data, train=True, limit=600)
    test_x, test_y = real_split(cfg.data, train=False, limit=300)
    D = build_discriminator(cfg, 0, torch.device("cpu"), 16)
    error = svm_test_error(D, train_x, train_y, test_x, test_y)
    assert error < 0.5                      # even random conv features separate digits far above chance (0.9)


@pytest.mark.dist
def test_eval_cli_on_a_two_rank_run_writes_eval_json_and_report(tmp_path, digits_classifier):
    clf, _ = digits_classifier
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ddgan.train",
           "partition.clients=2", "partition.scheme=classes", "partition.classes=[[0,1,2],[3,4]]",
           "model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=16", "algo.name=f2u",
           "train.steps=30", "run.log_every=10", f"run.dir={run}"]
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).returncode == 0
    proc = subprocess.run([sys.executable, "-m", "ddgan.eval", "--run", str(run), "--n", "500", "--cache",
                           str(clf.path.parent), "--svm-train", "300", "--svm-test", "200"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TORCH_HOME": str(tmp_path / "th")})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run / "eval.json").read_text())
    m = result["generators"]["0"]
    assert list(result["generators"]) == ["0"]                # one generator in a forgiver-first run
    assert m["target_classes"] == [0, 1, 2, 3, 4]
    assert m["n"] == 500 and sum(m["class_histogram"]) == pytest.approx(1, abs=1e-3)
    assert m["fid_classifier"] > 0 and 0 <= m["precision"] <= 1
    assert len(m["recall_per_class"]) == len(m["precision_per_class"]) == len(m["class_histogram"])
    assert all(r is None or 0 <= r <= 1 for r in m["recall_per_class"])
    assert set(result["svm"]["test_error"]) == {"0", "1"}
    assert result["inception_fid"]["value"] is None             # the CPU: only --inception on computes it
    # which classifier scored it: the cached file's hash (bench tables flag rows scored by different ones)
    assert result["classifier"]["sha256"] == clf.sha256 == hashlib.sha256(clf.path.read_bytes()).hexdigest()
    assert result["inception_fid"]["reason"].startswith("not computed: --inception auto skips it on the CPU")
    text = (run / "report.md").read_text()
    assert "fid_classifier" in text and "eval/classes_node_0.png" in text and "| 0: recall |" in text
    assert (run / "eval" / "losses.png").exists() and (run / "eval" / "samples_node_0.png").exists()
    assert "generator 0:" in proc.stdout and "discriminator 1: SVM test error" in proc.stdout


    # Inception FID through the very code path eval uses, with a tiny stand-in network
    class StandIn(torch.nn.Module):
        """InceptionV3's interface: a list whose first item is N x D x 1 x 1 pool features."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3)

        def forward(self, x):
            return [torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 1)]

    net = StandIn()
    fid = evaluate(run, n=300, cache=clf.path.parent, svm_train=0, inception_network=net, log=lambda *_: None)
    fake = generate(load_generator(newest_checkpoint(run))[0], 300, seed=0)
    real, _ = real_split(load_config(run / "config.yaml").data, train=True, limit=300, seed=0)
    expected = frechet_distance(features(net, fake), features(net, real))
    assert fid["inception_fid"] == {"value": {"0": pytest.approx(expected, abs=1e-3)}, "samples": 300,
                                    "reference": "300 training images", "network": "stand-in"}
    assert expected > 0


def test_eval_of_a_directory_without_checkpoints_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ddgan.eval", "--run", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "no complete checkpoint" in proc.stderr
