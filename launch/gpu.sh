#!/usr/bin/env bash
# Train CONFIG on this machine's GPUs: one NCCL rank per client, rank r on cuda:r (with
# train.generator_rank=dedicated, G alone on cuda:0 and client k on cuda:k+1), so the ranks
# (python -m ddgan.layout) must not exceed the GPU count.  (Clusters: see slurm/.)
#   launch/gpu.sh configs/paper/mnist_non_ovl_f2a.yaml data.root=/datasets
set -euo pipefail
source "$(dirname "$0")/local.sh"
[ "$#" -ge 1 ] || { echo "usage: launch/gpu.sh CONFIG [key=value ...]" >&2; exit 2; }
local_train cuda nccl "$@"
