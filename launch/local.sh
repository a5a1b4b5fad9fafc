# Sourced by launch/cpu.sh and launch/gpu.sh: one torchrun rank per client rank on this machine (one
# per client unless train.client_ranks says fewer; plus one for a dedicated generator rank,
# train.generator_rank=dedicated). On fewer GPUs than that, the clients share the GPUs.
#   local_train DEVICE BACKEND CONFIG [overrides...]
# The config (after overrides) sets the number of ranks (python -m ddgan.layout prints it); the run
# directory's newest sample grid and metrics are printed at the end.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

resolved() {   # resolved KEY CONFIG [overrides...]: one field of the resolved config, or a one-line error
    python - "$@" <<'PY'
import operator, sys
from ddgan.core.config import load_config
from ddgan.core.errors import UserError
try:
    print(operator.attrgetter(sys.argv[1])(load_config(sys.argv[2], sys.argv[3:])))
except UserError as exc:
    sys.exit(f"error: {exc}")
PY
}

local_train() {
    local device="$1" backend="$2" config="$3"; shift 3
    local nproc run_dir
    nproc="$(python -m ddgan.layout --check-data --config "$config" "$@")" || exit 2
    run_dir="$(resolved run.dir "$config" "$@")" || exit 2
    if [ "$device" = cuda ]; then
        local gpus
        gpus="$(python -c 'import torch; print(torch.cuda.device_count())')"
        if [ "$gpus" -lt "$nproc" ]; then
            # fewer GPUs than ranks: the clients share them (train.client_ranks), where the algorithm allows
            local fit
            fit="$(python -m ddgan.layout --fit "$gpus" --config "$config" "$@")" || exit 2
            echo "note: $nproc ranks on $gpus GPU(s): the clients share them ($fit)" >&2
            set -- "$@" $fit
            nproc="$gpus"
        fi
    else
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    fi
    torchrun --standalone --nproc_per_node "$nproc" -m ddgan.train --config "$config" \
        "train.device=$device" "comm.backend=$backend" "$@"
    echo "sample grids: $(ls -1 "$run_dir"/samples/*.png 2>/dev/null | tail -n 1) (and earlier ones beside it)"
    echo "metrics: $run_dir/metrics.jsonl   checkpoints: $run_dir/checkpoints/"
}
