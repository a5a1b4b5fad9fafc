"""Shared command-line plumbing: ``--config FILE`` plus dotted overrides, and one-line errors."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ddgan.core.compat import require_torch
from ddgan.core.config import TRAINERS, Config, load_config
from ddgan.core.errors import UserError

OVERRIDES_HELP = ("dotted overrides of config fields, e.g. train.steps=20 partition.clients=2 "
                  "partition.classes='[[0,1],[2,3]]' (values are read as YAML)")


def config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="YAML run config (default: every key at its default); "
                        "every key, its type, default and meaning: docs/configuration.md")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help=OVERRIDES_HELP)
    return parser


def load_checked(path, overrides: list[str] = ()) -> Config:
    """:func:`load_config`, plus the checks that need more than the config's own rules: a gossip
    graph is built (and checked) here, so that a bad one fails before any launch, in one line."""
    cfg = load_config(path, overrides)
    if TRAINERS[cfg.algo.name] == "gossip":
        from ddgan.nodes.topology import graph_of
        graph_of(cfg)
    return cfg


def parse_args(prog: str, description: str, argv: list[str] | None = None,
               parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse the command line and load + validate the config (replacing ``args.config``)."""
    parser = parser or config_parser(prog, description)
    args = parser.parse_args(argv)
    require_torch()
    args.config_path = args.config
    args.config = load_checked(args.config, args.overrides)
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
