"""Every baseline at its best: a small measured sweep of MD-GAN's and GMAN*'s settings on MNIST Non-OVL.

    python bench/baselines.py                       # every cell, resumable (20 minutes a sweep cell on 2 cores)
    python bench/baselines.py --only '*swap_every10_s0*' # one cell
    python bench/baselines.py --seeds 1 --only 'fashion_mnist_*swap_every10*'  # a second seed at the budget
    python bench/baselines.py --report              # only rebuild the table
    python bench/baselines.py --quick               # a smoke run on digits, printed only

The F2U reproduction trains every rule with one architecture and one set of settings (the paper
configs: spectral-norm discriminators, lr 4e-4 for G and D, MD-GAN swapping every 100 steps), and
there MD-GAN and GMAN* collapse. Here each of them varies one setting at a time, seed 0, at the
table's budget (1,500 steps), scored like the table's cells (``ddgan.eval``, 10,000 samples of
the averaged generator):

* MD-GAN's swap interval. Hardy et al. swap the discriminators between workers after local epochs;
  190 steps is about one pass over a client's Non-OVL shard (11,800-12,700 images at batch 64),
  and more frequent swaps (10, 25) let each discriminator see every client's classes sooner;
* the discriminators' learning rate (1e-4 against 4e-4);
* the discriminators' normalisation: batchnorm is sound for these two rules, which average the
  clients' losses and never compare their scores per sample (unlike F2U and F2A).

The setting with the lowest fid_classifier per rule is then trained with seed 1 as well. The base
cells are bench/forgiveness.py's (and the F2U table's) MNIST Non-OVL cells, shared through
bench/results.json.

Then each rule's best setting is trained at the F2U table's converged budget (15,000 steps, Non-OVL,
MNIST and Fashion-MNIST, seed 0, about 1 h 45 min a cell with its Inception FID; ``--seeds 1`` adds a
second seed where a claim rests on one), scored like the table's Non-OVL cells (bench/convergence.py's
curves), beside the table's own paper-config cells: a setting chosen in 1,500 steps on MNIST need not
hold at the budget or on the other dataset. Where it did not, AT_BUDGET names the settings tried at
the budget on that dataset alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import (  # noqa: E402
    QUICK,
    QUICK_CLIENTS,
    Cell,
    Results,
    generator_metrics,
    mean_spread,
    table_arguments,
)
from bench.convergence import score  # noqa: E402
from bench.forgiveness import DEFAULT_NORM, rule_cell  # noqa: E402
from bench.poster import POSTER  # noqa: E402
from bench.report import publish_table  # noqa: E402
from bench.reproduce_f2u import COLLAPSED_RECALL, DATASETS, all_collapsed, curve_scoring, inception  # noqa: E402
from bench.reproduce_f2u import cells as table_cells  # noqa: E402
from bench.yardstick import mixed_notes  # noqa: E402
from ddgan.eval.metrics import missed_classes  # noqa: E402

STEPS = 1500
TARGET_CLASSES = 8        # a baseline at its best is to be not collapsed and draw >= 8 classes by argmax
# rule -> (label, d_norm, overrides): the paper config's setting first
SWEEP = {
    "mdgan": [("swap every 100 (paper configs)", DEFAULT_NORM, ()),
              ("swap every 10", DEFAULT_NORM, ("algo.swap_every=10",)),
              ("swap every 25", DEFAULT_NORM, ("algo.swap_every=25",)),
              ("swap every 190 (one local epoch)", DEFAULT_NORM, ("algo.swap_every=190",)),
              ("lr_d 1e-4", DEFAULT_NORM, ("train.lr_d=0.0001",)),
              ("batchnorm Ds", "batch", ())],
    "gman": [("paper configs", DEFAULT_NORM, ()),
             ("lr_d 1e-4", DEFAULT_NORM, ("train.lr_d=0.0001",)),
             ("batchnorm Ds", "batch", ())],
}


# (dataset, rule) -> settings trained only at the budget, where the sweep's choice did not hold there:
# GMAN*'s batchnorm Ds win outright on Fashion-MNIST (their batch statistics tell an all-fake batch
# from a real one) and its spectral-norm Ds learn too slowly; layernorm normalises each sample alone
# and leaves the Ds unconstrained. There GMAN*'s learned lambda sinks to 0 (the plain mean); held at 3
# (GMAN with a fixed lambda), the softmax over the clients' batch losses weighs most the client whose
# classes G's batch holds least, which pulls G toward the classes it leaves out.
AT_BUDGET = {("fashion_mnist", "gman"): [("layernorm Ds", "layer", ()),
                                         ("layernorm Ds, lambda held at 3", "layer",
                                          ("algo.learn_lambda=false", "algo.lambda_init=3"))]}


def settings(rule: str, quick: bool) -> list[tuple[str, str, tuple[str, ...]]]:
    """The rule's settings to train (a --quick smoke run: the first two, the plumbing only)."""
    return SWEEP[rule][:2] if quick else SWEEP[rule]


