#!/usr/bin/env bash
# The body of every sbatch template: start one torchrun agent per node through ddgan.slurm, and
# when SLURM warns that the time limit is near (sbatch --signal=B:USR1@...), ask the run to
# checkpoint (a STOP file in its run directory), wait for it to exit cleanly, and requeue the job;
# the requeued job resumes from that checkpoint (train.resume: auto).
#   CONFIG   the run config (default configs/default.yaml); arguments are config overrides
#   PYTHON   the interpreter (default: .venv/bin/python of the submit directory, else python3)
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:-$PWD}"
CONFIG="${CONFIG:-configs/default.yaml}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON="$PWD/.venv/bin/python"; else PYTHON=python3; fi
fi
# the config and the data, checked once here (one line, exit 2) before any rank starts
"$PYTHON" -m ddgan.layout --check-data --config "$CONFIG" "$@" > /dev/null || exit 2
RUN_DIR="$("$PYTHON" -c 'import sys; from ddgan.core.config import load_config; print(load_config(sys.argv[1], sys.argv[2:]).run.dir)' "$CONFIG" "$@")" || exit 2
mkdir -p "$RUN_DIR"
echo "[job ${SLURM_JOB_ID:-?}] $(date -Is) nodes=${SLURM_JOB_NODELIST:-?} config=$CONFIG run_dir=$RUN_DIR restarts=${SLURM_RESTART_COUNT:-0}"

requeue=0
on_time_limit() {
    echo "[job ${SLURM_JOB_ID:-?}] $(date -Is) time limit near: asking the run to checkpoint and stop"
    touch "$RUN_DIR/STOP"
    requeue=1
}
trap on_time_limit USR1

srun --ntasks-per-node=1 --kill-on-bad-exit=1 "$PYTHON" -m ddgan.slurm --config "$CONFIG" "$@" &
pid=$!
status=0
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid"          # returns early when the trap fires; keep waiting for the clean exit
    status=$?
done
if [ "$requeue" -eq 1 ] && [ "$status" -eq 0 ]; then
    echo "[job ${SLURM_JOB_ID:-?}] $(date -Is) checkpointed; requeueing"
    scontrol requeue "$SLURM_JOB_ID"
fi
echo "[job ${SLURM_JOB_ID:-?}] $(date -Is) exit $status"
exit "$status"
