"""How far each rule is from converged: fid_classifier and classes covered against steps, Non-OVL.

    python bench/convergence.py                                   # every MNIST curve, resumable (hours on 2 cores)
    python bench/convergence.py --datasets fashion_mnist --rules f2a --inception-at 15000
    python bench/convergence.py --only 'mnist_non_ovl_centralized*'
    python bench/convergence.py --rules centralized f2a --seeds 0 1 --inception-at 15000 \
        --only 'mnist_non_ovl_*' --again                          # stored cells trained anew (tracked classifier)
    python bench/convergence.py --splits iid --rules f2a          # the IID control
    python bench/convergence.py --report                          # only rebuild the tables and the figures
    python bench/convergence.py --quick                           # a smoke run on digits, printed only

One cell per dataset, rule and seed (``--datasets``, default mnist; ``--seeds``, default 0; the
paper configs, the default D), checkpointed every ``--every`` steps (1,500); every checkpoint is
scored by ``ddgan.eval`` on 10,000 samples of the averaged generator. Every rule trains BUDGET
steps, 15,000: 20 epochs of MNIST at batch 64, as Lucic et al. 2018 train it (80 passes over one
client's Non-OVL shard). These cells are the F2U table's Non-OVL cells (bench/reproduce_f2u.py).
A longer cell continues a shorter one of the same settings (bench/cells.py): the 6,000-step f2u
and MD-GAN curves of 2026-12-04 grow to the budget without starting over. A cell resumes like every
bench cell (``touch runs/bench/cells/<cell>/STOP`` checkpoints it and ends the script; the same
command continues it), and its curve is stored with it in bench/results.json, one evaluation per
checkpoint as it is made, so an interrupted scoring resumes too. Inception FID, slow on a CPU, is
computed only where asked: ``--inception-at 6000 15000`` scores those checkpoints again with it
(the same seeded samples, so fid_classifier repeats) and the report adds a table of it beside the
poster's numbers. ``--raw-at 15000`` also scores the trained G itself there (``ddgan.eval --raw``,
the same noise), so the report can set the averaged generator beside it at the budget. The budget's
point keeps ``ddgan.eval``'s recall within each class as well, tabled per rule (a point stored before
eval reported it is scored again, without recomputing its Inception FID). ``--splits iid`` trains a
rule's curve on the IID split instead (5 clients, every class each, the same config otherwise): a
control that tells what the non-iid shards cost from what the several discriminators cost, tabled
beside the centralized GAN (the one cell of every split) once it has run.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import (  # noqa: E402
    QUICK,
    QUICK_CLIENTS,
    ROOT,
    Cell,
    Results,
    evaluate,
    shorter_cells,
    table_arguments,
    yardstick,
)
from bench.forgiveness import DEFAULT_NORM, rule_cell  # noqa: E402
from bench.poster import POSTER  # noqa: E402
from bench.report import publish_table  # noqa: E402
from bench.yardstick import mixed_note  # noqa: E402
from ddgan.runtime.checkpoint import complete_checkpoints, step_dir  # noqa: E402

BUDGET = 15000            # steps per curve (the F2U table's Non-OVL budget)
EVERY = 1500              # steps between scored checkpoints
RULES = ["centralized", "f2a", "f2u_balanced", "f2u", "mdgan", "gman"]
DATASETS = ["mnist", "fashion_mnist"]
SPLITS = ["non_ovl", "iid"]   # iid: the control that tells the shards' effect from the multi-D update's
SPLIT_NAMES = {"non_ovl": "Non-OVL", "iid": "IID"}
SEEDS = range(5)          # the seeds a table looks for


def label(rule: str, seed: int) -> str:
    return rule if seed == 0 else f"{rule}, seed {seed}"


def figure_path(dataset: str, split: str = "non_ovl") -> Path:
    return ROOT / "docs" / "figures" / f"convergence_{dataset}_{split}.png"


def curve_cell(dataset: str, rule: str, every: int, quick: bool, seed: int = 0, steps: int = BUDGET,
               split: str = "non_ovl") -> Cell:
    if quick:
        clients = () if rule == "centralized" else QUICK_CLIENTS
        return Cell("digits", "classes", rule, DEFAULT_NORM, seed, 2 * every, "curve",
                    (*QUICK, *clients, f"run.checkpoint_every={every}"))
    base = rule_cell(dataset, rule, DEFAULT_NORM, seed, steps, split)
    variant = f"{base.variant}-curve" if base.variant else "curve"
    return Cell(base.dataset, base.split, base.rule, base.norm, base.seed, base.steps, variant,
                (*base.extra, f"run.checkpoint_every={every}"))


def point(evaluated: dict) -> dict:
    g = evaluated["generators"]["0"]
    return {"fid_classifier": round(g["fid_classifier"], 2), "classes": g["classes_covered"],
            "confident": g["confident_classes_covered"], "precision": round(g["precision"], 4),
            "recall": round(g["recall"], 4),
            "inception_fid": (evaluated["inception_fid"]["value"] or {}).get("0"),
            **{key: g[key] for key in ("recall_per_class", "fid_classifier_scaled") if key in g},
            **({"classifier": y} if (y := yardstick(evaluated)) else {})}


@dataclass(frozen=True)
class Scoring:
    """What :func:`score` needs: where the data lies, samples per checkpoint, Inception FID at every
    checkpoint (``inception``, ddgan.eval's flag) or at ``inception_at`` only, and the steps whose
    trained G is scored too (``raw_at``)."""

    root: Path
    n: int = 10000
    inception: str = "off"
    inception_at: tuple[int, ...] = ()
    raw_at: tuple[int, ...] = ()


def score_checkpoint(run_dir: Path, where: Path, args: Scoring, with_inception: bool, raw: bool = False) -> dict:
    """One checkpoint's curve point: its averaged generator, or (``raw``) the trained G itself."""
    return point(evaluate(run_dir, args.n, checkpoint=where, eval_args=[
        "--svm-train", "0", *(["--raw"] if raw else []), "--inception", "on" if with_inception else args.inception]))


def score(results: Results, cell: Cell, args: Scoring) -> dict | None:
    """Train the cell (unless stored), then evaluate each of its checkpoints not yet on its curve."""
    result = results.run(cell, args.root, n=args.n, eval_args=["--inception", args.inception])
    if result is None:
        return None
    curve = {int(k): v for k, v in result.get("curve", {}).items()}
    if not curve and "continued" in result:         # the points of the shorter run it grew from
        before = results.cells.get(result["continued"], {})
        curve = {int(k): v for k, v in before.get("curve", {}).items() if int(k) <= before.get("step", 0)}
    curve.setdefault(result["step"], point(result))          # the cell's own evaluation: its last checkpoint
    run_dir = results.runs / cell.name
    # the checkpoints asked for with Inception FID (the slow, wanted points) first: a run stopped while
    # scoring keeps those, and the next run scores the rest
    for where in sorted(complete_checkpoints(run_dir),
                        key=lambda p: (int(p.name.removeprefix("step_")) not in args.inception_at, p.name)):
        step = int(where.name.removeprefix("step_"))
        old = curve.get(step)
        with_inception = step in args.inception_at and (old or {}).get("inception_fid") is None
        # the budget's point holds the recall within each class too: one scored before ddgan.eval reported
        # it is scored again, without Inception FID, which it keeps (the same seeded samples)
        lacks_classes = step == cell.steps and "recall_per_class" not in (old or {})
        if old is not None and not with_inception and not lacks_classes:
            continue
        curve[step] = score_checkpoint(run_dir, where, args, with_inception)
        if old and curve[step]["inception_fid"] is None:
            curve[step]["inception_fid"] = old.get("inception_fid")
        result["curve"] = {str(k): v for k, v in sorted(curve.items())}
        results.add(cell.name, result)
        print(f"  {cell.name} step {step}: {curve[step]}", flush=True)
    raw = result.get("raw_curve", {})       # the trained G itself where asked (--raw-at), not its average
    for step in sorted(set(args.raw_at) & set(curve)):
        if str(step) in raw and not (step in args.inception_at and raw[str(step)].get("inception_fid") is None):
            continue
        raw[str(step)] = score_checkpoint(run_dir, step_dir(run_dir, step), args, step in args.inception_at, raw=True)
        result["raw_curve"] = raw
        results.add(cell.name, result)
        print(f"  {cell.name} step {step}, raw G: {raw[str(step)]}", flush=True)
    if "curve" not in result:
        result["curve"] = {str(k): v for k, v in sorted(curve.items())}
        results.add(cell.name, result)
    return result


def shorter_curve(results: Results, cell: Cell, root: Path) -> dict:
    """The curve of the longest stored cell of ``cell``'s settings with fewer steps: the points a
    cell not yet trained to its end continues from (a curve of the 6,000-step budget before)."""
    for short in shorter_cells(cell, results.cells):
        done = results.get(short, root)
        if done and done.get("curve"):
            return done["curve"]
    return {}


def scored_by(results: Results, cells: dict[str, Cell], root: Path) -> list[str]:
    """The domain classifiers behind a table's curves: each cell's last evaluation's, its points'
    (recorded since 2026-12-06), and those of the shorter cell it continued (whose points it kept)."""
    used = set()
    for cell in cells.values():
        result = results.get(cell, root) or {}
        before = results.cells.get(result.get("continued"), {})
        used |= {yardstick(r) for r in (result, before)}
        used |= {p.get("classifier") for p in result.get("curve", {}).values()}
    return sorted(used - {None})


def table(results: Results, cells: dict[str, Cell], args, split: str) -> str:
    """One dataset and split's curves (fid_classifier and classes per checkpoint) and its Inception FID."""
    steps = sorted({s for c in cells.values() for s in range(args.every, c.steps + 1, args.every)})
    head = "| dataset | rule | " + " | ".join(f"{s:,}" for s in steps) + " |"     # (rows of two datasets never
    lines = [head, "| --- | --- |" + " --- |" * len(steps)]                        # stand in for each other)
    missing = []
    for rule, cell in cells.items():
        curve = (results.get(cell, args.root) or {}).get("curve")
        if not curve:
            curve = shorter_curve(results, cell, args.root)
            missing.append(cell.name + (f" (stored to step {max(map(int, curve))}; it continues from there)"
                                        if curve else ""))
        row = [(f"{curve[str(s)]['fid_classifier']:.1f}, {curve[str(s)]['classes']} ({curve[str(s)]['confident']})"
                if str(s) in curve else "-" if s > cell.steps else "not yet" if curve else "not run") for s in steps]
        lines.append(f"| {cell.dataset} | {rule} | " + " | ".join(row) + " |")
    dataset = next(iter(cells.values())).dataset
    splits = "" if split == "non_ovl" else f" --splits {split}"
    note = (f"\n\nNot run yet: {', '.join(missing)} (`python bench/convergence.py --datasets {dataset}{splits} "
            "--only NAME`)." if missing else "")
    if mixed := mixed_note(dataset, scored_by(results, cells, args.root)):
        note += "\n\n" + mixed
    figure = figure_path(dataset, split)
    return ("\n".join(lines) + note + inception_table(results, cells, args, split) + raw_table(results, cells, args)
            + class_recall_table(results, cells, args)
            + (f"\n\n![convergence {dataset}]({figure.relative_to(ROOT)})" if figure.exists() else ""))


def inception_cell(point: dict | None) -> str:
    """A curve point's Inception FID with its precision / recall (points scored before those were
    kept show the FID alone), or "-"."""
    if not point or point.get("inception_fid") is None:
        return "-"
    scores = f" ({point['precision']:.2f} / {point['recall']:.2f})" if "recall" in point else ""
    return f"{point['inception_fid']:.2f}{scores}"


def inception_table(results: Results, cells: dict[str, Cell], args, split: str) -> str:
    """Inception FID at the checkpoints where it was computed, beside the poster's number (which it
    reports after up to 80 epochs of its own budget, not at these steps)."""
    curves = {label: (results.get(cell, args.root) or {}).get("curve", {}) for label, cell in cells.items()}
    steps = sorted({int(s) for curve in curves.values() for s, p in curve.items() if p.get("inception_fid") is not None})
    if not steps:
        return ""
    poster = POSTER.get((next(iter(cells.values())).dataset, split), {})
    lines = ["| rule | " + " | ".join(f"{s:,}" for s in steps) + " | poster |", "| --- |" + " --- |" * (len(steps) + 1)]
    for label, curve in curves.items():
        row = [inception_cell(curve.get(str(s))) for s in steps]
        lines.append(f"| {label} | " + " | ".join(row) + f" | {poster.get(cells[label].rule, '-')} |")
    return "\n\nInception FID:\n\n" + "\n".join(lines)


def raw_table(results: Results, cells: dict[str, Cell], args) -> str:
    """The averaged generator against the trained G itself, at the checkpoints scored with ``--raw-at``:
    the same seeded samples, so the difference is the average (train.g_ema) alone."""
    rows = []
    for label, cell in cells.items():
        result = results.get(cell, args.root) or {}
        for step, raw in sorted(result.get("raw_curve", {}).items(), key=lambda kv: int(kv[0])):
            averaged = result["curve"][step]
            rows.append(f"| {label} | {int(step):,} | " + " | ".join(
                f"{p['fid_classifier']:.1f}, {p['classes']} ({p['confident']}) | {inception_cell(p)}"
                for p in (averaged, raw)) + " |")
    if not rows:
        return ""
    return ("\n\nThe averaged generator against the trained G itself (`--raw-at`, `ddgan.eval --raw`), the same "
            "samples' noise:\n\n| rule | step | averaged: fid_classifier, classes (confident) | averaged: Inception FID "
            "| raw G: fid_classifier, classes (confident) | raw G: Inception FID |\n| --- | --- | --- | --- | --- | --- |\n"
            + "\n".join(rows))


def class_recall_table(results: Results, cells: dict[str, Cell], args) -> str:
    """Recall within each class at the budget (``ddgan.eval``'s recall_per_class): whether a rule's
    lower recall is one client's classes or every class drawn narrowly."""
    rows, recall = [], {}
    for label, cell in cells.items():
        at_end = ((results.get(cell, args.root) or {}).get("curve") or {}).get(str(cell.steps), {})
        if at_end.get("recall_per_class"):
            recall[label] = at_end["recall_per_class"]
            known = [r for r in recall[label] if r is not None]
            rows.append(f"| {label} | " + " | ".join("-" if r is None else f"{r:.2f}" for r in recall[label])
                        + f" | {sum(known) / len(known):.2f} |")
    if not rows:
        return ""
    n_classes = len(next(iter(recall.values())))
    note = ""
    if "centralized" in recall:
        below = [label for label in recall if label != "centralized" and all(
            r is not None and c is not None and r < c for r, c in zip(recall[label], recall["centralized"]))]
        note = f"\n\nBelow the centralized GAN's recall in every class: {'; '.join(below) or 'none'}."
    return ("\n\nRecall within each class at the budget (the samples the classifier puts in the class against its "
            "real test images):\n\n| rule | " + " | ".join(str(c) for c in range(n_classes)) + " | mean |\n| --- |"
            + " --- |" * (n_classes + 1) + "\n" + "\n".join(rows) + note)


def figure(results: Results, cells: dict[str, Cell], args, split: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
    drawn = False
    for name, cell in cells.items():
        curve = (results.get(cell, args.root) or {}).get("curve") or shorter_curve(results, cell, args.root)
        if not curve:
            continue
        steps = sorted(int(s) for s in curve)
        # a rule keeps its colour across seeds (more curves than a colour cycle has colours); seeds differ by line
        style = {"marker": "o", "color": f"C{RULES.index(cell.rule)}",
                 "linestyle": ("-", "--", ":", "-.")[cell.seed % 4]}
        left.plot(steps, [curve[str(s)]["fid_classifier"] for s in steps], label=name, **style)
        right.plot(steps, [curve[str(s)]["confident"] for s in steps], label=name, **style)
        drawn = True
    if not drawn:
        plt.close(fig)
        return
    left.set(xlabel="step", ylabel="fid_classifier (lower is better)", yscale="log")
    right.set(xlabel="step", ylabel="classes covered confidently", ylim=(0, 10.5))
    right.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    dataset = next(iter(cells.values())).dataset
    seeds = ", seed 0" if all(c.seed == 0 for c in cells.values()) else ""
    fig.suptitle(f"{dataset} {SPLIT_NAMES[split]}, 5 clients{seeds}")
    fig.tight_layout()
    figure_path(dataset, split).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure_path(dataset, split), dpi=90)
    plt.close(fig)


INTRO = ("Cells: fid_classifier, classes covered (confidently), on {n:,} samples of the averaged generator, per "
         "checkpoint. Inception FID (the TF FID network, `ddgan.eval --inception on`) scores the same {n:,} samples "
         "against {n:,} seeded training images at the checkpoints where it was computed (`--inception-at`), with the "
         "classifier's precision / recall of those samples. FID is biased upward by a finite sample, so it compares "
         "only at equal counts; the poster's numbers are after up to 80 epochs of its own training. A table of the iid "
         "split (`--splits iid`) is a control: the same rule with every client holding every class, beside the "
         "centralized GAN (the one cell of every split).")


def stored(results: Results, args, dataset: str, split: str, rule: str, seed: int) -> bool:
    cell = curve_cell(dataset, rule, args.every, args.quick, seed, split=split)
    return bool((results.get(cell, args.root) or {}).get("curve"))


def table_cells(results: Results, args, dataset: str, split: str) -> dict[str, Cell]:
    """A table's rows: Non-OVL's shows every rule's seed 0, run or not; a control split (iid) shows
    what it ran beside the centralized GAN (one cell for every split); both add every other seed
    asked for or stored."""
    def shown(rule: str, seed: int) -> bool:
        asked = dataset in args.datasets and split in args.splits and rule in args.rules and seed in args.seeds
        return (asked or stored(results, args, dataset, split, rule, seed)
                or (seed == 0 and (split == "non_ovl" or rule == "centralized")))

    return {label(rule, seed): curve_cell(dataset, rule, args.every, args.quick, seed, split=split)
            for rule in (args.rules if args.quick else RULES) for seed in sorted({*SEEDS, *args.seeds})
            if shown(rule, seed)}


def has_table(results: Results, args, dataset: str, split: str) -> bool:
    """A dataset and split nothing was asked of or trained on (the centralized GAN aside) get no table
    of "not run"."""
    return (dataset in args.datasets and split in args.splits) or any(
        stored(results, args, dataset, split, rule, 0) for rule in RULES if split == "non_ovl" or rule != "centralized")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    table_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run on digits, printed only")
    parser.add_argument("--every", type=int, default=EVERY, help=f"steps between scored checkpoints (default {EVERY})")
    parser.add_argument("--n", type=int, default=10000, help="samples per scored checkpoint (default 10000)")
    parser.add_argument("--inception", default="off", choices=["auto", "on", "off"],
                        help="Inception FID at every checkpoint (default off: slow on a CPU)")
    parser.add_argument("--inception-at", type=int, nargs="+", default=[], metavar="STEP",
                        help="Inception FID at these checkpoints only, scored again where it is missing")
    parser.add_argument("--raw-at", type=int, nargs="+", default=[], metavar="STEP",
                        help="also score the trained G itself (ddgan.eval --raw) at these checkpoints, with "
                             "Inception FID where --inception-at names them too")
    parser.add_argument("--datasets", nargs="+", default=["mnist"], choices=DATASETS,
                        help="the datasets to train (default mnist; a table shows every dataset with a stored curve)")
    parser.add_argument("--rules", nargs="+", default=RULES, choices=RULES, help="the rules to train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="the seeds to train (default 0); the table shows seed 0 and every other seed stored")
    parser.add_argument("--splits", nargs="+", default=["non_ovl"], choices=SPLITS,
                        help="the splits to train (default non_ovl; iid: a control, every client holding every "
                             "class, tabled beside the centralized GAN)")
    args = parser.parse_args()
    if args.quick:
        args.every, args.n, args.rules, args.datasets = 20, 200, ["centralized", "f2a"], ["mnist"]
        args.splits, args.raw_at = ["non_ovl"], [2 * args.every]
        args.out = args.out.with_name(args.out.name + "_quick")
    results = Results.of(args)
    scoring = Scoring(args.root, args.n, args.inception, tuple(args.inception_at), tuple(args.raw_at))
    sections = []
    for dataset in (args.datasets if args.quick else DATASETS):
        for split in (args.splits if args.quick else SPLITS):
            cells = table_cells(results, args, dataset, split)
            if not args.report and dataset in args.datasets and split in args.splits:
                for rule in args.rules:
                    for seed in args.seeds:
                        score(results, cells[label(rule, seed)], scoring)
            if not has_table(results, args, dataset, split):
                continue
            if not args.quick:
                figure(results, cells, args, split)
            first = next(iter(cells.values()))
            shown_split = first.split if args.quick else split       # (a --quick run's cells are digits')
            sections.append(f"### {first.dataset}, {shown_split}\n\n" + table(results, cells, args, split))
    publish_table("convergence", "Convergence: Non-OVL against steps",
                  "\n\n".join([INTRO.format(n=args.n), *sections]), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
