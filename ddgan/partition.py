"""Print how a config splits the data between clients: per-client class counts, with totals.

    python -m ddgan.partition --config configs/default.yaml partition.clients=3 partition.scheme=iid
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ddgan.cli import print_for_config
    from ddgan.data.partition import describe

    return print_for_config("ddgan.partition", __doc__.split("\n\n")[0], describe, argv)


if __name__ == "__main__":
    sys.exit(main())
