#!/usr/bin/env bash
# Set up (first time: ~2 min) and train the default job: F2A on the bundled digits, 5 clients as
# 5 torchrun ranks on this machine's CPU (gloo). Extra arguments are config overrides, e.g.
#   launch/run.sh train.steps=100
exec "$(dirname "$0")/cpu.sh" "${CONFIG:-configs/default.yaml}" "$@"
