"""Print how many ranks a config needs (one per client rank, plus a dedicated generator rank if
asked for); ``--plan`` also prints what each rank holds.

    python -m ddgan.layout --config configs/paper/mnist_non_ovl_f2a.yaml train.generator_rank=dedicated
    python -m ddgan.layout --plan --config configs/default.yaml train.client_ranks=2
    python -m ddgan.layout --fit 1 --config configs/default.yaml   # prints train.client_ranks=1
    python -m ddgan.layout --check-data --config ...   # also open the training data (the launchers do)

Errors in the config (and, with ``--check-data``, a data set that is not at data.root) print one
line and exit 2: the launchers run this before torchrun starts any rank.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ddgan.cli import config_parser, parse_args, run_cli
    from ddgan.core.layout import Layout, fit, world_size

    parser = config_parser("ddgan.layout", __doc__.split("\n\n")[0])
    parser.add_argument("--plan", action="store_true", help="also print which clients (or nodes) each rank hosts")
    parser.add_argument("--fit", type=int, metavar="RANKS",
                        help="instead print the overrides that run the config on RANKS ranks (e.g. one per GPU): "
                             "nothing, or train.client_ranks=R; one line and exit 2 when it cannot fit")
    parser.add_argument("--check-data", action="store_true",
                        help="also open the training split at data.root (one line and exit 2 when it is not there)")

    def body(args) -> int:
        if args.check_data:
            from ddgan.data.datasets import open_source
            open_source(args.config.data, train=True)
        if args.fit is not None:
            print(" ".join(fit(args.config, args.fit)))
            return 0
        print(world_size(args.config))
        if args.plan:
            print(Layout.of(args.config).plan())
        return 0

    return run_cli(lambda: parse_args("ddgan.layout", "", argv, parser), body)


if __name__ == "__main__":
    sys.exit(main())