def variant(overrides: tuple[str, ...]) -> str:
    """A cell-name label for the overrides: algo.swap_every=10 -> swap_every10."""
    return "-".join(o.split(".", 1)[1].replace("=", "") for o in overrides)


def cell(rule: str, norm: str, overrides: tuple[str, ...], seed: int, quick: bool) -> Cell:
    if quick:
        return Cell("digits", "classes", rule, norm, seed, 20, variant(overrides), (*QUICK, *QUICK_CLIENTS, *overrides))
    base = rule_cell("mnist", rule, norm, seed, STEPS)
    if not overrides:
        return base
    return Cell(base.dataset, base.split, base.rule, base.norm, seed, STEPS, variant(overrides), (*base.extra, *overrides))


def best(results: Results, rule: str, root: Path, quick: bool) -> tuple[str, str, tuple[str, ...]] | None:
    """The rule's setting with the lowest seed-0 fid_classifier, once every seed-0 cell is stored."""
    scored = [(results.get(cell(rule, norm, o, 0, quick), root), (label, norm, o)) for label, norm, o in settings(rule, quick)]
    if any(r is None for r, _ in scored):
        return None
    return min(scored, key=lambda item: generator_metrics(item[0])["fid_classifier"])[1]


def measured(m: list[dict]) -> list[str]:
    """A row's seeds and its generator metrics, mean (range) over them."""
    return [str(len(m)), *(mean_spread([x[key] for x in m], fmt) for key, fmt in (
        ("fid_classifier", ".1f"), ("classes_covered", ".1f"), ("confident_classes_covered", ".1f"),
        ("precision", ".2f"), ("recall", ".2f")))]


def best_on_curve(result: dict) -> str:
    """A curve cell's checkpoint of lowest fid_classifier: whether a collapse at the budget came late or from the start."""
    curve = result.get("curve") or {}
    if not curve:
        return "no curve"
    step, p = min(curve.items(), key=lambda item: item[1]["fid_classifier"])
    return (f"step {int(step):,}: fid_classifier {p['fid_classifier']:.1f}, {p['classes']} classes, "
            f"recall {p['recall']:.2f}")


def thin_classes(result: dict) -> str:
    """Where a generator that is not collapsed falls short of TARGET_CLASSES: the classes it draws too
    rarely to count, whether it draws them at all (recall within the class), and, for GMAN*, lambda at
    the end (0: the plain mean of the clients' losses, which rewards what every client half-accepts)."""
    m = generator_metrics(result)
    hist, recall = m["class_histogram"], m["recall_per_class"]
    thin = missed_classes(hist, range(len(hist)))
    text = (f"classes {', '.join(map(str, thin))} under the 1/(2C) line ({', '.join(f'{hist[c]:.3f}' for c in thin)} of "
            f"the samples), recall within them {', '.join('-' if recall[c] is None else f'{recall[c]:.2f}' for c in thin)}; "
            f"{100 * m['confident_fraction']:.1f} % of the samples confident")
    return text + (f"; lambda ends at {result['lambda_end']:.2f}" if result["algo"] == "gman" else "")


BUDGET_SEEDS = (0, 1)     # a setting at the budget: seed 0, run or not; seed 1 where it was trained


