"""SLURM launch: the environment-to-torchrun logic, two simulated nodes, and a real one-node SLURM.

The last test starts Debian's slurmctld/slurmd/munge through ``slurm/local-cluster.sh`` (as root,
installing them with apt when missing), submits the project's own sbatch template with a short
digits job, waits for it, checks the run directory and the job log, and stops the daemons it
started. It skips, saying why, only where that is impossible (not root, or no apt-get).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port
from ddgan.core.errors import ConfigError
from ddgan.runtime.checkpoint import complete_checkpoints
from ddgan.slurm import expand_hostlist, torchrun_args

SMALL = ["model.g_width=8", "model.d_width=8", "model.z_dim=16", "train.batch_size=16", "partition.scheme=iid"]


@pytest.mark.parametrize("nodelist, hosts", [
    ("gpu07", ["gpu07"]),
    ("a,b[01-03,07]-ib,c", ["a", "b01-ib", "b02-ib", "b03-ib", "b07-ib", "c"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("node[001-002],login", ["node001", "node002", "login"]),
])
def test_expand_hostlist(nodelist, hosts):
    assert expand_hostlist(nodelist) == hosts


def test_torchrun_args_from_the_slurm_environment():
    env = {"SLURM_JOB_ID": "123456", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "zz-no-such[03-04]",
           "DDGAN_NPROC_PER_NODE": "4"}
    args = torchrun_args(env)
    assert args[:4] == ["--nnodes", "2", "--nproc_per_node", "4"]
    assert args[args.index("--rdzv_endpoint") + 1] == f"zz-no-such03:{29500 + 123456 % 20000}"
    assert args[args.index("--rdzv_id") + 1] == "ddgan-123456"
    assert args[args.index("--max_restarts") + 1] == "3"
    # another job on the same node gets another port
    other = torchrun_args({**env, "SLURM_JOB_ID": "123457"})
    assert other[other.index("--rdzv_endpoint") + 1] != args[args.index("--rdzv_endpoint") + 1]
    with pytest.raises(ConfigError, match="SLURM_JOB_ID is not set"):
        torchrun_args({"SLURM_JOB_NUM_NODES": "1"})


@pytest.mark.dist
def test_two_simulated_nodes_train_to_the_end(tmp_path):
    """Two ``ddgan.slurm`` agents as SLURM would start them on two nodes: world size 4 over c10d."""
    port = free_port()
    procs = []
    for node in range(2):
        env = {**os.environ, "SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": str(node),
               "SLURM_JOB_NODELIST": "localhost,localhost", "DDGAN_RDZV_HOST": "127.0.0.1",
               "DDGAN_RDZV_PORT": str(port), "DDGAN_NPROC_PER_NODE": "2", "DDGAN_MAX_RESTARTS": "0",
               "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "ddgan.slurm", "partition.clients=4", *SMALL, "train.steps=12",
               "run.log_every=6", "run.checkpoint_every=6", "comm.timeout_s=60", f"run.dir={tmp_path}"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    joined = outs[0][0] + outs[1][0]
    assert "--nnodes 2 --nproc_per_node 2" in joined
    assert "step 12/12" in joined                    # printed by global rank 0, on whichever node
    newest = complete_checkpoints(tmp_path)[0]
    assert newest.name == "step_0000012"
    assert sorted(p.name for p in newest.glob("rank_*.pt")) == [f"rank_{r}.pt" for r in range(4)]


def _local_cluster_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (slurm/local-cluster.sh writes /etc/slurm and starts daemons)")
    have = all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged"))
    if not have and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get is unavailable to install it")


@pytest.mark.dist
def test_sbatch_the_project_template_on_a_real_local_slurm(tmp_path):
    _local_cluster_or_skip()
    state = tmp_path / "slurm-state"
    env = {**os.environ, "DDGAN_SLURM_STATE": str(state)}
    started = subprocess.run(["bash", "slurm/local-cluster.sh", "start"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
    try:
        if started.returncode == 3:
            pytest.skip(f"apt cannot install SLURM here: {started.stderr.strip()[-300:]}")
        assert started.returncode == 0, started.stdout + started.stderr
        run = tmp_path / "run"
        submit = subprocess.run(
            ["sbatch", "--parsable", f"--output={tmp_path}/%x-%j.out", "--time=10",
             "--export=ALL,DDGAN_NPROC_PER_NODE=2,OMP_NUM_THREADS=1,DDGAN_MAX_RESTARTS=0",
             "--gpus-per-node=2", "--cpus-per-task=2", "slurm/single_node.sbatch",
             "partition.clients=2", *SMALL, "train.steps=10", "run.log_every=5", "run.checkpoint_every=5",
             f"run.dir={run}"],
            cwd=ROOT, env={**env, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr
        job = submit.stdout.strip().split(";")[0]
        deadline = time.monotonic() + 300
        while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
            assert time.monotonic() < deadline, f"job {job} still queued or running after 300 s"
            time.sleep(1)
        log = (tmp_path / f"ddgan-{job}.out").read_text()
        assert f"[job {job}]" in log and "exit 0" in log, log[-3000:]
        assert "step 10/10" in log, log[-3000:]
        assert complete_checkpoints(run)[0].name == "step_0000010"
        assert (run / "config.yaml").exists()
    finally:
        subprocess.run(["bash", "slurm/local-cluster.sh", "stop"], cwd=ROOT, env=env, capture_output=True, timeout=60)


def _sbatch_lines() -> list[tuple[str, str]]:
    """(where, command) of every ``sbatch`` example in README.md and the templates' headers, with
    backslash continuations joined and the templates' comment marks dropped."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "slurm").glob("*.sbatch"))]:
        text = re.sub(r"^#\s{0,3}", "", path.read_text(), flags=re.M) if path.suffix == ".sbatch" else path.read_text()
        text = re.sub(r"\\\n\s*", " ", text)
        found += [(path.name, m.group(0)) for m in re.finditer(r"(?m)^(?:CONFIG=\S+ )?sbatch .*slurm/\w+\.sbatch.*$", text)]
    return found


