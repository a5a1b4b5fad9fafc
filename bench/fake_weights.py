"""What each discriminator learns from: the rule's weights on D_k's fake term against uniform ones, MNIST Non-OVL.

    python bench/fake_weights.py                          # F2A, seed 1, to the budget (hours on 2 cores)
    python bench/fake_weights.py --steps 6000             # a shorter probe; the same command with more steps
                                                          # continues it instead of starting over
    python bench/fake_weights.py --rules f2a f2u_balanced --seeds 0 1
    python bench/fake_weights.py --steps 6000 --inception-at 6000   # and score that checkpoint with Inception FID
    python bench/fake_weights.py --report                 # only rebuild the table

Each cell is a curve cell of bench/convergence.py (the paper config, the default D, checkpoints
every ``--every`` steps, each scored on 10,000 samples of the averaged generator) trained with
``algo.fake_weights=rule``. Its row stands beside the same rule and seed's uniform curve
(bench/convergence.py's cell: every setting but this one the same, so the same data order and
initial weights) and beside the IID control (F2A with every client holding every class), which
tells how wide the classes can be drawn when no shard is partial. Judged by recall (the classifier's
precision / recall of the samples against real test images): on Non-OVL F2A's recall stays
about 0.2 below the IID control's and the centralized GAN's at every checkpoint (BENCHMARKS.md,
"Convergence"); the question is whether D_k learning from the samples the rule gives it closes that.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import Cell, Results, table_arguments  # noqa: E402
from bench.convergence import (  # noqa: E402
    BUDGET,
    EVERY,
    Scoring,
    class_recall_table,
    curve_cell,
    inception_table,
    score,
    scored_by,
    shorter_curve,
)
from bench.report import publish_table  # noqa: E402
from bench.yardstick import mixed_note  # noqa: E402

RULES = ["f2a", "f2u_balanced"]
DATASET = "mnist"


def weighted(cell: Cell) -> Cell:
    """``cell`` with the rule's weights on every client's fake term."""
    return replace(cell, variant=f"{cell.variant}-fakes-rule", extra=(*cell.extra, "algo.fake_weights=rule"))


def rows(rule: str, seed: int, steps: int, every: int) -> dict[str, Cell]:
    uniform = curve_cell(DATASET, rule, every, False, seed)
    return {"uniform": uniform, "rule": weighted(curve_cell(DATASET, rule, every, False, seed, steps)),
            "IID control (f2a, seed 0)": curve_cell(DATASET, "f2a", every, False, 0, split="iid"),
            "centralized (seed 0)": curve_cell(DATASET, "centralized", every, False, 0)}


def curve_of(results: Results, cell: Cell, root: Path) -> dict:
    return (results.get(cell, root) or {}).get("curve") or shorter_curve(results, cell, root)


def table(results: Results, rule: str, seed: int, args) -> str:
    cells = rows(rule, seed, args.steps, args.every)
    curves = {name: curve_of(results, cell, args.root) for name, cell in cells.items()}
    reach = max([int(s) for s in curves["rule"]] or [args.steps])
    if curves["rule"] and reach < args.steps:      # a shorter run of the same settings: its own cell
        cells["rule"] = replace(cells["rule"], steps=reach)
    steps = range(args.every, reach + 1, args.every)

    def entry(curve: dict, step: int) -> str:
        p = curve.get(str(step))
        if not p:
            return "not run" if not curve else "-"
        return f"{p['fid_classifier']:.1f}" + (f", {p['precision']:.2f} / {p['recall']:.2f}" if p.get("recall") else "")
    lines = [f"| {rule}, seed {seed}, fake weights | " + " | ".join(f"{s:,}" for s in steps) + " |",
             "| --- |" + " --- |" * len(steps)]
    lines += [f"| {name} | " + " | ".join(entry(curves[name], s) for s in steps) + " |" for name in cells]
    at_end = {f"{name}, {cell.steps:,} steps": cell for name, cell in cells.items() if str(cell.steps) in curves[name]}
    non_ovl = {name: cell for name, cell in cells.items() if cell.split == "non_ovl"}   # the poster's column fits these
    mixed = mixed_note(DATASET, scored_by(results, cells, args.root))      # uniform and rule on other machines
    return ("\n".join(lines) + (f"\n\n{mixed}" if mixed else "") + inception_table(results, non_ovl, args, "non_ovl")
            + class_recall_table(results, at_end, args))


INTRO = ("Cells: fid_classifier, then the classifier's precision / recall of {n:,} samples of the averaged generator "
         "against real test images, per checkpoint; \"uniform\" is the rule's curve in the Convergence section (the "
         "same seed and settings, every fake sample counting alike in D_k's loss), \"rule\" the same run with "
         "`algo.fake_weights=rule` (each fake sample weighted by the rule's weight of client k on it). The IID control "
         "is F2A with every client holding every class. A checkpoint scored before precision / recall were kept "
         "shows fid_classifier alone. Recall within each class is at each run's last checkpoint. (2026-12-05, a "
         "first form since replaced: each client's weights normalised to "
         "sum 1, not over its target share. F2A, seed 1, 6,000 steps: 6 classes (6 confidently), fid_classifier "
         "207.6 at 1,500 and 174.5 at 6,000, precision / recall 0.56 / 0.73; clients 0 and 3 (digits 0, 1, 6, 7) "
         "fell to 2 % and 7 % of the weight. The client with the smallest share became the harshest judge of the "
         "few samples it got, and lost them.)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    table_arguments(parser)
    parser.add_argument("--steps", type=int, default=BUDGET, help=f"steps per cell (default {BUDGET}); a longer "
                        "run of the same settings continues a shorter one")
    parser.add_argument("--every", type=int, default=EVERY, help=f"steps between scored checkpoints (default {EVERY})")
    parser.add_argument("--n", type=int, default=10000, help="samples per scored checkpoint (default 10000)")
    parser.add_argument("--rules", nargs="+", default=["f2a"], choices=RULES, help="the rules to train (default f2a)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="the seeds to train (default 1: its uniform curve has precision / recall at every "
                             "checkpoint)")
    parser.add_argument("--inception-at", type=int, nargs="+", default=[], metavar="STEP",
                        help="Inception FID at these checkpoints too, scored again where it is missing (slow on a CPU: "
                             "--n samples through the network per checkpoint, and once 10,000 training images)")
    args = parser.parse_args()
    args.quick = False      # what Results.of and the tables read: this script has no smoke run
    results = Results.of(args)
    if not args.report:
        for rule in args.rules:
            for seed in args.seeds:
                score(results, rows(rule, seed, args.steps, args.every)["rule"],
                      Scoring(args.root, args.n, inception_at=tuple(args.inception_at)))
    stored = sorted({(rule, seed) for rule in RULES for seed in range(5)
                     if curve_of(results, rows(rule, seed, args.steps, args.every)["rule"], args.root)}
                    | {(rule, seed) for rule in args.rules for seed in args.seeds})
    sections = [table(results, rule, seed, args) for rule, seed in stored]
    publish_table("fake_weights", "What each discriminator learns from: the rule's weights on the fake term",
                  "\n\n".join([INTRO.format(n=args.n), *sections]), False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
