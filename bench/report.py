"""BENCHMARKS.md is assembled from sections, one per benchmark script, each replaced in place.

A rebuilt section never loses a measured row to a "not run" one. A row's cells can be missing
from the store for two reasons: the cells measured before 2026-12-01 were stored beside their runs,
and those were lost with their machine; and a cell trained before a default changed (the averaged
generator, ``train.g_ema``, say) is stale against the config its row now names (bench/cells.py's
``same_config``). Either way its row lives on only in BENCHMARKS.md. When a rebuilt table has no
cell for a row (``not run`` / ``incomplete``) that the section's previous version showed measured,
the old row stays, marked with a dagger, and a note under the section says so. Training the row's
cells again replaces it.
A row a table marks optional (a further seed, say) is dropped unless such an old row stands in.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nMeasured numbers only; each section says the command, the machine and the date.\n"
KEPT = "†"
KEPT_NOTE = (f"{KEPT} the previous table's row, not rebuilt from bench/results.json: its cells were measured before "
             "2026-12-01, when results were kept beside their runs and were lost with them, or were trained before "
             "a default changed (before the averaged generator, say, their samples came from the raw G), so they "
             "no longer match the config the row names today. Training the row's cells again (the script with "
             "`--only` their names) replaces it.")
OPTIONAL = "not run, optional"      # a row the table shows only if an earlier measurement of it is kept


def cells_of(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def unmeasured(cell: str) -> bool:
    return cell.startswith("not run") or cell == "incomplete"


def under_headers(text: str):
    """Each line of ``text`` with the table it belongs to (None outside tables): the table's header
    line and how many tables with that header came before it in ``text``, since the tables of one
    section can share a header (forgiveness's "lambda" and "mnist" tables) and their labels."""
    table, seen = None, {}
    for line in text.splitlines():
        if not line.startswith("| "):
            table = None
        elif table is None:
            table = (line.strip(), seen.get(line.strip(), 0))
            seen[line.strip()] = table[1] + 1
        yield table, line


def table_rows(text: str) -> dict[tuple[str, int], list[list[str]]]:
    """The rows of each table in ``text`` (header and separators left out), under its key."""
    tables = {}
    for table, line in under_headers(text):
        if table is not None and line.strip() != table[0] and not set(line) <= set("|- "):
            tables.setdefault(table, []).append(cells_of(line))
    return tables


def keep_measured(old: str, new: str) -> str:
    """``new`` with each row that has nothing at some column (``not run`` / ``incomplete``) replaced
    by the row of the same table of ``old`` (the same header, as many such tables before it) that has
    the same label (the cells before that column) and a measurement there; a kept row keeps its mark.
    Two tables of a section may share labels (a dataset, split and metric, say), so a row is only ever
    matched within its own table. Optional rows nothing stands in for are dropped."""
    tables = table_rows(old)
    out, kept = [], False
    for table, line in under_headers(new):
        cells = cells_of(line) if table is not None else []
        gap = next((i for i, c in enumerate(cells) if unmeasured(c)), None)
        if gap:
            twin = next((r for r in tables.get(table, [])
                         if r[:gap] == cells[:gap] and len(r) > gap and not unmeasured(r[gap])), None)
            if twin is not None:
                twin = list(twin)
                if not twin[gap].endswith(KEPT):
                    twin[gap] += f" {KEPT}"
                line, kept = "| " + " | ".join(twin) + " |", True
            elif cells[gap] == OPTIONAL:
                continue
        out.append(line)
    body = "\n".join(out)
    return body + ("\n\n" + KEPT_NOTE if kept and KEPT_NOTE not in body else "")


def update_section(name: str, body: str, title: str | None = None) -> str:
    """Replace (or append) the section between ``<!-- name -->`` markers; return the body written."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.DOTALL)
    previous = pattern.search(text)
    body = keep_measured(previous.group(0) if previous else "", body.strip())
    block = f"<!-- {name} -->\n## {title or name}\n\n{body.strip()}\n<!-- /{name} -->"
    text = pattern.sub(lambda _: block, text) if previous else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)
    return body


def publish_table(name: str, title: str, table: str, quick: bool) -> None:
    """Print ``table`` as stored; unless it is a quick smoke run, store it with the command that made it."""
    if quick:
        print(keep_measured("", table))
        return
    command = " ".join(["python", *sys.argv])
    print(update_section(name, f"`{command}`, {time.strftime('%Y-%m-%d')}, 2 CPU cores.\n\n{table}", title=title))
