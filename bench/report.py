"""BENCHMARKS.md is assembled from sections, one per benchmark script, each replaced in place."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nMeasured numbers only; each section says the command, the machine and the date.\n"


def update_section(name: str, body: str, title: str | None = None) -> None:
    """Replace (or append) the section between ``<!-- name -->`` markers."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    block = f"<!-- {name} -->\n## {title or name}\n\n{body.strip()}\n<!-- /{name} -->"
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def publish_table(name: str, title: str, table: str, quick: bool) -> None:
    """Print ``table``; unless it is a quick smoke run, store it with the command that made it."""
    print(table)
    if not quick:
        command = " ".join(["python", *sys.argv])
        update_section(name, f"`{command}`, {time.strftime('%Y-%m-%d')}, 2 CPU cores.\n\n{table}", title=title)
