"""Which discriminator normalisation and which F2A lambda let the forgiver rules keep every client.

    python bench/forgiveness.py                  # every part below (~8 h on 2 cores), resumable
    python bench/forgiveness.py --parts lambda digits
    python bench/forgiveness.py --parts digits --only '*_spectral*_s0_*'   # a subset of a part's cells
    python bench/forgiveness.py --report         # only rebuild the tables from the stored cells
    python bench/forgiveness.py --quick          # a smoke run in about a minute, printed only

Parts (each cell is a real torchrun training run plus ``ddgan.eval`` on 10,000 samples; cells are
kept in bench/results.json, shared with bench/reproduce_f2u.py):

* ``lambda``: F2A on digits (Non-OVL, 600 steps, the default D) with lambda learned on the
  generator's or the discriminator's objective, or fixed at 0, 1, 5 or 20; 2 seeds. On MNIST
  Non-OVL (1,500 steps, seed 0) the two objectives.
* ``digits``: every rule under every ``model.d_norm`` on digits (Non-OVL, 600 steps), 2 seeds.
* ``mnist``: every rule on MNIST Non-OVL (1,500 steps) with batchnorm and with the default D,
  seed 0, plus seed 1 with the default D (the targets are means of 2 seeds).
* ``skew``: f2u_balanced with equal or shard-size shares on a Dirichlet(0.3) split (digits, 2
  seeds; MNIST, seed 0).
* ``variants``: F2A with the pipelined step (dedicated generator rank, feedback one step stale;
  digits 2 seeds, MNIST seed 0), to hold against the synchronous rows above; and F2A in secure
  mode against plain feedback with the same settings (lambda on G's objective, at most 20; digits,
  seed 0): they should agree to the fixed-point quantisation. And the centralized GAN on MNIST
  with a batch of 320 (real and generated) per step: the real data the 5 clients' Ds see per
  step together, to hold against the decentralized rules at equal real data per generator step.

The tables (one per part, and the targets) go to stdout and to BENCHMARKS.md; a cell not yet run
shows the command that fills it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import (  # noqa: E402
    QUICK,
    QUICK_CLIENTS,
    RULES,
    Cell,
    Results,
    generator_metrics,
    mean_spread,
    table_arguments,
)
from bench.report import publish_table  # noqa: E402
from bench.yardstick import mixed_notes  # noqa: E402
from ddgan.core.config import AlgoConfig, ModelConfig  # noqa: E402
from ddgan.core.models import D_NORMS  # noqa: E402

DEFAULT_NORM = ModelConfig().d_norm
F2A_OBJECTIVE = AlgoConfig().lambda_objective
LAMBDA = {"lam-generator": ("algo.learn_lambda=true", "algo.lambda_objective=generator"),
          "lam-discriminator": ("algo.learn_lambda=true", "algo.lambda_objective=discriminator"),
          **{f"lam-fixed{v}": ("algo.learn_lambda=false", f"algo.lambda_init={v}") for v in (0, 1, 5, 20)}}
VARIANTS = {"pipeline": ("train.generator_rank=dedicated", "train.pipeline=true"),
            "lam-generator-max20": ("algo.lambda_objective=generator", "algo.lambda_max=20"),
            "secure": ("algo.lambda_objective=generator", "algo.lambda_max=20", "comm.exchange=secure"),
            "batch320": ("train.batch_size=320",)}
SKEW = {"balance-equal": ("partition.alpha=0.3", "algo.balance=equal"),
        "balance-shard": ("partition.alpha=0.3", "algo.balance=shard_size")}
TARGET_RULES = ("f2u", "f2a", "f2u_balanced", "mdgan", "gman")
PARTS = ["lambda", "mnist", "digits", "skew", "variants"]


def parts(quick: bool) -> dict[str, list[list[Cell]]]:
    """Each part's table rows; a row is the cells (seeds) averaged into it."""
    if quick:
        return {"quick": [[Cell("digits", "classes", rule, norm, 0, 20, extra=(*QUICK, *QUICK_CLIENTS))]
                          for rule, norm in (("f2u", DEFAULT_NORM), ("f2a", "batch"))]}
    seeds = (0, 1)
    return {
        "lambda": [[Cell("digits", "non_ovl", "f2a", DEFAULT_NORM, s, 600, v, LAMBDA[v]) for s in seeds] for v in LAMBDA]
        + [[Cell("mnist", "non_ovl", "f2a", DEFAULT_NORM, 0, 1500, v, LAMBDA[v])] for v in ("lam-generator",
                                                                                           "lam-discriminator")],
        "digits": [[rule_cell("digits", rule, norm, s, 600) for s in seeds] for rule in RULES for norm in D_NORMS],
        "mnist": [[rule_cell("mnist", rule, norm, s, 1500) for s in ((0, 1) if norm == DEFAULT_NORM else (0,))]
                  for rule in RULES for norm in ("batch", DEFAULT_NORM)],
        "variants": [[Cell("digits", "non_ovl", "f2a", DEFAULT_NORM, s, 600, "pipeline",
                           (*VARIANTS["pipeline"], *LAMBDA[f"lam-{F2A_OBJECTIVE}"])) for s in seeds],
                     [Cell("mnist", "non_ovl", "f2a", DEFAULT_NORM, 0, 1500, "pipeline",
                           (*VARIANTS["pipeline"], *LAMBDA[f"lam-{F2A_OBJECTIVE}"]))]]
        + [[Cell("digits", "non_ovl", "f2a", DEFAULT_NORM, 0, 600, v, VARIANTS[v])] for v in ("lam-generator-max20",
                                                                                            "secure")]
        + [[Cell("mnist", "non_ovl", "centralized", DEFAULT_NORM, 0, 1500, "batch320", VARIANTS["batch320"])]],
        "skew": [[Cell("digits", "dirichlet", "f2u_balanced", DEFAULT_NORM, s, 600, v, SKEW[v]) for s in seeds]
                 for v in SKEW] + [[Cell("mnist", "dirichlet", "f2u_balanced", DEFAULT_NORM, 0, 1500, v,
                                         SKEW[v])] for v in SKEW],
    }


