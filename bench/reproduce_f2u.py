"""Reproduce the F2U paper's comparison: MNIST / Fashion-MNIST, Non-OVL / Mod-OVL, 5 clients.

    python bench/reproduce_f2u.py                                     # all 24 cells (~5 h on 2 cores), resumable
    python bench/reproduce_f2u.py --datasets mnist --splits non_ovl   # one row
    python bench/reproduce_f2u.py --report                            # only rebuild the tables and figures
    python bench/reproduce_f2u.py --quick                             # a smoke run on digits, printed only

Every cell trains the paper config (configs/paper/<dataset>_<split>_<rule>.yaml, the default D
for every rule) with torchrun, 5 ranks (the centralized GAN: 1 process with all data, the same
cell for both splits), batch 64, then runs ``ddgan.eval`` on 10,000 samples of the averaged
generator. The Non-OVL rows, the poster's, train the converged budget (bench/convergence.py's
BUDGET, 15,000 steps: 80 passes over one client's 12,000-image shard, the poster's "up to 80
epochs"), seeds 0 and 1 (mean and range); their cells are bench/convergence.py's curves (each
checkpoint scored, Inception FID at the budget, about 15 minutes of a CPU per cell). Mod-OVL rows
train 1,500 steps, seed 0, labelled so. Cells are kept in bench/results.json, shared with
bench/forgiveness.py and bench/convergence.py. Tables go to stdout and BENCHMARKS.md: the
comparison, the cells it still lacks with the command that trains them, the poster's orderings
(f2a <= f2u < mdgan, gman on fid_classifier, and on Inception FID where it was computed) with
whether each holds, and one figure per row with the six rules' sample grids (docs/figures/).

fid_classifier is the Frechet distance in a small MNIST/Fashion classifier's features; Inception
FID is the poster's metric (``ddgan.eval --inception on``), with the same 10,000 samples.
"""
from __future__ import annotations

import argparse
import statistics
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
    generator_metrics,
    mean_spread,
    table_arguments,
    yardstick,
)
from bench.convergence import BUDGET, EVERY, Scoring, curve_cell, score  # noqa: E402
from bench.forgiveness import DEFAULT_NORM, rule_cell  # noqa: E402
from bench.poster import POSTER  # noqa: E402
from bench.report import publish_table  # noqa: E402
from bench.yardstick import mixed_note, widest  # noqa: E402

RULES = ["f2u", "f2a", "f2u_balanced", "mdgan", "gman", "centralized"]
DATASETS, SPLITS = ["mnist", "fashion_mnist"], ["non_ovl", "mod_ovl"]
STEPS = {"non_ovl": BUDGET, "mod_ovl": 1500}     # a --quick run: 20
INTRO = ("Non-OVL rows: the converged budget, seeds 0 and 1 (bench/convergence.py's curves); Mod-OVL rows: 1,500 "
         "steps, seed 0. Every rule has the paper configs' one architecture and settings (spectral-norm Ds, MD-GAN "
         "swapping every 100 steps); the settings where MD-GAN and GMAN* do best are in [Every baseline at its best]"
         "(#every-baseline-at-its-best-md-gan-and-gman-on-mnist-non-ovl). The table before the averaged generator and "
         "the budget (1,500 steps everywhere, the raw G) is BENCHMARKS.md at commit ebc6ef0.")
FIGURES = ROOT / "docs" / "figures"
COLLAPSED_RECALL = 0.01      # below this a generator's samples recall none of the data


def cells(dataset: str, split: str, rule: str, quick: bool) -> list[Cell]:
    if quick:
        return [Cell("digits", "classes", rule, DEFAULT_NORM, 0, 20, "", (*QUICK, *QUICK_CLIENTS))]
    if split == "non_ovl":
        return [curve_cell(dataset, rule, EVERY, False, s) for s in (0, 1)]
    return [rule_cell(dataset, rule, DEFAULT_NORM, 0, STEPS[split], split)]


