"""Shared command-line plumbing: ``--config FILE`` plus dotted overrides, and one-line errors."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ddgan.compat import require_torch
from ddgan.config import load_config
from ddgan.errors import UserError

OVERRIDES_HELP = ("dotted overrides of config fields, e.g. train.steps=20 partition.clients=2 "
                  "partition.classes='[[0,1],[2,3]]' (values are read as YAML)")


def config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="YAML run config (default: all defaults, see configs/default.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDES_HELP)
    return parser


def parse_args(prog: str, description: str, argv: list[str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse the command line and load + validate the config (replacing ``args.config``)."""
    parser = parser or config_parser(prog, description)
    args = parser.parse_args(argv)
    require_torch()
    args.config_path = args.config
    args.config = load_config(args.config, args.overrides)
    return args


def run_cli(parse: Callable[[], argparse.Namespace], body: Callable[[argparse.Namespace], int]) -> int:
    """Run ``body(parse())``; a UserError becomes ``error: <message>`` on stderr and its exit code."""
    try:
        require_torch()
        return body(parse())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


def print_for_config(prog: str, description: str, show: Callable, argv: list[str] | None = None) -> int:
    """A CLI that loads a config from the command line and prints ``show(config)``."""
    def body(args: argparse.Namespace) -> int:
        print(show(args.config))
        return 0

    return run_cli(lambda: parse_args(prog, description, argv), body)