def rule_cell(dataset: str, rule: str, norm: str, seed: int, steps: int, split: str = "non_ovl") -> Cell:
    """A rule's cell (the centralized baseline's is the same for every split); F2A's lambda
    descends the default objective (named in the cell, so that cells of another objective are never
    mistaken for it)."""
    variant = f"lam-{F2A_OBJECTIVE}" if rule == "f2a" else ""
    split = "non_ovl" if rule == "centralized" else split
    return Cell(dataset, split, rule, norm, seed, steps, variant, LAMBDA.get(variant, ()))


def command(part: str) -> str:
    return f"python bench/forgiveness.py --parts {part}"


def row(results: Results, cells: list[Cell], part: str, root: Path) -> str:
    first = cells[0]
    label = (f"| {first.dataset} | {first.rule} | {first.norm} | {first.variant or '-'} | ")
    done = [r for r in (results.get(c, root) for c in cells) if r is not None]
    if not done:
        return label + f"not run: `{command(part)}` |" + " |" * 8
    m = [generator_metrics(r) for r in done]
    shares = [r["forgiver_share"] for r in done if "forgiver_share" in r]
    share = "/".join(f"{sum(s[k] for s in shares) / len(shares):.2f}" for k in range(len(shares[0]))) if shares else "-"
    lam = [r["lambda_end"] for r in done if "lambda_end" in r and first.rule == "f2a"]
    return label + " | ".join([
        f"{len(done)}", mean_spread([x["classes_covered"] for x in m], ".1f"),
        mean_spread([x["confident_classes_covered"] for x in m], ".1f"),
        mean_spread([x["confident_fraction"] for x in m], ".2f"), mean_spread([x["fid_classifier"] for x in m], ".1f"),
        mean_spread([x["precision"] for x in m], ".2f"), mean_spread([x["recall"] for x in m], ".2f"),
        share, mean_spread(lam, ".2f")]) + " |"


