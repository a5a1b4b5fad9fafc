#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try ddgan's SLURM path on a laptop or in CI.
#   sudo slurm/local-cluster.sh start    # install (Debian/Ubuntu: apt), configure, start; waits for `sinfo` idle
#   sudo slurm/local-cluster.sh status
#   sudo slurm/local-cluster.sh stop     # stops only the daemons this script started (by their PIDs)
# Needs root (it writes /etc/slurm/slurm.conf, gres.conf and /etc/munge/munge.key when missing).
# The node advertises $DDGAN_SLURM_GPUS (8) count-only GPUs so that slurm/*.sbatch, which request
# GPUs, run as written; without CUDA the ranks train on the CPU with gloo.
set -euo pipefail
STATE="${DDGAN_SLURM_STATE:-/tmp/ddgan-slurm}"
HOST="$(hostname -s)"
# the cores this machine lets us use: nproc also obeys OMP_NUM_THREADS, which is a caller's thread
# setting (OMP_NUM_THREADS=1 declared a 1-CPU node, and a 2-CPU job stayed queued for good)
CPUS="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
FAKE_GPUS="${DDGAN_SLURM_GPUS:-8}"

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then return; fi
    command -v apt-get >/dev/null || { echo "local-cluster: apt-get not found; install slurmctld, slurmd, slurm-client and munge yourself" >&2; exit 3; }
    echo "[local-cluster] installing slurmctld slurmd slurm-client munge (apt, ~20 s)"
    # exit 3: the packages cannot be had here (no registry), as distinct from a cluster that fails
    apt-get update -qq >/dev/null || { echo "local-cluster: apt-get update failed" >&2; exit 3; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null \
        || { echo "local-cluster: apt-get install slurmctld slurmd slurm-client munge failed" >&2; exit 3; }
}

configure() {
    mkdir -p "$STATE"/{spool,ctld,log} /etc/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    cat > /etc/slurm/slurm.conf <<CONF
# written by ddgan slurm/local-cluster.sh
ClusterName=ddgan-local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/spool
StateSaveLocation=$STATE/ctld
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
KillWait=10
GresTypes=gpu
NodeName=$HOST CPUs=$CPUS Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    # Count-only "GPUs" (no devices): the GPU sbatch templates run unchanged, their ranks on the CPU.
    for i in $(seq 0 $((FAKE_GPUS - 1))); do   # character devices like /dev/null (slurmd insists)
        [ -c "$STATE/fake-gpu$i" ] || { rm -f "$STATE/fake-gpu$i"; mknod "$STATE/fake-gpu$i" c 1 3; }
    done
    echo "NodeName=$HOST Name=gpu File=$STATE/fake-gpu[0-$((FAKE_GPUS - 1))]" > /etc/slurm/gres.conf
}

start() {
    install
    configure
    if [ ! -S /run/munge/munge.socket.2 ] || ! munge -n >/dev/null 2>&1; then
        if id munge >/dev/null 2>&1; then runuser -u munge -- munged; else munged --force; fi
        pgrep -n munged > "$STATE/munged.pid"
    fi
    slurmctld -i                     # -i: ignore state left by an earlier cluster in $STATE
    for _ in $(seq 50); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
    slurmd
    sleep 0.5
    # a node drained by an earlier, differently configured start comes back
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        if sinfo -h -o '%t' 2>/dev/null | grep -q idle; then
            echo "[local-cluster] up: $(sinfo -h -o '%P %a %D %t %N')"; return 0
        fi
        sleep 0.3
    done
    echo "local-cluster: the node did not become idle; see $STATE/log/" >&2
    sinfo >&2 || true
    exit 1
}

stop() {
    for daemon in slurmd slurmctld munged; do
        pidfile="$STATE/$daemon.pid"
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" && echo "[local-cluster] stopped $daemon ($pid)"
        fi
        rm -f "$pidfile"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo 2>/dev/null || echo "local-cluster: not running" ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
