"""Step time, bytes on the wire and memory per rank: layouts, exchange modes, and the one-process baseline.

    python bench/step_time.py                 # every table (about 15 minutes on 2 quiet cores)
    python bench/step_time.py --quick         # K in {1, 2}, fewer steps: a smoke run
    python bench/step_time.py --profile       # torch.profiler table of one 2-rank run's rank 0

Run it on a quiet machine: every number is a time. It trains the default MNIST-size models (28 x
28, widths 64, batch 64) under torchrun (gloo on the CPU; NCCL with ``--device cuda``) and reads
what the trainer logs: per-interval step time, and per rank the bytes it sent and the seconds it
spent inside collectives (the rest of its step is computing). Tables, all from one run:

* layouts: K in {1, 2, 4} clients, shared generator rank, dedicated, dedicated + pipeline
  (``train.pipeline``), per rank compute and collective time; target: dedicated + pipeline >=
  1.2x the shared layout's steps/s at K = 2;
* exchange modes: feedback, params and secure at K in {2, 4, 5}: steps/s and bytes per rank (F2A
  with lambda on the generator's objective, which secure needs);
* the one-process simulation (:class:`ddgan.forgiver.simulate.Simulation`, all clients one after another)
  as the baseline, bytes independent of D's size, gossip bytes, peak memory, and wave 1's targets.

Results go to stdout and to the ``step_time`` section of BENCHMARKS.md (ratios are only comparable
within one run).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.report import update_section  # noqa: E402

MNIST = ROOT.parent / "shared" / "data"


def model_args(d_width: int = 64) -> list[str]:
    """The default MNIST-size models; real MNIST when it is at ../shared/data, else digits at 28 px."""
    data = ["data.name=mnist", f"data.root={MNIST}"] if (MNIST / "MNIST" / "raw").is_dir() else ["data.name=digits"]
    return [*data, "data.image_size=28", "model.g_width=64", f"model.d_width={d_width}", "train.batch_size=64",
            "partition.scheme=iid", "algo.name=f2u", "algo.loss=bce"]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def peak_rss_kb(proc: subprocess.Popen, pids) -> dict[int, int]:
    """Until ``proc`` exits: the highest resident memory (KB) seen of each process ``pids()`` names."""
    peak: dict[int, int] = {}
    while proc.poll() is None:
        for pid in pids():
            peak[pid] = max(peak.get(pid, 0), _rss_kb(pid))
        time.sleep(0.2)
    return peak


LAYOUTS = {"shared": [], "dedicated": ["train.generator_rank=dedicated"],
           "pipeline": ["train.generator_rank=dedicated", "train.pipeline=true"]}
MODES = {"feedback": ["comm.exchange=feedback"], "params": ["comm.exchange=params"],
         "secure": ["comm.exchange=secure"]}
F2A_SECURE = ["algo.name=f2a", "algo.lambda_objective=generator", "algo.lambda_max=20"]


def distributed(k: int, steps: int, warmup: int, extra: list[str], device: str, cores: int | None = None) -> dict:
    """One torchrun run of k clients (k + 1 ranks with a dedicated generator rank), on the first
    ``cores`` cores only where given; medians over the 5-step intervals after warm-up, per rank where
    the trainer logs per rank."""
    from ddgan.core.config import load_config
    from ddgan.forgiver.layout import world_size

    with tempfile.TemporaryDirectory() as run:
        backend = "nccl" if device == "cuda" else "gloo"
        args = [f"partition.clients={k}", *extra, f"train.steps={warmup + steps}", "run.log_every=5",
                f"run.sample_every={10 ** 6}", f"run.checkpoint_every={10 ** 6}", f"run.dir={run}",
                f"train.device={device}", f"comm.backend={backend}"]
        if k == 1:
            args = [a for a in args if not a.startswith("algo.name")] + ["algo.name=centralized"]
        ranks = world_size(load_config(ROOT / "configs" / "default.yaml", args))
        cmd = [*(["taskset", "-c", f"0-{cores - 1}"] if cores else []), sys.executable, "-m", "torch.distributed.run",
               "--standalone", "--nproc_per_node", str(ranks), "-m", "ddgan.train", *args]
        agent = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
        peak = peak_rss_kb(agent, lambda: _children(agent.pid))
        if agent.returncode:
            raise SystemExit(f"K={k} {' '.join(extra)} failed:\n{agent.stderr.read()[-3000:]}")
        records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    kept = [r for r in records if r["step"] > warmup and r["step"] % 5 == 0]
    step_time = statistics.median(r["step_time"] for r in kept)
    comm = [statistics.median(r["comm_seconds"][i] for r in kept) for i in range(ranks)]
    sent = [statistics.median(r["bytes_sent"][i] for r in kept) for i in range(ranks)]
    cpu = sum(statistics.median(r["cpu_seconds"][i] for r in kept) for i in range(ranks))
    return {"k": k, "ranks": ranks, "step_time": step_time, "steps_per_s": 1 / step_time, "comm_seconds": comm,
            "cpu_seconds": cpu, "cores_busy": cpu / step_time,
            "compute_seconds": [max(0.0, step_time - c) for c in comm], "comm_fraction": comm[0] / step_time,
            "bytes_per_rank": sent, "peak_rss_mb": sorted(v / 1024 for v in peak.values())}


def gossip_bytes(k: int, steps: int, extra: list[str]) -> dict:
    """Bytes each node sends per gossip cycle (ring, p_consider 0.5, infogain)."""
    with tempfile.TemporaryDirectory() as run:
        args = [a for a in extra if not a.startswith("algo.name")]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(k),
               "-m", "ddgan.train", f"partition.clients={k}", *args, "algo.name=gossip", "topology.kind=ring",
               f"train.steps={steps}", "run.log_every=5", f"run.sample_every={10 ** 6}",
               f"run.checkpoint_every={10 ** 6}", f"run.dir={run}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode:
            raise SystemExit(f"gossip K={k} failed:\n{proc.stderr[-3000:]}")
        records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    per_node = [statistics.mean(r["bytes_sent"][i] for r in records) for i in range(k)]
    return {"k": k, "bytes_per_node": per_node, "cycle_time": statistics.median(r["step_time"] for r in records)}


def simulated(k: int, steps: int, warmup: int, extra: list[str], threads: int) -> float:
    """Median step time of the same algorithm with k clients in this process, on ``threads`` threads."""
    import torch

    from ddgan.core.config import load_config
    from ddgan.forgiver.simulate import Simulation

    torch.set_num_threads(threads)
    overrides = [*extra, f"partition.clients={k}"] + (["algo.name=centralized"] if k == 1 else [])
    sim = Simulation(load_config(ROOT / "configs" / "default.yaml", overrides))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        sim.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile(steps: int, extra: list[str]) -> str:
    """torch.profiler over rank 0 of a 2-rank run: the ops that take the time."""
    script = f"""
