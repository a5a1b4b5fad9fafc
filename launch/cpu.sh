#!/usr/bin/env bash
# Train CONFIG on this machine's CPU: one gloo rank per client (partition.clients ranks).
#   launch/cpu.sh configs/gossip_5node.yaml train.steps=200
set -euo pipefail
source "$(dirname "$0")/local.sh"
[ "$#" -ge 1 ] || { echo "usage: launch/cpu.sh CONFIG [key=value ...]" >&2; exit 2; }
local_train cpu gloo "$@"
