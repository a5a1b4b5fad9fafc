"""One dishonest client against the robust exchange: what each attack does, with and without defences.

    python bench/robustness.py                    # the whole table (~9 h on 2 cores), resumable
    python bench/robustness.py --rules f2u f2u_balanced
    python bench/robustness.py --report           # only rebuild the table from the stored cells
    python bench/robustness.py --dataset digits   # the same table on digits, 600 steps (~3 min a cell)
    python bench/robustness.py --seed 1 --rules f2u --only '*without-2*' '*gradient_scale-robust*'
    python bench/robustness.py --quick            # a smoke run on digits in about a minute, printed only

MNIST Non-OVL, 5 ranks, 1,500 steps, the default D. Client 2 (digits 4 and 5) lies from step 200
(``attack.start``): ``always_real``, ``inverted``, ``noise``, ``gradient_scale`` (x100) or
``gradient_flip``, in the plain feedback exchange ("none") and in the robust one
(``comm.robust=true``, "robust"). References: the honest run in both exchanges (the robust one
counts false alarms) and the honest run without client 2 (4 clients, its classes never seen).
Columns: classes covered (argmax / confident), ``fid_classifier`` on the honest clients' classes
(the generated samples classified into them against their real test images), the honest classes
that hold less than 1/20 of the samples (missed), who was named and when (steps after the attack's
start), and false alarms (honest clients named). Targets with defences: fid_classifier on the
honest classes within 15 % of the 4-client run, every honest client's classes covered, no false
alarm. Seed 0 fills the table; a cell trained with ``--seed N`` adds its row beside seed 0's, to
tell a defence's cost from one seed's spread. Cells are kept in bench/results.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import (  # noqa: E402
    QUICK,
    Cell,
    Results,
    evaluate,
    generator_metrics,
    table_arguments,
)
from bench.forgiveness import DEFAULT_NORM, rule_cell  # noqa: E402
from bench.report import OPTIONAL, publish_table  # noqa: E402
from ddgan.eval.metrics import missed_classes  # noqa: E402
from ddgan.runtime.checkpoint import complete_checkpoints  # noqa: E402

ATTACKS = ["always_real", "inverted", "noise", "gradient_scale", "gradient_flip"]
RULES = ["f2u", "f2a", "f2u_balanced", "mdgan"]
LIAR, START = 2, 200
HONEST_CLASSES = [0, 1, 2, 3, 6, 7, 8, 9]          # all but client 2's {4, 5} on Non-OVL
DEFENCE = {"none": (), "robust": ("comm.robust=true",)}


def cell(rule: str, attack: str, defence: str, dataset: str = "mnist", steps: int = 1500, start: int = START,
         quick: bool = False, seed: int = 0) -> Cell:
    """A table cell; the honest undefended one is the forgiveness bench's own cell (shared)."""
    base = rule_cell(dataset, rule, DEFAULT_NORM, seed, steps)
    if quick:
        base = Cell(*[getattr(base, f) for f in ("dataset", "split", "rule", "norm", "seed", "steps", "variant")],
                    (*base.extra, *QUICK, "defence.warmup=10"))
    if attack == "honest" and defence == "none":
        return base
    if attack == "without-2":
        clients = "[[0,1],[2,3],[6,7],[8,9]]"
        return Cell(dataset, "non_ovl", rule, DEFAULT_NORM, seed, steps, f"{base.variant}-without-2".strip("-"),
                    (*base.extra, "partition.clients=4", "partition.scheme=classes", f"partition.classes={clients}"))
    lie = () if attack == "honest" else (f"attack.kind={attack}", f"attack.client={LIAR}", f"attack.start={start}")
    variant = "-".join(v for v in (base.variant, attack, defence) if v)
    return Cell(dataset, "non_ovl", rule, DEFAULT_NORM, seed, steps, variant, (*base.extra, *DEFENCE[defence], *lie))


def plan(rules: list[str]) -> list[tuple[str, str, str]]:
    """(rule, attack, defence) in the order worth running first: the references and the defended
    runs, then the damage without defences."""
    first = [(r, a, d) for r in rules for a, d in (("without-2", "none"), ("honest", "robust"),
                                                   *((a, "robust") for a in ATTACKS))]
    return first + [(r, a, "none") for r in rules for a, d in (("honest", "none"), *((a, "none") for a in ATTACKS))]


def lacks_classes(result: dict | None) -> bool:
    return result is not None and "fid_classifier_classes" not in generator_metrics(result)


