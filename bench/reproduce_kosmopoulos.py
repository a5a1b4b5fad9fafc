"""Reproduce Kosmopoulos' gossip experiment: MNIST, 5 nodes x 10,000 unique images, per-node SVM
test error on discriminator features, for standalone / uniform / info-gain neighbour selection.

    python bench/reproduce_kosmopoulos.py                  # the full table (~2 h on 2 cores)
    python bench/reproduce_kosmopoulos.py --steps 300
    python bench/reproduce_kosmopoulos.py --quick          # a smoke table in a few minutes

Each cell trains configs/paper/mnist_kosmopoulos_gossip_<select>.yaml with 5 torchrun ranks for
the same number of cycles, then ``ddgan.eval`` trains a linear SVM on every node's discriminator
activations (``--svm-train`` real training images) and reports its error on real test images.
Results are kept per cell in ``--out``; a rerun skips finished cells. The paper's Table 1:
standalone 3.15-3.55 %, uniform 2.71-3.14 %, info-gain 2.22-2.73 % (after up to 80 epochs).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import ROOT, SHARED_DATA, Results  # noqa: E402
from bench.report import publish_table  # noqa: E402

METHODS = {"none": "standalone", "uniform": "uniform", "infogain": "info-gain"}
PAPER = {"none": "3.15-3.55", "uniform": "2.71-3.14", "infogain": "2.22-2.73"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--steps", type=int, default=2000, help="gossip cycles per cell (default 2000)")
    parser.add_argument("--svm-train", type=int, default=10000, help="real training images for each SVM")
    parser.add_argument("--root", type=Path, default=SHARED_DATA, help="dataset root (torchvision layout)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "kosmopoulos")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench" / "classifiers",
                        help="where the domain classifiers are cached")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 40 cycles, 1,000 images per node, small SVM; printed, not stored")
    args = parser.parse_args()
    extra = []
    if args.quick:
        args.steps, args.svm_train = 40, 1000
        extra = ["partition.samples_per_client=1000"]
        args.out = args.out.with_name(args.out.name + "_quick")
    results = Results(args.out / "results.json")
    for select in args.select:
        config = ROOT / "configs" / "paper" / f"mnist_kosmopoulos_gossip_{select}.yaml"
        results.run(f"{select}_{args.steps}", config, args.root, args.steps, extra, 2000, args.svm_train, args.cache)
    lines = [f"Budget: {args.steps} cycles per cell (the paper: up to 80 epochs); linear SVM on each node's "
             f"discriminator activations, {args.svm_train} real training images, 1,000 test images.", "",
             "| method | node 0 | node 1 | node 2 | node 3 | node 4 | mean | paper (Table 1) | "
             "generators' classes covered | train time |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for select in args.select:
        r = results.cells.get(f"{select}_{args.steps}")
        if r is None:
            continue
        errors = [100 * r["svm"]["test_error"][str(k)] for k in range(5)]
        covered = ", ".join(str(m["classes_covered"]) for m in r["generators"].values())
        lines.append(f"| {METHODS[select]} | " + " | ".join(f"{e:.2f} %" for e in errors) +
                     f" | {sum(errors) / 5:.2f} % | {PAPER[select]} % | {covered} | {r['train_seconds']:.0f} s |")
    table = "\n".join(lines)
    publish_table("reproduce_kosmopoulos", "Kosmopoulos reproduction", table, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
