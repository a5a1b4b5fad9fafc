"""The configuration reference, docs/configuration.md, generated from config.py: every section and
key with its type, default and docstring, then the renamed and retired keys.

    python -m ddgan.core.reference > docs/configuration.md

tests/test_docs.py fails when the file differs from what this prints, so the page cannot drift from
the code. Reads config.py's source for the docstrings (Python keeps no attribute docstrings).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import typing

from ddgan.core import config

HEADER = """# Configuration

Every key of a run config, generated from `ddgan/core/config.py` by `python -m ddgan.core.reference`
(a test keeps this page equal to its output). A run is a YAML file of these sections
(`configs/default.yaml`) plus dotted overrides on the command line, `section.key=value`, the value
read as YAML:

```bash
python -m ddgan.train --config configs/default.yaml train.steps=20 partition.clients=2 \\
    partition.scheme=classes partition.classes='[[0,1,2,3,4],[5,6,7,8,9]]'
```

An unknown key, a value of the wrong type or one outside its choices stops the run before any work,
in one line that names the key, the value and where it was set (the file or the command line),
with exit code 2.
"""


def _docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings: the string expression right after each annotated field."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    out = {}
    for field_node, doc in zip(body, body[1:]):
        if (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)
                and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                and isinstance(doc.value.value, str)):
            out[field_node.target.id] = inspect.cleandoc(doc.value.value)
    return out


def _type(tp) -> str:
    return str(tp) if typing.get_origin(tp) else getattr(tp, "__name__", str(tp))


def _cell(text: str) -> str:
    """One table cell: one line, reStructuredText's double backticks as Markdown's single ones."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def reference() -> str:
    lines = [HEADER]
    hints = typing.get_type_hints(config.Config)
    for section in dataclasses.fields(config.Config):
        cls = hints[section.name]
        docs, types = _docstrings(cls), typing.get_type_hints(cls)
        lines += [f"## {section.name}", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        defaults = cls()
        for f in dataclasses.fields(cls):
            default = getattr(defaults, f.name)
            shown = "(empty)" if default in ("", []) else f"`{default}`"
            lines.append(f"| `{section.name}.{f.name}` | {_type(types[f.name])} | {shown} | "
                         f"{_cell(docs.get(f.name, ''))} |")
        lines.append("")
    lines += ["## Renamed and retired keys", "",
              "Old configs and checkpoints still load. A renamed key is read as its new one (the run says "
              "so once); a retired key loads only at the value at which it did nothing.", "",
              "| key | now |", "| --- | --- |"]
    lines += [f"| `{old}` | renamed to `{new}` |" for old, (new, _) in config.RENAMED.items()]
    lines += [f"| `{old}` | retired; loads only as `{inert}` |" for old, inert in config.RETIRED.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