HEADER = ("| data | rule | d_norm | variant | seeds | classes (argmax) | classes (confident) | confident fraction | "
          "fid_classifier | precision | recall | forgiver share per client (last fifth) | lambda at the end |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def targets(results: Results, root: Path) -> str:
    """The issue's targets on MNIST Non-OVL with the default D, mean of 2 seeds (of the seeds run so
    far, said so, until both are)."""
    def mean_of(rule: str, key: str) -> tuple[float | None, set[int]]:
        """The mean over the seeds run so far, and those seeds."""
        done = {s: results.get(rule_cell("mnist", rule, DEFAULT_NORM, s, 1500), root) for s in (0, 1)}
        done = {s: generator_metrics(r)[key] for s, r in done.items() if r is not None}
        return (sum(done.values()) / len(done) if done else None), set(done)

    lines = ["| target (MNIST Non-OVL, 1,500 steps, mean of 2 seeds) | measured | met |", "| --- | --- | --- |"]

    def check(name: str, measured: list[tuple[float | None, set[int]]], ok) -> None:
        values, seeds = [v for v, _ in measured], set().union(*(s for _, s in measured))
        if any(v is None for v in values):
            lines.append(f"| {name} | not run: `{command('mnist')}` | - |")
            return
        partial = "" if seeds == {0, 1} else f" (seed {min(seeds)} only so far; `{command('mnist')}`)"
        lines.append(f"| {name} | {' / '.join(f'{v:.1f}' for v in values)}{partial} | "
                     f"{'yes' if ok(*values) else 'no'} |")

    for rule in ("f2u", "f2a"):
        check(f"{rule}: >= 9 classes by argmax, >= 8 confidently",
              [mean_of(rule, "classes_covered"), mean_of(rule, "confident_classes_covered")],
              lambda a, c: a >= 9 and c >= 8)
    check("f2u_balanced: 10 by argmax and 10 confidently",
          [mean_of("f2u_balanced", "classes_covered"), mean_of("f2u_balanced", "confident_classes_covered")],
          lambda a, c: a >= 10 and c >= 10)
    fid = {rule: mean_of(rule, "fid_classifier") for rule in (*TARGET_RULES, "centralized")}
    # the best decentralized rule is known only once every rule is measured: over the rules measured so
    # far it could be a collapsed baseline, and the centralized GAN would "win" against it
    decentralized = [m for rule, m in fid.items() if rule != "centralized"]
    best = (None, set()) if any(v is None for v, _ in decentralized) else min(decentralized, key=lambda m: m[0])
    check("fid_classifier: f2a <= f2u (f2a / f2u)", [fid["f2a"], fid["f2u"]], lambda a, u: a <= u)
    check("fid_classifier: f2u < mdgan and f2u < gman (f2u / mdgan / gman)", [fid["f2u"], fid["mdgan"], fid["gman"]],
          lambda u, m, g: u < m and u < g)
    check("centralized is the best fid_classifier (centralized / best decentralized)", [fid["centralized"], best],
          lambda c, b: c <= b)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    table_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="2 small digits cells of 20 steps; printed, not stored")
    args = parser.parse_args()
    all_parts = parts(args.quick)
    chosen = ["quick"] if args.quick else args.parts
    if args.quick:
        args.out = args.out.with_name(args.out.name + "_quick")
    results = Results.of(args)
    if not args.report:
        for part in chosen:
            for cells in all_parts[part]:
                for cell in cells:
                    results.run(cell, args.root, n=500 if args.quick else 10000)
    sections = []
    for part in (chosen if args.quick else PARTS):
        sections += [f"**{part}**", "", HEADER, *(row(results, cells, part, args.root) for cells in all_parts[part]), ""]
        done = [r for cells in all_parts[part] for c in cells if (r := results.get(c, args.root)) is not None]
        if notes := mixed_notes(done):
            sections += [*notes, ""]
    if not args.quick:
        sections += ["**targets**", "", targets(results, args.root)]
    publish_table("forgiveness", "Forgiveness: D normalisation, F2A's lambda, balance", "\n".join(sections),
                  args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