def inception(result: dict) -> float | None:
    """The cell's Inception FID: its own evaluation's, else its curve's at its last step."""
    if result["inception_fid"]["value"]:
        return result["inception_fid"]["value"]["0"]
    return result.get("curve", {}).get(str(result["step"]), {}).get("inception_fid")


def stored(results: Results, cs: list[Cell], root: Path) -> list[dict]:
    """The stored results of ``cs``; a cell not run is left out."""
    return [r for r in (results.get(c, root) for c in cs) if r is not None]


def metric(result: dict, key: str) -> float | None:
    """A result's ``key``: its Inception FID (None where not computed), else its generator's metric."""
    return inception(result) if key == "inception_fid" else generator_metrics(result)[key]


def fids(results: Results, cs: list[Cell], root: Path, key: str) -> list[float]:
    return [v for r in stored(results, cs, root) if (v := metric(r, key)) is not None]


def comparison(results: Results, args) -> str:
    lines = ["| dataset | split | steps | rule | seeds | fid_classifier | classes (argmax) | classes (confident) | "
             "precision | recall | Inception FID | poster Inception FID |", "| --- | --- | --- | --- | --- | --- | --- | --- | "
             "--- | --- | --- | --- |"]
    for dataset in args.datasets:
        for split in args.splits:
            for rule in args.rules:
                cs = cells(dataset, split, rule, args.quick)
                done = stored(results, cs, args.root)
                label = f"| {dataset} | {split} | {cs[0].steps:,} | {rule} | "
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
                    mean_spread(inception, ".2f") if inception else "not computed",
                    str(POSTER.get((dataset, split), {}).get(rule, "-"))]) + " |")
    return "\n".join(lines)


def classifiers(results: Results, dataset: str, splits: list[str], rules: list[str], args) -> list[str]:
    """The domain classifiers that scored the stored cells of ``rules`` (bench/cells.py's yardstick)."""
    return sorted({y for split in splits for rule in rules
                   for r in stored(results, cells(dataset, split, rule, args.quick), args.root) if (y := yardstick(r))})


def classifier_margin(results: Results, dataset: str, split: str, rules: list[str], key: str, args) -> float | None:
    """How far apart (relatively) ``rules``' scores on ``key`` must be to order them: 0 on Inception FID
    or where one domain classifier scored them all; where different ones did, bench/yardstick.py's
    widest spread, which the classifiers alone could make (None where it is not measured)."""
    mixed = key == "fid_classifier" and len(classifiers(results, dataset, [split], rules, args)) > 1
    return widest(dataset) if mixed else 0.0


def yardsticks(results: Results, args) -> list[str]:
    """A line per dataset whose rows' fid_classifier came from more than one domain classifier (each
    machine trained its own), with how far bench/yardstick.py measured a change of classifier to move
    the same samples' fid_classifier."""
    lines = [line for dataset in args.datasets
             if (line := mixed_note(dataset, classifiers(results, dataset, args.splits, args.rules, args)))]
    return ["**The fid_classifier yardstick**:", "", *lines, ""] if lines else []


def untrained(results: Results, args) -> list[str]:
    """The cells no stored result stands for (a row's missing seed, or the cells behind a † row), per
    dataset and split, with the command that trains them (it skips the stored cells)."""
    lines = []
    for dataset in args.datasets:
        for split in args.splits:
            missing = {}
            for rule in args.rules:
                for c in cells(dataset, split, rule, args.quick):
                    if results.get(c, args.root) is None:
                        missing.setdefault(rule, []).append(f"s{c.seed}")
            if missing:
                which = "; ".join(f"{rule} {', '.join(seeds)}" for rule, seeds in missing.items())
                lines.append(f"- {dataset} {split} ({which}): `{command(dataset, split)}`")
    if not lines:
        return []
    return ["**Cells not yet trained** (a row's missing seed, or the cells behind a † row; the command trains only "
            "the cells not stored; on 2 cores a 1,500-step cell takes about 10 minutes, a Non-OVL one at the budget about "
            "70, and 15 more for its Inception FID):", "", *lines, ""]


def all_collapsed(got: list[dict]) -> bool:
    """Whether there are results and every one recalls none of the data: a collapsed GAN."""
    return bool(got) and all(generator_metrics(r)["recall"] < COLLAPSED_RECALL for r in got)


