"""The docs say what the code does: the configuration reference is generated from config.py."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT
from ddgan.core import config
from ddgan.core.reference import reference


def test_the_configuration_reference_is_current():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == reference(), "regenerate it: python -m ddgan.core.reference > docs/configuration.md"


def test_the_reference_documents_every_key_with_a_meaning():
    page = reference()
    for section in config.Config().to_dict().items():
        name, keys = section
        for key in keys:
            row = next(line for line in page.splitlines() if line.startswith(f"| `{name}.{key}` |"))
            assert not row.endswith("|  |"), f"{name}.{key} has no docstring in config.py"
    assert "| `train.d_flood` | retired" in page and "| `model.d_batchnorm` | renamed to `model.d_norm` |" in page


def test_help_points_to_the_reference():
    out = subprocess.run([sys.executable, "-m", "ddgan.train", "--help"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    assert "docs/configuration.md" in out
