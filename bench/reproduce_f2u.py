"""Reproduce the F2U paper's comparison: MNIST / Fashion-MNIST, Non-OVL / Mod-OVL, 5 clients.

    python bench/reproduce_f2u.py                                   # the full table (~2 h on 2 cores)
    python bench/reproduce_f2u.py --datasets mnist --splits non_ovl   # the headline row (~1 h)
    python bench/reproduce_f2u.py --quick                           # a smoke table in a few minutes

Every cell trains the paper config (configs/paper/<dataset>_<split>_<algo>.yaml) for real with
torchrun, 5 ranks (the centralized baseline: 1 process with all data), every algorithm with the same
step budget: ``--steps`` for MNIST Non-OVL, ``--other-steps`` elsewhere; then runs ``ddgan.eval``.
Results are kept per cell in ``--out`` (JSON); a rerun skips the cells already there. The table
goes to stdout and to BENCHMARKS.md.

The paper's poster reports Inception FID after up to 80 epochs; ours is the Frechet distance in a
small MNIST/Fashion classifier's features after 400-1,500 steps of batch 64 (2-8 passes over one
client's 12,000-image shard), so compare the ordering and the class coverage, not the values.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import ROOT, SHARED_DATA, Results  # noqa: E402
from bench.report import publish_table  # noqa: E402

ALGOS = ["f2u", "f2u_balanced", "f2a", "mdgan", "gman", "centralized"]
POSTER = {("mnist", "non_ovl"): {"mdgan": 38.42, "gman": 67.69, "f2u": 22.19, "f2a": 18.96},
          ("fashion_mnist", "non_ovl"): {"mdgan": 56.09, "gman": 56.79, "f2u": 43.67, "f2a": 37.16}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--splits", nargs="+", default=["non_ovl", "mod_ovl"])
    parser.add_argument("--algos", nargs="+", default=ALGOS, choices=ALGOS)
    parser.add_argument("--steps", type=int, default=1500,
                        help="training steps per MNIST Non-OVL cell, the headline row (default 1500)")
    parser.add_argument("--other-steps", type=int, default=400, help="training steps per other cell (default 400)")
    parser.add_argument("--n", type=int, default=10000, help="generated samples evaluated per cell")
    parser.add_argument("--root", type=Path, default=SHARED_DATA, help="dataset root (torchvision layout)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "f2u", help="runs and results.json")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench" / "classifiers",
                        help="where the domain classifiers are cached")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: MNIST Non-OVL, f2u/f2u_balanced/f2a, 60 steps; printed, not stored")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.splits, args.algos, args.steps, args.n = ["mnist"], ["non_ovl"], ["f2u", "f2u_balanced", "f2a"], 60, 2000
        args.out = args.out.with_name(args.out.name + "_quick")
    results = Results(args.out / "results.json")
    for dataset in args.datasets:
        for split in args.splits:
            for algo in args.algos:
                config = ROOT / "configs" / "paper" / f"{dataset}_{split}_{algo}.yaml"
                steps = budget(args, dataset, split)
                results.run(f"{dataset}_{split}_{algo}_{steps}", config, args.root, steps, [], args.n, 0, args.cache)
    table = render(results, args)
    publish_table("reproduce_f2u", "F2U reproduction", table, args.quick)
    return 0


def budget(args, dataset: str, split: str) -> int:
    return args.steps if (dataset, split) == ("mnist", "non_ovl") or args.quick else args.other_steps


def render(results: Results, args) -> str:
    lines = [f"Budget per cell: the steps column x batch 64 (the paper: up to 80 epochs); {args.n} samples "
             "evaluated. fid_classifier: Frechet distance in the domain classifier's features (lower is better; "
             "not comparable to Inception FID). Covered: classes with >= 1/(2C) of the samples (argmax / "
             "confident only).", "",
             "| dataset | split | algorithm | steps | fid_classifier | covered | covered (confident) | confident fraction | "
             "precision | recall | poster Inception FID | classifier acc. | train time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dataset in args.datasets:
        for split in args.splits:
            for algo in args.algos:
                steps = budget(args, dataset, split)
                r = results.cells.get(f"{dataset}_{split}_{algo}_{steps}")
                if r is None:
                    continue
                m = r["generators"]["0"]
                poster = POSTER.get((dataset, split), {}).get(algo)
                lines.append(f"| {dataset} | {split} | {algo} | {steps} | {m['fid_classifier']:.2f} | {m['classes_covered']} | "
                             f"{m['confident_classes_covered']} | {m['confident_fraction']:.2f} | {m['precision']:.2f} | "
                             f"{m['recall']:.2f} | {poster if poster is not None else '-'} | "
                             f"{r['classifier']['accuracy']:.4f} | {r['train_seconds']:.0f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
