"""Turn a SLURM allocation into a torchrun launch: one agent per node, c10d rendezvous at the first node.

    srun --ntasks-per-node=1 python -m ddgan.slurm --config configs/x.yaml [overrides]

runs, on every node of the job, ``torchrun --nnodes M --nproc_per_node N --rdzv_backend c10d
--rdzv_endpoint <first node>:<port> --rdzv_id ddgan-<job id> --max_restarts R -m ddgan.train ...``.
This is the only place that reads SLURM's environment (``slurm/*.sbatch`` call it):

* M: ``SLURM_JOB_NUM_NODES`` (or ``SLURM_NNODES``);
* N: ``DDGAN_NPROC_PER_NODE``, else ``SLURM_GPUS_ON_NODE``, else the GPUs torch sees, else 1;
* the first node: ``scontrol show hostnames $SLURM_JOB_NODELIST`` (a built-in expansion of
  ``node[01-04,07]`` lists where scontrol is absent); ``DDGAN_RDZV_HOST`` overrides;
* the port: 29500 + (job id mod 20000), so two jobs sharing a node do not collide;
  ``DDGAN_RDZV_PORT`` overrides;
* R: ``DDGAN_MAX_RESTARTS`` (default 3): a worker that dies restarts the whole group, which
  resumes from the newest complete checkpoint.

An allocation of fewer ranks (M x N) than the config's clients (gossip and fedavg: nodes) co-hosts
them: ``train.client_ranks`` is appended (:func:`ddgan.core.layout.fit`), so 20 clients run on 2
nodes x 4 GPUs as 8 ranks of 2 or 3 clients.

On clusters, point gloo/NCCL at the right network interface with ``GLOO_SOCKET_IFNAME`` and
``NCCL_SOCKET_IFNAME`` (e.g. ``ib0``) when the default route is not the fast fabric.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Mapping

from ddgan.core.errors import ConfigError, UserError


def expand_hostlist(nodelist: str) -> list[str]:
    """``a,b[01-03,07]-ib,c`` -> ['a', 'b01-ib', 'b02-ib', 'b03-ib', 'b07-ib', 'c'] (one bracket group per name)."""
    hosts: list[str] = []
    for name in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)?", nodelist):
        match = re.fullmatch(r"(.*)\[([^\]]*)\](.*)", name)
        if not match:
            hosts.append(name)
            continue
        head, ranges, tail = match.groups()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                hosts.append(f"{head}{str(i).zfill(len(lo))}{tail}")
    return hosts


def first_host(nodelist: str) -> str:
    if shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    return expand_hostlist(nodelist)[0]


def procs_per_node(env: Mapping[str, str]) -> int:
    if env.get("DDGAN_NPROC_PER_NODE"):
        return int(env["DDGAN_NPROC_PER_NODE"])
    if env.get("SLURM_GPUS_ON_NODE"):
        return int(env["SLURM_GPUS_ON_NODE"])
    import torch

    return max(1, torch.cuda.device_count())


def torchrun_args(env: Mapping[str, str]) -> list[str]:
    """The torchrun arguments (before ``-m ddgan.train``) for this node of the allocation."""
    try:
        job = int(env["SLURM_JOB_ID"])
        nnodes = int(env.get("SLURM_JOB_NUM_NODES") or env["SLURM_NNODES"])
        nodelist = env["SLURM_JOB_NODELIST"]
    except KeyError as missing:
        raise ConfigError(f"ddgan.slurm: {missing.args[0]} is not set; run this under srun inside a SLURM job") from None
    host = env.get("DDGAN_RDZV_HOST") or first_host(nodelist)
    port = int(env.get("DDGAN_RDZV_PORT") or 29500 + job % 20000)
    return ["--nnodes", str(nnodes), "--nproc_per_node", str(procs_per_node(env)),
            "--rdzv_backend", "c10d", "--rdzv_endpoint", f"{host}:{port}", "--rdzv_id", f"ddgan-{job}",
            "--max_restarts", env.get("DDGAN_MAX_RESTARTS", "3")]


def fitted(argv: list[str], ranks: int) -> list[str]:
    """``ddgan.train``'s arguments, with the overrides that run the config on ``ranks`` ranks."""
    from ddgan.cli import parse_args
    from ddgan.core.layout import fit

    return [*argv, *fit(parse_args("ddgan.slurm", "", argv).config, ranks)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        args = torchrun_args(os.environ)
        argv = fitted(argv, int(args[1]) * int(args[3]))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    cmd = [sys.executable, "-m", "torch.distributed.run", *args, "-m", "ddgan.train", *argv]
    print(f"[ddgan.slurm] node {os.environ.get('SLURM_NODEID', '?')}: {' '.join(cmd[1:])}", flush=True)
    os.execv(sys.executable, cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
