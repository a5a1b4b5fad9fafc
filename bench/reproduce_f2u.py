"""Reproduce the F2U paper's comparison: MNIST / Fashion-MNIST, Non-OVL / Mod-OVL, 5 clients.

    python bench/reproduce_f2u.py                                     # all 24 cells (~5 h on 2 cores), resumable
    python bench/reproduce_f2u.py --datasets mnist --splits non_ovl   # one row
    python bench/reproduce_f2u.py --report                            # only rebuild the tables and figures
    python bench/reproduce_f2u.py --quick                             # a smoke run on digits, printed only

Every cell trains the paper config (configs/paper/<dataset>_<split>_<rule>.yaml, the default D
for every rule) with torchrun, 5 ranks (the centralized GAN: 1 process with all data, the same
cell for both splits), 1,500 steps of batch 64, then runs ``ddgan.eval`` on 10,000 samples; the
Non-OVL rows with seeds 0 and 1 (mean and range), Mod-OVL with seed 0. Cells are kept in
bench/results.json, shared with bench/forgiveness.py (its MNIST Non-OVL cells are these).
Tables go to stdout and BENCHMARKS.md: the comparison, the cells it still lacks with the command
that trains them, the poster's orderings (f2a <= f2u < mdgan, gman on fid_classifier, and on
Inception FID where it was computed) with whether each holds, and one figure per row with the six
rules' sample grids (docs/figures/).

The poster reports Inception FID after up to 80 epochs; ours is the Frechet distance in a small
MNIST/Fashion classifier's features after 1,500 steps (8 passes over one client's 12,000-image
shard), so compare the orderings and the class coverage, not the values.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import (  # noqa: E402
    QUICK,
    QUICK_CLIENTS,
    ROOT,
    Cell,
    Results,
    generator_metrics,
    mean_spread,
    table_arguments,
)
from bench.forgiveness import DEFAULT_NORM, rule_cell  # noqa: E402
from bench.report import publish_table  # noqa: E402

RULES = ["f2u", "f2a", "f2u_balanced", "mdgan", "gman", "centralized"]
DATASETS, SPLITS = ["mnist", "fashion_mnist"], ["non_ovl", "mod_ovl"]
POSTER = {("mnist", "non_ovl"): {"mdgan": 38.42, "gman": 67.69, "f2u": 22.19, "f2a": 18.96},
          ("fashion_mnist", "non_ovl"): {"mdgan": 56.09, "gman": 56.79, "f2u": 43.67, "f2a": 37.16}}
FIGURES = ROOT / "docs" / "figures"


def cells(dataset: str, split: str, rule: str, steps: int, quick: bool) -> list[Cell]:
    if quick:
        return [Cell("digits", "classes", rule, DEFAULT_NORM, 0, steps, "", (*QUICK, *QUICK_CLIENTS))]
    seeds = (0, 1) if split == "non_ovl" else (0,)
    return [rule_cell(dataset, rule, DEFAULT_NORM, s, steps, split) for s in seeds]


def fids(results: Results, cs: list[Cell], root: Path, key: str) -> list[float]:
    done = [results.get(c, root) for c in cs]
    if key == "inception_fid":
        return [r["inception_fid"]["value"]["0"] for r in done if r is not None and r["inception_fid"]["value"]]
    return [generator_metrics(r)[key] for r in done if r is not None]


def comparison(results: Results, args) -> str:
    lines = ["| dataset | split | rule | seeds | fid_classifier | classes (argmax) | classes (confident) | "
             "precision | recall | Inception FID | poster Inception FID |", "| --- | --- | --- | --- | --- | --- | --- | "
             "--- | --- | --- | --- |"]
    for dataset in args.datasets:
        for split in args.splits:
            for rule in args.rules:
                cs = cells(dataset, split, rule, args.steps, args.quick)
                done = [r for r in (results.get(c, args.root) for c in cs) if r is not None]
                label = f"| {dataset} | {split} | {rule} | "
                if not done:
                    lines.append(label + f"not run: `{command(dataset, split, rule)}` |" + " |" * 7)
                    continue
                m = [generator_metrics(r) for r in done]
                inception = fids(results, cs, args.root, "inception_fid")
                lines.append(label + " | ".join([
                    str(len(done)), mean_spread([x["fid_classifier"] for x in m], ".1f"),
                    mean_spread([x["classes_covered"] for x in m], ".1f"),
                    mean_spread([x["confident_classes_covered"] for x in m], ".1f"),
                    mean_spread([x["precision"] for x in m], ".2f"), mean_spread([x["recall"] for x in m], ".2f"),
                    mean_spread(inception, ".1f") if inception else "not computed",
                    str(POSTER.get((dataset, split), {}).get(rule, "-"))]) + " |")
    return "\n".join(lines)


def untrained(results: Results, args) -> list[str]:
    """The cells no stored result stands for (a row's missing seed, or the cells behind a † row), per
    dataset and split, with the command that trains them (it skips the stored cells)."""
    lines = []
    for dataset in args.datasets:
        for split in args.splits:
            missing = {}
            for rule in args.rules:
                for c in cells(dataset, split, rule, args.steps, args.quick):
                    if results.get(c, args.root) is None:
                        missing.setdefault(rule, []).append(f"s{c.seed}")
            if missing:
                which = "; ".join(f"{rule} {', '.join(seeds)}" for rule, seeds in missing.items())
                lines.append(f"- {dataset} {split} ({which}): `{command(dataset, split)}`")
    if not lines:
        return []
    return ["**Cells not yet trained** (a row's missing seed, or the cells behind a † row; the command trains only "
            "the cells not stored, about 15-20 minutes each on 2 cores):", "", *lines, ""]


def orderings(results: Results, args) -> str:
    """The poster's orderings, per dataset and split, on the means over seeds."""
    lines = ["| dataset | split | metric | f2a <= f2u | f2u < mdgan | f2u < gman | values (f2a / f2u / mdgan / gman) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for dataset in args.datasets:
        for split in args.splits:
            for key in ("fid_classifier", "inception_fid"):
                means = {}
                for rule in ("f2a", "f2u", "mdgan", "gman"):
                    values = fids(results, cells(dataset, split, rule, args.steps, args.quick), args.root, key)
                    means[rule] = sum(values) / len(values) if values else None
                if key == "inception_fid" and all(v is None for v in means.values()):
                    continue
                if any(v is None for v in means.values()):
                    lines.append(f"| {dataset} | {split} | {key} | incomplete | | | `{command(dataset, split)}` |")
                    continue
                holds = [means["f2a"] <= means["f2u"], means["f2u"] < means["mdgan"], means["f2u"] < means["gman"]]
                lines.append(f"| {dataset} | {split} | {key} | " + " | ".join("holds" if h else "does not hold"
                                                                               for h in holds)
                             + " | " + " / ".join(f"{means[r]:.1f}" for r in ("f2a", "f2u", "mdgan", "gman")) + " |")
    return "\n".join(lines)


def figures(results: Results, args) -> list[str]:
    """One figure per row: the six rules' sample grids (seed 0) side by side; the markdown links."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    links = []
    for dataset in args.datasets:
        for split in args.splits:
            grids = [(rule, results.grids(cells(dataset, split, rule, args.steps, args.quick)[0].name)
                      / "samples_node_0.png") for rule in args.rules]
            grids = [(rule, g) for rule, g in grids if g.exists()]
            path = Path(args.figures) / f"f2u_{dataset}_{split}.png"
            link = f"![{dataset} {split}]({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})"
            # a figure is redrawn once every rule's grid is kept (or if there is none yet): one drawn
            # from runs lost since is not replaced by a partial one
            if not grids or (len(grids) < len(args.rules) and path.exists()):
                links += [link] if path.exists() else []
                continue
            fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 2.9))
            for ax, (rule, grid) in zip(list(axes) if len(grids) > 1 else [axes], grids):
                ax.imshow(mpimg.imread(grid), cmap="gray", vmin=0, vmax=1)  # no contrast stretch: grey stays grey
                ax.set_title(rule, fontsize=10)
                ax.axis("off")
            fig.suptitle(f"{dataset}, {split}: 64 samples per rule (seed 0, {args.steps} steps)", fontsize=10)
            fig.tight_layout()
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=90)
            plt.close(fig)
            links.append(link)
    return links


def command(dataset: str, split: str, rule: str | None = None) -> str:
    return f"python bench/reproduce_f2u.py --datasets {dataset} --splits {split}" + (f" --rules {rule}" if rule else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="the datasets to train (the table shows all)")
    parser.add_argument("--splits", nargs="+", default=SPLITS, help="the splits to train (the table shows all)")
    parser.add_argument("--rules", nargs="+", default=RULES, choices=RULES, help="the rules to train (the table shows "
                        "all)")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per cell (default 1500)")
    table_arguments(parser)
    parser.add_argument("--figures", type=Path, default=FIGURES, help="where the sample-grid figures go")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small models on digits, f2u and f2a, 20 steps; printed, not stored")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.splits, args.rules, args.steps = ["digits"], ["classes"], ["f2u", "f2a"], 20
        args.out, args.figures = args.out.with_name(args.out.name + "_quick"), args.out.with_name("figures_quick")
    results = Results.of(args)
    if not args.report:
        for dataset in args.datasets:
            for split in args.splits:
                for rule in args.rules:
                    for cell in cells(dataset, split, rule, args.steps, args.quick):
                        results.run(cell, args.root, n=500 if args.quick else 10000)
    if not args.quick:          # a selection chooses what to train; BENCHMARKS.md keeps the whole table
        args.datasets, args.splits, args.rules = DATASETS, SPLITS, RULES
    body = "\n".join([comparison(results, args), "", *untrained(results, args),
                      "**Orderings** (the poster: f2a <= f2u < mdgan, gman; means over seeds):", "",
                      orderings(results, args), "", *figures(results, args)])
    publish_table("reproduce_f2u", "F2U reproduction", body, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