import os, sys, torch
from torch.profiler import profile, ProfilerActivity
sys.path.insert(0, {str(ROOT)!r})
from ddgan.core.config import load_config  # noqa: E402
from ddgan.train import run  # noqa: E402
cfg = load_config({str(ROOT / 'configs' / 'default.yaml')!r}, {[*extra, 'partition.clients=2',
        f'train.steps={steps}', 'run.log_every=1000', 'run.sample_every=1000000', 'run.checkpoint_every=1000000',
        'run.dir=' + tempfile.mkdtemp()]!r})
with profile(activities=[ProfilerActivity.CPU]) as prof:
    run(cfg)
if os.environ['RANK'] == '0':
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=18, max_name_column_width=48))
"""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "--no-python", sys.executable, "-c", script],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return proc.stdout


def layout_table(extra: list[str], ks: list[int], steps: int, warmup: int, device: str) -> tuple[list[str], dict]:
    """Shared, dedicated and pipelined layouts at each K: steps/s and each rank's split of its step."""
    runs = {(k, name): distributed(k, steps, warmup, [*extra, *LAYOUTS[name]], device) for k in ks for name in LAYOUTS}
    lines = ["| K | layout | ranks | steps/s | vs shared | rank 0 (G): compute / in collectives, ms | "
             "clients: compute / in collectives, ms |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for (k, name), r in runs.items():
        shared = runs[(k, "shared")]["steps_per_s"]
        ms = [(1000 * c, 1000 * w) for c, w in zip(r["compute_seconds"], r["comm_seconds"])]
        clients = ms[1:] if name != "shared" else ms
        lines.append(f"| {k} | {name} | {r['ranks']} | {r['steps_per_s']:.2f} | {r['steps_per_s'] / shared:.2f}x | "
                     f"{ms[0][0]:.0f} / {ms[0][1]:.0f} | "
                     f"{_range([c for c, _ in clients], '.0f')} / {_range([w for _, w in clients], '.0f')} |")
    return lines, runs


# Links for the projection: (name, bandwidth bytes/s, latency s per message)
LINKS = (("10 GbE", 1.25e9, 50e-6), ("InfiniBand HDR", 25e9, 2e-6))
BATCH_BYTES = 64 * 28 * 28 * 4          # the generated batch, and one client's gradient w.r.t. it


def comm_time(k: int, link: tuple[str, float, float]) -> float:
    """Seconds of communication per feedback step for k clients with tree broadcast and reduce and a
    ring all_gather of the scores (NCCL-like), on one link."""
    _, bandwidth, latency = link
    tree = 2 * math.ceil(math.log2(k + 1)) * (latency + BATCH_BYTES / bandwidth)    # broadcast x, reduce d/dx
    ring = k * latency                                                             # all_gather of (B + 1) scores
    return tree + ring


def projection(t_g: float, t_d: float) -> list[str]:
    """Predicted steps/s with one rank per device, from G's and one client's compute per step."""
    lines = ["| K | link | device speed | shared / dedicated | dedicated + pipeline |", "| --- | --- | --- | --- | --- |"]
    for k in (2, 4, 8, 16, 32, 64):
        for link in LINKS:
            for name, speedup in (("one CPU core (measured)", 1.0), ("GPU (assumed 30x)", 30.0)):
                g, d, c = t_g / speedup, t_d / speedup, comm_time(k, link)
                lines.append(f"| {k} | {link[0]} | {name} | {1 / (g + d + c):.1f} | {1 / (max(g, d) + c):.1f} |")
    return lines


def mode_table(ks: list[int], steps: int, warmup: int, device: str) -> list[str]:
    """Feedback, params and secure exchange: steps/s and bytes per step per rank."""
    lines = ["| K | exchange | steps/s | bytes/step, rank 0 | bytes/step, each client 1..K-1 | all ranks |",
             "| --- | --- | --- | --- | --- | --- |"]
    for k in ks:
        for name, mode in MODES.items():
            r = distributed(k, steps, warmup, [*model_args(), *F2A_SECURE, *mode], device)
            sent = r["bytes_per_rank"]
            lines.append(f"| {k} | {name} | {r['steps_per_s']:.2f} | {sent[0]:,.0f} | {_bytes(sent[1:])} | "
                         f"{sum(sent):,.0f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="K in {1, 2}, 20 measured steps")
    parser.add_argument("--steps", type=int, default=60, help="measured steps per run after warm-up")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table and exit")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    extra = model_args()
    if args.profile:
        print(profile(30, extra))
        return 0
    ks, steps = ([1, 2], 20) if args.quick else ([1, 2, 4, 5], args.steps)
    layout_lines, layouts = layout_table(extra, [k for k in ks if k <= 4], steps, args.warmup, args.device)
    print("\n".join(layout_lines), flush=True)
    mode_lines = mode_table([2] if args.quick else [2, 4, 5], steps // 2, args.warmup, args.device)
    print("\n".join(mode_lines), flush=True)
    rows = []
    for k in ks:
        dist_fb = layouts[(k, "shared")] if (k, "shared") in layouts else \
            distributed(k, steps, args.warmup, [*extra, "comm.exchange=feedback"], args.device)
        sim = simulated(k, steps, args.warmup, extra, os.cpu_count() or 1)
        sim1 = simulated(k, steps, args.warmup, extra, 1)
        rows.append((k, dist_fb, sim, sim1))
        print(f"K={k}: {dist_fb['steps_per_s']:.2f} steps/s distributed, {1 / sim:.2f} simulated "
              f"({1 / sim1:.2f} on one thread)", flush=True)
    k_big = ks[-1]
    params = distributed(k_big, steps // 2, args.warmup, [*extra, "comm.exchange=params"], args.device)
    wide = distributed(k_big, steps // 2, args.warmup, [*model_args(d_width=128), "comm.exchange=feedback"], args.device)
    gossip = gossip_bytes(k_big, steps, extra)
    one_client_rss = rows[0][1]["peak_rss_mb"][0]

    cores = os.cpu_count() or 1
    lines = ["**Layouts** (f2u, feedback; compute = the rank's step minus its time in collectives):", "",
             *layout_lines, "", "**Exchange modes** (f2a, lambda on the generator's objective):", "", *mode_lines,
             "", "**Against the one-process simulation** (shared layout, feedback):", "",
             f"| K | distributed steps/s | simulated steps/s ({cores} threads) | speed-up | simulated, 1 thread | "
             "speed-up vs 1 thread | in collectives (rank 0) | bytes/step per rank (feedback) | "
             "peak RSS per rank (MB) | RSS / one-client process |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k, r, sim, sim1 in rows:
        lines.append(f"| {k} | {r['steps_per_s']:.2f} | {1 / sim:.2f} | {r['steps_per_s'] * sim:.2f}x | "
                     f"{1 / sim1:.2f} | {r['steps_per_s'] * sim1:.2f}x | "
                     f"{100 * r['comm_fraction']:.1f} % | {_bytes(r['bytes_per_rank'])} | "
                     f"{_range(r['peak_rss_mb'], '.0f')} | "
                     f"{_range([m / one_client_rss for m in r['peak_rss_mb']], '.2f')}x |")
    fb = rows[-1][1]
    total = {name: sum(r["bytes_per_rank"]) for name, r in (("fb", fb), ("wide", wide), ("params", params))}
    lines += ["", f"Bytes per step at K = {k_big} (rank 0 holds G: it broadcasts the generated batch):", "",
              "| exchange | D width | rank 0 | each client 1..K-1 | all ranks |", "| --- | --- | --- | --- | --- |",
              f"| feedback | 64 | {fb['bytes_per_rank'][0]:,.0f} | {_bytes(fb['bytes_per_rank'][1:])} | "
              f"{total['fb']:,.0f} |",
              f"| feedback | 128 (3.9x D params) | {wide['bytes_per_rank'][0]:,.0f} | "
              f"{_bytes(wide['bytes_per_rank'][1:])} | {total['wide']:,.0f} |",
              f"| params | 64 | {params['bytes_per_rank'][0]:,.0f} | {_bytes(params['bytes_per_rank'][1:])} | "
              f"{total['params']:,.0f} |",
              f"| gossip (ring, p = 0.5), per node per cycle | 64 | {gossip['bytes_per_node'][0]:,.0f} | "
              f"{_bytes(gossip['bytes_per_node'][1:])} | {sum(gossip['bytes_per_node']):,.0f} |",
              "", f"Params mode at K = {k_big}: {params['steps_per_s']:.2f} steps/s, "
              f"{100 * params['comm_fraction']:.1f} % in collectives at rank 0.", ""]
    k2 = next((r for r in rows if r[0] == 2), None)
    k4 = next((r for r in rows if r[0] == 4), None)
    worst_rss = max(m / one_client_rss for _, r, _, _ in rows for m in r["peak_rss_mb"])
    pipelined = layouts.get((2, "pipeline"))
    targets = [("K = 2 dedicated + pipeline / shared steps/s >= 1.2",
                pipelined and pipelined["steps_per_s"] / layouts[(2, "shared")]["steps_per_s"], 1.2, ">="),
               ("K = 2 distributed / simulated steps/s >= 1.6", k2 and k2[1]["steps_per_s"] * k2[2], 1.6, ">="),
               ("in collectives at K = 4, feedback <= 10 %", k4 and 100 * k4[1]["comm_fraction"], 10, "<="),
               (f"feedback / params bytes at K = {k_big}, all ranks <= 0.2", total["fb"] / total["params"], 0.2, "<="),
               (f"feedback / params bytes at K = {k_big}, busiest rank <= 0.2",
                max(fb["bytes_per_rank"]) / max(params["bytes_per_rank"]), 0.2, "<="),
               ("feedback bytes independent of D's size (128-wide / 64-wide)", total["wide"] / total["fb"], 1.0, "=="),
               ("peak RSS per rank / one-client process <= 1.2", worst_rss, 1.2, "<=")]
    lines += ["| target | measured | met |", "| --- | --- | --- |"]
    for name, value, bound, op in targets:
        if value is None:
            continue
        met = {">=": value >= bound, "<=": value <= bound, "==": abs(value - bound) < 1e-9}[op]
        lines.append(f"| {name} | {value:.3g} | {'yes' if met else 'no'} |")
    one = layouts.get((1, "dedicated"))
    if one is not None:
        t_g, t_d = one["compute_seconds"][0], one["compute_seconds"][1]
        lines += ["", f"**Projection** to one rank per device (docs/scaling.md): from K = 1, dedicated (each rank on a "
                  f"core of its own), G's compute per step T_G = {1000 * t_g:.0f} ms and a client's T_D = "
                  f"{1000 * t_d:.0f} ms; steps/s = 1 / (T_G + T_D + comm(K)) synchronously, 1 / (max(T_G, T_D) + "
                  "comm(K)) pipelined; comm(K): tree broadcast and reduce of the 200 KB batch, ring all_gather of the "
                  "scores.", "", *projection(t_g, t_d)]
    table = "\n".join(lines)
    print(table)
    if not args.no_write and not args.quick:
        import platform

        import torch
        update_section("step_time", f"`python bench/step_time.py` on {os.cpu_count()} CPU cores "
                       f"({platform.processor() or platform.machine()}), torch {torch.__version__}, {args.device}, "
                       f"{time.strftime('%Y-%m-%d')}, nothing else running; {args.warmup} warm-up + {steps} measured "
                       f"steps per run (exchange modes: {steps // 2}), medians of 5-step intervals.\n\n" + table)
    return 0


def _bytes(values: list[float]) -> str:
    return _range(values, ",.0f")


def _range(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


if __name__ == "__main__":
    sys.exit(main())