def test_every_sbatch_example_fits_its_config_on_the_ranks_it_starts():
    """Each example's allocation runs its config: one rank per client, or fewer ranks that co-host
    them (ddgan.slurm appends what ``ddgan.layout --fit`` prints)."""
    examples = _sbatch_lines()
    assert len(examples) >= 4
    for where, line in examples:
        line = line.split("#")[0].split("(")[0].strip()
        template = re.search(r"slurm/(\w+)\.sbatch", line).group(0)
        header = (ROOT / template).read_text()
        config = re.match(r"CONFIG=(\S+)", line)
        nodes = int(re.search(r"--nodes=(\d+)", line + " " + header).group(1))
        per_node = re.search(r"DDGAN_NPROC_PER_NODE=(\d+)", line) or re.search(r"--gpus-per-node=(\d+)", line + " " + header)
        overrides = [a for a in line.split(template, 1)[1].split() if "=" in a and not a.startswith("-")]
        ranks = nodes * int(per_node.group(1))
        proc = subprocess.run([sys.executable, "-m", "ddgan.layout", "--fit", str(ranks), "--config",
                               config.group(1) if config else "configs/default.yaml", *overrides],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, (where, line, proc.stderr)
        proc = subprocess.run([sys.executable, "-m", "ddgan.layout", "--config",
                               config.group(1) if config else "configs/default.yaml", *overrides,
                               *proc.stdout.split()], cwd=ROOT, capture_output=True, text=True)
        assert int(proc.stdout) == ranks, (where, line, proc.stdout)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two cores")
def test_each_rank_threads_over_the_cores_it_may_use_not_the_nodes():
    # SLURM binds a task to its --cpus-per-task cores; os.cpu_count() still says the node's count
    code = ("import os, torch\n"
            "from ddgan.runtime.distributed import cpu_share\n"
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "print(cpu_share(1), os.cpu_count())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    threads, node = map(int, out.split())
    assert threads == 1 and node >= 2
