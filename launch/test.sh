#!/usr/bin/env bash
# Set up (first time: ~2 min) and run the test suite (~7 min on 2 cores). Extra arguments go to
# pytest; the default skips the tests marked slow (run them with: launch/test.sh -m slow) and runs
# in two pytest-xdist workers.
source "$(dirname "$0")/setup.sh"
if [ "$#" -eq 0 ]; then set -- -m "not slow" -n 2 --durations=15; fi
exec python -m pytest -q "$@"