def budget_cell(dataset: str, rule: str, norm: str, overrides: tuple[str, ...], quick: bool, seed: int = 0) -> Cell:
    """A setting's Non-OVL curve at the F2U table's budget (a --quick run: the sweep's own cell)."""
    base = table_cells("digits" if quick else dataset, "non_ovl", rule, quick)[0]
    if (norm, overrides) == (base.norm, ()):
        return dataclasses.replace(base, seed=seed)
    label = "-".join(filter(None, (variant(overrides), base.variant)))
    return Cell(base.dataset, base.split, rule, norm, seed, base.steps, label, (*base.extra, *overrides))


def budget_cells(results: Results, root: Path, dataset: str, rule: str, norm: str, overrides: tuple[str, ...],
                 quick: bool) -> list[Cell]:
    """A setting's row at the budget: its seed-0 cell, run or not, and its other seeds that are stored."""
    made = [budget_cell(dataset, rule, norm, overrides, quick, seed) for seed in BUDGET_SEEDS]
    return [c for c in made if c.seed == 0 or results.get(c, root) is not None]


def budget_table(results: Results, root: Path, quick: bool) -> tuple[str, list[str], list[dict]]:
    """Each rule's paper configs (the F2U table's cells) beside its best setting at the budget."""
    lines = ["| dataset | rule | setting | seeds | fid_classifier | classes (argmax) | classes (confident) | precision | "
             "recall | Inception FID | poster Inception FID |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    missing, scored, notes = [], [], []
    chosen = {rule: best(results, rule, root, quick) for rule in SWEEP}
    for dataset in ("digits",) if quick else DATASETS:
        for rule in SWEEP:
            paper = table_cells("digits" if quick else dataset, "non_ovl", rule, quick)
            rows = [(SWEEP[rule][0][0], paper)]
            if chosen[rule] not in (None, SWEEP[rule][0]):
                label, norm, overrides = chosen[rule]
                rows.append((label, budget_cells(results, root, dataset, rule, norm, overrides, quick)))
            tried = [(label, budget_cells(results, root, dataset, rule, norm, overrides, quick))
                     for label, norm, overrides in AT_BUDGET.get((dataset, rule), [])]
            rows += tried
            for label, cells in rows:
                stored = {c: r for c in cells if (r := results.get(c, root)) is not None}
                if cells is not paper:          # the table's own cells are bench/reproduce_f2u.py's to train
                    missing += [c.name for c in cells if c not in stored]
                done = list(stored.values())
                scored += done
                head = f"| {cells[0].dataset} | {rule} | {label} | "
                poster = POSTER.get((cells[0].dataset, "non_ovl"), {}).get(rule, "-")
                if not done:
                    lines.append(head + "not run |" + " |" * 6 + f" {poster} |")
                    continue
                m = [generator_metrics(r) for r in done]
                fid = [v for r in done if (v := inception(r)) is not None]
                lines.append(head + " | ".join([*measured(m), mean_spread(fid, ".2f") if fid else "not computed", str(poster)])
                             + " |")
                best_points = "; ".join(f"seed {c.seed}, {best_on_curve(r)}" for c, r in stored.items())
                facts, collapsed = [], all_collapsed(done)
                if collapsed:
                    facts.append(f"collapsed (recall < {COLLAPSED_RECALL} on every seed); its best checkpoint on the curve: "
                                 f"{best_points}.")
                elif (label, cells) in tried:
                    facts.append(f"its best checkpoint on the curve: {best_points}.")
                if not collapsed and min(x["classes_covered"] for x in m) < TARGET_CLASSES:
                    short = (f"under {TARGET_CLASSES} classes by argmax: "
                             + "; ".join(f"seed {c.seed}, {thin_classes(r)}" for c, r in stored.items()) + ".")
                    facts.append(short[0].upper() + short[1:] if facts else short)
                if facts:
                    alone = " (tried at the budget alone)" if (label, cells) in tried else ""
                    notes.append(f"- {cells[0].dataset} {rule}, {label}{alone}: {' '.join(facts)}")
    steps = table_cells("digits" if quick else "mnist", "non_ovl", "mdgan", quick)[0].steps
    text = (f"\n\n**At the converged budget** ({steps:,} steps, Non-OVL): the F2U table's paper-config cells (its seeds) "
            "beside each rule's best setting above and the settings tried at the budget alone, seed 0 (and seed 1 where "
            "stored).\n\n" + "\n".join(lines))
    return text + ("\n\n" + "\n".join(notes) if notes else ""), missing, scored


def table(results: Results, root: Path, quick: bool) -> str:
    lines = ["| rule | setting | d_norm | seeds | fid_classifier | classes (argmax) | classes (confident) | precision | recall |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes, missing, scored = [], [], []
    for rule in SWEEP:
        chosen = best(results, rule, root, quick)
        for label, norm, overrides in settings(rule, quick):
            cells = [cell(rule, norm, overrides, s, quick) for s in ((0, 1) if chosen == (label, norm, overrides) else (0,))]
            done = [results.get(c, root) for c in cells]
            missing += [c.name for c, r in zip(cells, done) if r is None]
            m = [generator_metrics(r) for r in done if r is not None]
            scored += [r for r in done if r is not None]
            mark = "**" if chosen == (label, norm, overrides) else ""
            head = f"| {rule} | {mark}{label}{mark} | {norm} | "
            if not m:
                lines.append(head + "not run |" + " |" * 5)
                continue
            lines.append(head + " | ".join(measured(m)) + " |")
            if mark:
                notes.append(f"- {rule}: best setting {label} (d_norm {norm}), mean fid_classifier "
                             f"{statistics.mean(x['fid_classifier'] for x in m):.1f} over {len(m)} seed(s), "
                             f"at least {min(x['classes_covered'] for x in m)} classes by argmax"
                             + ("; recall 0 on a seed: still collapsed." if any(x["recall"] == 0 for x in m) else "."))
    data = "digits (--quick), 20 steps" if quick else f"MNIST Non-OVL, {STEPS:,} steps"
    text = (f"{data}, seed 0 per setting (the best per rule, bold: seeds 0 and 1); cells of "
            "bench/results.json, 10,000 samples of the averaged generator.\n\n" + "\n".join(lines))
    at_budget, budget_missing, budget_scored = budget_table(results, root, quick)
    text += ("\n\n" + "\n".join(notes) if notes else "") + at_budget
    missing, scored = missing + budget_missing, scored + budget_scored
    if missing:
        text += f"\n\nNot run yet: {', '.join(missing)} (`python bench/baselines.py`, resumable)."
    # the best setting is chosen across cells: a change of classifier among them could choose it
    notes = mixed_notes(scored)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    table_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run on digits (20 steps), printed only")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], choices=BUDGET_SEEDS,
                        help="the seeds of the cells at the budget to train (default 0; the sweep's are its own)")
    args = parser.parse_args()
    if args.quick:
        args.out = args.out.with_name(args.out.name + "_quick")
    results, n = Results.of(args), 500 if args.quick else 10000
    if not args.report:
        for rule in SWEEP:
            for _, norm, overrides in settings(rule, args.quick):
                results.run(cell(rule, norm, overrides, 0, args.quick), args.root, n=n)
        chosen = {rule: c for rule in SWEEP if (c := best(results, rule, args.root, args.quick)) is not None}
        for rule, (_, norm, overrides) in chosen.items():
            results.run(cell(rule, norm, overrides, 1, args.quick), args.root, n=n)
        for dataset in () if args.quick else DATASETS:       # a quick run's budget cells are its sweep's own
            for rule in SWEEP:
                at_budget = ([chosen[rule]] if rule in chosen else []) + AT_BUDGET.get((dataset, rule), [])
                for (_, norm, overrides), seed in itertools.product(at_budget, args.seeds):
                    c = budget_cell(dataset, rule, norm, overrides, args.quick, seed)
                    score(results, c, curve_scoring(c, args.root))
    publish_table("baselines", "Every baseline at its best: MD-GAN and GMAN* on MNIST Non-OVL",
                  table(results, args.root, args.quick), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