def collapsed(results: Results, dataset: str, split: str, rule: str, args) -> bool:
    """Whether every stored seed of a rule's cell recalls none of the data."""
    return all_collapsed(stored(results, cells(dataset, split, rule, args.quick), args.root))


def orderings(results: Results, args) -> str:
    """The poster's orderings, per dataset and split, on the means over seeds. An ordering over a
    collapsed baseline holds only because the baseline is broken: it says so, and a line under the
    table points to the baselines' best settings. Two rules whose seeds overlap are not ordered
    (marked open), and on fid_classifier two rules that different machines' classifiers scored
    are ordered only by a gap wider than bench/yardstick.py's spread."""
    lines = ["| dataset | split | steps | metric | f2a <= f2u | f2u < mdgan | f2u < gman | values (f2a / f2u / mdgan / gman) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    any_collapsed = False
    for dataset in args.datasets:
        for split in args.splits:
            down = {b: collapsed(results, dataset, split, b, args) for b in ("mdgan", "gman")}
            for key in ("fid_classifier", "inception_fid"):
                seeds = {rule: fids(results, cells(dataset, split, rule, args.quick), args.root, key)
                         for rule in ("f2a", "f2u", "mdgan", "gman")}
                means = {rule: statistics.mean(values) if values else None for rule, values in seeds.items()}
                if key == "inception_fid" and all(v is None for v in means.values()):
                    continue
                label = f"| {dataset} | {split} | {cells(dataset, split, 'f2u', args.quick)[0].steps:,} | {key} | "
                if any(v is None for v in means.values()):
                    lines.append(label + f"incomplete | | | `{command(dataset, split)}` |")
                    continue

                def order(first: str, second: str, strict: bool = True) -> str:
                    """Whether ``first`` scores below ``second``; open where their seeds overlap, or (on
                    fid_classifier of cells that different classifiers scored) where the gap is within the
                    yardstick's spread, which the classifiers alone could make."""
                    low, high = sorted((means[first], means[second]))
                    below = means[first] < means[second] or (not strict and means[first] == means[second])
                    verdict = "holds" if below else "does not hold"
                    if max(map(min, (seeds[first], seeds[second]))) <= min(map(max, (seeds[first], seeds[second]))):
                        return verdict + " (open: seeds overlap)"
                    margin = classifier_margin(results, dataset, split, [first, second], key, args)
                    if margin is None:
                        return verdict + " (open: different classifiers, their spread not measured)"
                    if high < low * (1 + margin):        # never with margin 0: high >= low
                        return verdict + f" (open: within the classifiers' spread, {margin:.1%})"
                    return verdict

                holds = [order("f2a", "f2u", strict=False)]
                for baseline in ("mdgan", "gman"):
                    any_collapsed |= down[baseline]
                    holds.append(order("f2u", baseline)
                                 + (f" ({baseline} collapsed: recall < {COLLAPSED_RECALL})" if down[baseline] else ""))
                lines.append(label + " | ".join(holds)
                             + " | " + " / ".join(f"{means[r]:.1f}" for r in ("f2a", "f2u", "mdgan", "gman")) + " |")
    if any_collapsed:
        lines += ["", f"A collapsed baseline (recall below {COLLAPSED_RECALL} on every seed) loses to every rule "
                  "because it is broken, not because the rule is better: the settings where MD-GAN and GMAN* do "
                  "best are in [Every baseline at its best]"
                  "(#every-baseline-at-its-best-md-gan-and-gman-on-mnist-non-ovl)."]
    return "\n".join(lines)


@dataclass(frozen=True)
class Scored:
    """One rule's cells on one metric: means over seeds (precision and recall of the same cells)."""
    mean: float
    seeds: int
    precision: float
    recall: float
    low: float
    high: float

    @classmethod
    def of(cls, got: list[tuple[float, dict]]) -> "Scored":
        values = [v for v, _ in got]
        return cls(statistics.mean(values), len(got), statistics.mean(m["precision"] for _, m in got),
                   statistics.mean(m["recall"] for _, m in got), min(values), max(values))


def upper_bound(results: Results, args) -> str:
    """The centralized GAN against the best decentralized rule, per dataset, split and metric, on the
    means over seeds; with each one's precision and recall, which say why where it does not beat them.
    A row is settled when every decentralized rule is scored (until then the best rule is only the best
    so far), both have two seeds or more, and every seed of the better one beats every seed of the
    other (on fid_classifier, by more than bench/yardstick.py's spread where different machines'
    classifiers scored them): a rule not scored, one seed, or overlapping seeds leave the order open.
    That the centralized GAN is not better is also settled by any other rule that beats it so."""
    lines = ["| dataset | split | steps | metric | centralized | best decentralized rule | centralized better | "
             "settled | seeds (centralized / rule) | precision / recall (centralized; rule) |", "| --- " * 10 + "|"]
    behind = []
    for dataset in args.datasets:
        for split in args.splits:
            for key, fmt in (("fid_classifier", ".1f"), ("inception_fid", ".2f")):
                scored = {}
                for rule in args.rules:
                    # precision and recall of the same cells the metric's mean is over
                    got = [(v, generator_metrics(r)) for r in stored(results, cells(dataset, split, rule, args.quick),
                                                                      args.root) if (v := metric(r, key)) is not None]
                    if got:
                        scored[rule] = Scored.of(got)
                rules = [r for r in scored if r != "centralized"]
                if "centralized" not in scored or not rules:
                    continue
                best = min(rules, key=lambda r: scored[r].mean)
                mine, theirs = scored["centralized"], scored[best]
                better = mine.mean < theirs.mean
                if not better:
                    behind.append(mine.precision < theirs.precision and mine.recall > theirs.recall)

                unscored = [r for r in args.rules if r != "centralized" and r not in scored]

                def open_by(rule: str) -> list[str]:
                    """Why the order of the centralized GAN and ``rule`` is not settled (empty: it is)."""
                    other = scored[rule]

                    def apart(margin: float) -> bool:
                        """Every seed of the better one beats every seed of the other by more than ``margin``."""
                        return mine.high * (1 + margin) < other.low if better else mine.low > other.high * (1 + margin)

                    margin = classifier_margin(results, dataset, split, ["centralized", rule], key, args)
                    why = [f"{', '.join(unscored)} not scored"] if unscored else []
                    if min(mine.seeds, other.seeds) < 2:
                        why.append("one seed")
                    elif not apart(0.0):
                        why.append("seeds overlap")
                    elif margin is None:
                        why.append("scored by different classifiers, their spread not measured")
                    elif not apart(margin):
                        why.append(f"seeds apart by less than the classifiers' spread ({margin:.1%})")
                    return why

                why = open_by(best)
                # "centralized is not better" is settled by any rule that beats it apart, not only the best one
                by = next((r for r in sorted(rules, key=lambda r: scored[r].mean)
                           if r != best and scored[r].mean < mine.mean and not open_by(r)), None) \
                    if why and not better else None
                if not why:
                    settled = "yes"
                elif by:
                    settled = f"yes, by {by} {scored[by].mean:{fmt}} ({best}: {'; '.join(why)})"
                else:
                    settled = f"no: {'; '.join(why)}"
                lines.append(f"| {dataset} | {split} | {cells(dataset, split, best, args.quick)[0].steps:,} | {key} | "
                             f"{mine.mean:{fmt}} | {best} {theirs.mean:{fmt}} | {'yes' if better else 'no'} | "
                             f"{settled} | {mine.seeds} / {theirs.seeds} | {mine.precision:.2f} / {mine.recall:.2f}; "
                             f"{theirs.precision:.2f} / {theirs.recall:.2f} |")
    if len(lines) == 2:
        return "No centralized cell and decentralized rule scored on the same row yet."
    if behind and all(behind):
        lines += ["", "Where the centralized GAN is not better, its samples cover more of the data (higher recall) "
                  "less cleanly (lower precision) than the rule's: fid_classifier and Inception FID weigh that trade "
                  "differently."]
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
            seed0 = {rule: cells(dataset, split, rule, args.quick)[0] for rule in args.rules}
            grids = [(rule, results.grids(cell.name) / "samples_node_0.png") for rule, cell in seed0.items()
                     if results.get(cell, args.root) is not None]       # a stale cell's grid is not the table's
            grids = [(rule, g) for rule, g in grids if g.exists()]
            steps = seed0[args.rules[0]].steps
            path = Path(args.figures) / f"f2u_{dataset}_{split}_{steps}.png"
            link = f"![{dataset} {split}]({path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})"
            if not grids:        # (the grids are kept in git beside the store: a figure never loses one)
                continue
            fig, axes = plt.subplots(1, len(grids), figsize=(max(2.6 * len(grids), 5.2), 2.9))   # (room for the title)
            for ax, (rule, grid) in zip(list(axes) if len(grids) > 1 else [axes], grids):
                ax.imshow(mpimg.imread(grid), cmap="gray", vmin=0, vmax=1)  # no contrast stretch: grey stays grey
                ax.set_title(rule, fontsize=10)
                ax.axis("off")
            fig.suptitle(f"{dataset}, {split}: 64 samples per rule (seed 0, {steps:,} steps)", fontsize=10)
            fig.tight_layout()
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=90)
            plt.close(fig)
            links.append(link)
    return links


