#!/usr/bin/env bash
# Train CONFIG on this machine's GPUs: one NCCL rank per GPU, rank r on cuda:r. With fewer GPUs
# than clients (gossip and fedavg: nodes) they are co-hosted (train.client_ranks = the GPU count:
# the default job's 5 clients run on one GPU).
# (Clusters: see slurm/.)
#   launch/gpu.sh configs/default.yaml
#   launch/gpu.sh configs/paper/mnist_non_ovl_f2a.yaml data.root=/datasets
set -euo pipefail
source "$(dirname "$0")/local.sh"
[ "$#" -ge 1 ] || { echo "usage: launch/gpu.sh CONFIG [key=value ...]" >&2; exit 2; }
local_train cuda nccl "$@"