def classes_result(results: Results, c: Cell, root: Path) -> dict | None:
    """The cell's result with fid_classifier on the honest classes (evaluated again if it lacks it)."""
    r = results.get(c, root)
    if not lacks_classes(r):
        return r
    run = results.runs / c.name
    if not complete_checkpoints(run):        # the run was cleared since: its row is incomplete
        return r
    evaluated = evaluate(run, 10000, eval_args=["--svm-train", "0", "--inception", "off",
                                                "--classes", *map(str, HONEST_CLASSES)])
    r = {**r, **{k: v for k, v in evaluated.items() if k != "seconds"}}
    results.add(c.name, r)
    return r


def row(results: Results, rule: str, attack: str, defence: str, root: Path, args, seed: int = 0) -> str:
    """The cell's table row; for a seed other than 0 that was not trained, an optional row that the
    table drops unless an earlier measurement of it is kept (seed 0's row says how to train it)."""
    c = cell(rule, attack, defence, *args.shape, seed=seed)
    r = classes_result(results, c, root)
    label = f"| {rule} | {attack} | {defence} | {seed} | "
    if lacks_classes(r):        # another table's cell, its run gone: the previous table's row stands in
        return label + "incomplete |" + " |" * 4
    if r is None:
        where = "" if args.dataset == "mnist" else f" --dataset {args.dataset}"
        todo = f"{OPTIONAL} |" if seed else f"not run: `python bench/robustness.py{where} --rules {rule}` |"
        return label + todo + " |" * 4
    m = generator_metrics(r)
    named = {int(k): v for k, v in r.get("named", {}).items()}
    caught = f"client {LIAR} after {named[LIAR] - args.start} steps" if LIAR in named and attack not in (
        "honest", "without-2") else "-"
    false_alarms = sorted(k for k in named if k != LIAR or attack in ("honest", "without-2"))
    fid = m.get("fid_classifier_classes")
    missed = ", ".join(map(str, missed_classes(m["class_histogram"], HONEST_CLASSES))) or "none"
    return label + " | ".join([f"{m['classes_covered']} / {m['confident_classes_covered']}",
                               f"{fid:.1f}" if fid is not None else "-", missed, caught,
                               str(false_alarms) if false_alarms else "0"]) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", nargs="+", default=RULES, choices=RULES, help="the rules to train (the table "
                        "shows all)")
    table_arguments(parser)
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"],
                        help="mnist (1,500 steps, the issue's table) or digits (600 steps, the default job's data)")
    parser.add_argument("--seed", type=int, default=0, help="train the cells with this seed (the table shows seed 0 "
                        "and every other seed's stored cells)")
    parser.add_argument("--quick", action="store_true", help="f2u on digits, small models, 40 steps, an always_real "
                        "client from step 20; printed, not stored")
    args = parser.parse_args()
    steps = {"mnist": 1500, "digits": 600}[args.dataset]
    args.shape, args.start = (("digits", 40, 20, True), 20) if args.quick else ((args.dataset, steps, START), START)
    if args.quick:
        args.rules, args.out = ["f2u"], args.out.with_name(args.out.name + "_quick")
    results = Results.of(args)
    todo = [(r, a, d) for r, a, d in plan(args.rules)
            if not args.quick or (a, d) in (("honest", "robust"), ("always_real", "robust"))]
    if not args.report:
        for rule, attack, defence in todo:
            c = cell(rule, attack, defence, *args.shape, seed=args.seed)
            # a cell another table stored without the honest classes' fid, its run since cleared, is trained again
            results.run(c, args.root, n=500 if args.quick else 10000, eval_args=["--classes", *map(str, HONEST_CLASSES)],
                        again=lacks_classes(classes_result(results, c, args.root)))
    lines = ["| rule | attack on client 2 | defence | seed | classes (argmax / confident) | "
             "fid_classifier, honest classes | honest classes missed | named | false alarms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    shown = todo if args.quick else plan(RULES)          # --rules chooses what to train, not what the table keeps
    # seed 1 was measured for a few rows before the store moved into git (bench/report.py keeps them)
    seeds = sorted({0, 1, args.seed, *(r["config"]["train"]["seed"] for r in results.cells.values())})
    rows = (row(results, r, a, d, args.root, args, s) for r, a, d in sorted(shown, key=lambda t: RULES.index(t[0]))
            for s in seeds)
    lines += rows
    section = {"mnist": "robustness", "digits": "robustness_digits"}[args.dataset]     # the BENCHMARKS.md markers
    publish_table(section, f"Robustness: one dishonest client ({args.shape[0]}, {args.shape[1]} steps)",
                  "\n".join(lines), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