def command(dataset: str, split: str, rule: str | None = None) -> str:
    return f"python bench/reproduce_f2u.py --datasets {dataset} --splits {split}" + (f" --rules {rule}" if rule else "")


def curve_scoring(cell: Cell, root: Path) -> Scoring:
    """How a Non-OVL curve cell is scored: Inception FID at its end only."""
    return Scoring(root, inception_at=(cell.steps,))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="the datasets to train (the table shows all)")
    parser.add_argument("--splits", nargs="+", default=SPLITS, help="the splits to train (the table shows all)")
    parser.add_argument("--rules", nargs="+", default=RULES, choices=RULES, help="the rules to train (the table shows "
                        "all)")
    table_arguments(parser)
    parser.add_argument("--figures", type=Path, default=FIGURES, help="where the sample-grid figures go")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small models on digits, f2u and f2a, 20 steps; printed, not stored")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.splits, args.rules = ["digits"], ["classes"], ["f2u", "f2a"]
        args.out, args.figures = args.out.with_name(args.out.name + "_quick"), args.out.with_name("figures_quick")
    results = Results.of(args)
    if not args.report:
        for dataset in args.datasets:
            for split in args.splits:
                for rule in args.rules:
                    for cell in cells(dataset, split, rule, args.quick):
                        if split == "non_ovl":       # a convergence curve, with Inception FID at its end
                            score(results, cell, curve_scoring(cell, args.root))
                        else:
                            results.run(cell, args.root, n=500 if args.quick else 10000)
    if not args.quick:          # a selection chooses what to train; BENCHMARKS.md keeps the whole table
        args.datasets, args.splits, args.rules = DATASETS, SPLITS, RULES
    body = "\n".join([INTRO, "", comparison(results, args), "", *yardsticks(results, args), *untrained(results, args),
                      "**Orderings** (the poster: f2a <= f2u < mdgan, gman; means over seeds; open where the two "
                      "rules' seeds overlap, and on fid_classifier where different classifiers scored them and their "
                      "gap is within the classifiers' spread):", "",
                      orderings(results, args), "",
                      "**The upper bound** (one discriminator on all the data against the best decentralized rule; "
                      "means over seeds; settled where every decentralized rule is scored, both have two seeds or "
                      "more and every seed of the better one beats every seed of the other, on fid_classifier by "
                      "more than the classifiers' spread where different ones scored them (that the centralized "
                      "GAN is not better, also by any other rule that beats it so); Mod-OVL rows are at "
                      "1,500 steps, before the centralized GAN, the slowest starter on every [convergence curve]"
                      "(#convergence-non-ovl-against-steps), has caught up):", "", upper_bound(results, args), "",
                      *figures(results, args)])
    publish_table("reproduce_f2u", "F2U reproduction", body, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
