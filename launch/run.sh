#!/usr/bin/env bash
# Set up (first time: ~2 min) and train the default job: F2A on the bundled digits, 5 clients as
# 5 torchrun ranks on this machine's CPU (gloo). Extra arguments are config overrides, e.g.
#   launch/run.sh train.steps=100
source "$(dirname "$0")/setup.sh"
CONFIG="${CONFIG:-configs/default.yaml}"
NPROC="$(python -c "import sys; from ddgan.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).partition.clients)" "$CONFIG" "$@")"
RUN_DIR="$(python -c "import sys; from ddgan.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).run.dir)" "$CONFIG" "$@")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
torchrun --standalone --nproc_per_node "$NPROC" -m ddgan.train --config "$CONFIG" "$@"
echo "sample grids: $(ls -1 "$RUN_DIR"/samples/*.png | tail -n 1) (and earlier ones beside it)"
echo "metrics: $RUN_DIR/metrics.jsonl   checkpoints: $RUN_DIR/checkpoints/"
