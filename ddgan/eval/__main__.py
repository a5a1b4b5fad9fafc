"""Evaluate a run's newest (or a given) checkpoint: ``python -m ddgan.eval --run DIR``.

Writes ``eval.json`` and ``report.md`` into the run directory, figures and sample grids into
``DIR/eval/``. Per generator (rank 0's for forgiver-first runs, every node's for gossip and
fedavg): class histogram by the domain classifier, classes covered (all and confident only), the
confident fraction, KL to the clients' classes, ``fid_classifier`` and precision/recall against
real test images. Per discriminator: the test error of a linear SVM on its activations. Nothing
is downloaded; the classifier trains from ``data.root`` once and is cached.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ddgan.cli import run_cli
from ddgan.core.algorithms import ALGORITHMS
from ddgan.core.config import config_from_dict
from ddgan.core.errors import CheckpointError
from ddgan.core.layout import Layout
from ddgan.data.datasets import open_source
from ddgan.data.shard import client_shards
from ddgan.eval import classifier, inception, metrics, plots, report
from ddgan.nodes.local_gan import saved_node
from ddgan.roles import build_discriminator
from ddgan.runtime.checkpoint import load_rank_file, read_manifest
from ddgan.runtime.rundir import read_metrics, save_grid
from ddgan.sample import generate, load_generator, newest_checkpoint

DEFAULT_CACHE = Path(os.environ.get("DDGAN_CACHE", Path.home() / ".cache" / "ddgan")) / "classifiers"


def target_classes(cfg) -> list[int]:
    """The union of the classes the clients hold (what the generator should cover)."""
    source, shards = client_shards(cfg, open_source(cfg.data, train=True))
    return sorted({int(c) for idx in shards for c in np.unique(source.labels[idx])})


def saved_discriminator(where: Path, k: int, manifest: dict, per_node: bool) -> dict:
    """Client (node) ``k``'s D weights in checkpoint ``where``, from the file of the rank that hosted
    it; a forgiver-first rank file written before co-hosting holds one ``client``."""
    if per_node:
        return saved_node(where, k, manifest)["client"]["D"]
    saved = load_rank_file(where, Layout.of(config_from_dict(manifest["config"])).rank_of(k), manifest)
    return (saved["clients"][str(k)] if "clients" in saved else saved["client"])["D"]


def evaluate(run: Path, where: Path | None = None, n: int = 10000, cache: Path = DEFAULT_CACHE, seed: int = 0,
             svm_train: int = 2000, svm_test: int = 1000, log=print, inception_weights: str | None = None,
             inception_network=None, classes: list[int] | None = None, svm_scale: bool = True,
             device: str = "auto", raw: bool = False, use_inception: str = "auto") -> dict:
    """``inception_network``: a stand-in for the FID Inception network (tests); by default it is
    loaded from ``inception_weights`` (else the run's eval.inception_weights, else torch's hub cache).
    ``classes``: also report fid_classifier on these classes alone (``fid_classifier_classes``).
    ``use_inception``: on, off, or auto: on where the networks run on a GPU (Inception costs
    a 299 x 299 InceptionV3 pass per image, slow on a CPU, and the reference statistics as many
    images again, once).
    ``raw``: score the trained generator itself, not its average (train.g_ema).
    ``device``: where the networks run (auto: the GPU where there is one); noise and subsets are drawn
    on the CPU, so a GPU evaluation scores the same samples as a CPU one."""
    run = Path(run)
    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          "cpu" if device == "auto" else device)
    where = Path(where) if where else newest_checkpoint(run)
    manifest = read_manifest(where)
    cfg = config_from_dict(manifest["config"], source=str(where / "manifest.json"))
    world = manifest["world_size"]
    out = run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    clf = classifier.load_or_train(cfg.data, cache, seed, log=log)
    clf.model.to(device)
    target = target_classes(cfg)
    real_x, real_y = classifier.real_split(cfg.data, train=False, limit=n, seed=seed)
    _, real_features = clf.run(real_x)

    per_node = ALGORITHMS[cfg.algo.name].trainer != "forgiver"
    nodes = range(cfg.partition.clients) if per_node else [0]
    if inception_network is not None:
        network, name, why_not = inception_network, "", ""
    elif use_inception == "on" or (use_inception == "auto" and device.type == "cuda"):
        network, name, why_not = inception.load_network(inception_weights or cfg.eval.inception_weights)
    else:
        network, name, why_not = None, "", (f"not computed: --inception {use_inception}" + (
            " skips it on the CPU (slow there; --inception on computes it)" if use_inception == "auto" else ""))
    if network is not None:
        network.to(device)
        # the reference: n seeded training images, their statistics cached once (a stand-in network: never)
        ref_x, _ = classifier.real_split(cfg.data, train=True, limit=n, seed=seed)
        key = f"{name}_{classifier.cache_name(cfg.data, seed)}_train{len(ref_x)}"
        reference = inception.reference_stats(network, key, ref_x, Path(cache).parent / "inception" if name else None)
    generators, grids, fids = {}, {}, {}
    for node in nodes:
        fake = generate(load_generator(where, node, raw)[0].to(device), n, seed=seed)
        probs, features = clf.run(fake)
        generators[str(node)] = metrics.summarize(probs, features, real_features, target, real_y)
        if classes:
            fid = metrics.fid_on_classes(probs, features, real_features, real_y, classes)
            generators[str(node)].update(classes=sorted(classes), fid_classifier_classes=fid and round(fid, 4))
        if network is not None:
            fids[str(node)] = round(inception.inception_fid(network, fake, reference), 4)
        grids[node] = out / f"samples_node_{node}.png"
        save_grid(fake[:64], grids[node])
    result = {"run": str(run), "checkpoint": str(where), "step": manifest["step"], "world_size": world,
              "device": str(device), "raw_generator": raw,
              "algo": cfg.algo.name, "dataset": cfg.data.name,
              "classifier": {"accuracy": clf.accuracy, "path": str(clf.path), "n_classes": clf.n_classes,
                             "sha256": clf.sha256},
              "inception_fid": {"value": fids, "samples": n, "reference": f"{len(ref_x)} training images",
                                "network": name or "stand-in"} if network is not None else
              {"value": None, "reason": why_not},
              "generators": generators}
    if svm_train > 0:
        from ddgan.eval import (
            svm,  # scikit-learn: 2.5 s of CPU that an evaluation without the SVM skips
        )

        train_x, train_y = classifier.real_split(cfg.data, train=True, limit=svm_train, seed=seed)
        test_x, test_y = classifier.real_split(cfg.data, train=False, limit=svm_test, seed=seed)
        errors = {}
        for k in range(cfg.partition.clients):
            D = build_discriminator(cfg, k, device)
            D.load_state_dict(saved_discriminator(where, k, manifest, per_node))
            errors[str(k)] = round(svm.svm_test_error(D, train_x, train_y, test_x, test_y, seed, svm_scale), 5)
        result["svm"] = {"train": len(train_y), "test": len(test_y), "standardised": svm_scale, "test_error": errors}
    figures = plots.training_curves(read_metrics(run), out) if (run / "metrics.jsonl").exists() else []
    for node, m in generators.items():
        figures.append(plots.class_histogram(m["class_histogram"], m["confident_histogram"], target,
                                             f"generator {node}: classes of {m['n']} samples",
                                             out / f"classes_node_{node}.png"))
    result["seconds"] = round(time.perf_counter() - start, 1)
    json_path, md_path = report.write(run, result, figures, grids)
    log(f"[eval] wrote {json_path} and {md_path} ({result['seconds']} s)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ddgan.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="run directory")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory instead of the newest")
    parser.add_argument("--n", type=int, default=10000, help="generated samples per generator (default 10000)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where the domain classifiers are cached (default {DEFAULT_CACHE}; $DDGAN_CACHE)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise, subsets and classifier (default 0)")
    parser.add_argument("--svm-train", type=int, default=2000,
                        help="training images for the SVM on D's features; 0 skips the SVM (default 2000)")
    parser.add_argument("--svm-test", type=int, default=1000, help="test images for the SVM (default 1000)")
    parser.add_argument("--svm-no-scale", action="store_true", help="do not standardise the SVM's features")
    parser.add_argument("--classes", type=int, nargs="+",
                        help="also report fid_classifier on these classes alone (e.g. the honest clients')")
    parser.add_argument("--inception-weights", type=Path,
                        help=f"the FID Inception weights ({inception.WEIGHTS_FILE}); default: the run's "
                             f"eval.inception_weights, else torch's hub cache. Never downloaded")
    parser.add_argument("--inception", default="auto", choices=["auto", "on", "off"],
                        help="Inception FID: auto (default) computes it where the networks run on a GPU; on the "
                             "CPU, where it is slow (an InceptionV3 pass per image), only --inception on does")
    parser.add_argument("--raw", action="store_true",
                        help="score the trained generator itself, not its average (train.g_ema)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the networks run (default auto: the GPU where there is one)")

    def body(args) -> int:
        if not args.run.is_dir():
            raise CheckpointError(f"--run {args.run}: no such run directory")
        r = evaluate(args.run, args.checkpoint, args.n, args.cache, args.seed, args.svm_train, args.svm_test,
                     inception_weights=args.inception_weights, classes=args.classes, svm_scale=not args.svm_no_scale,
                     device=args.device, raw=args.raw, use_inception=args.inception)
        for node, m in r["generators"].items():
            print(f"generator {node}: {m['classes_covered']} classes covered ({m['confident_classes_covered']} "
                  f"confidently, {100 * m['confident_fraction']:.1f} % confident), fid_classifier "
                  f"{m['fid_classifier']:.3f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}")
        print(f"inception_fid: {r['inception_fid']['value'] or r['inception_fid']['reason']}")
        for rank, err in r.get("svm", {}).get("test_error", {}).items():
            print(f"discriminator {rank}: SVM test error {100 * err:.2f} %")
        return 0

    return run_cli(lambda: parser.parse_args(argv), body)


if __name__ == "__main__":
    sys.exit(main())
