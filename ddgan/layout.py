"""Print how many ranks a config needs: one per client, plus a dedicated generator rank if asked for.

    python -m ddgan.layout --config configs/paper/mnist_non_ovl_f2a.yaml train.generator_rank=dedicated
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ddgan.cli import print_for_config
    from ddgan.forgiver.layout import world_size

    return print_for_config("ddgan.layout", __doc__.split("\n\n")[0], world_size, argv)


if __name__ == "__main__":
    sys.exit(main())
