"""Every mode once on one GPU, in under ten minutes, as one table: the check to run on a new machine.

    python bench/gpu_check.py --data-root /datasets --out gpu_check.json     # on a GPU machine
    python bench/gpu_check.py --cpu --out /tmp/gpu_check.json                # tiny steps, CPU only (the suite)
    python bench/gpu_check.py --report gpu_check.json                        # its table into BENCHMARKS.md

It needs only what a cluster image already has (PyTorch, torchvision, numpy, PyYAML, scikit-learn,
matplotlib) and runs ddgan from this checkout: nothing is installed. Each row is a real launch of
``python -m torch.distributed.run ... -m ddgan.train``:

- one client per rank on NCCL, rank 0 on the GPU: f2u, f2a with the feedback and params exchanges,
  f2a robust, fedavg, centralized (on MNIST at 28 px where ``--data-root`` holds it, beside a plain
  PyTorch loop of the same G and D: bench/plain_loop.py);
- the modes that need several ranks, all ranks on the one GPU over gloo (NCCL wants one GPU per rank;
  gloo ranks share it and stage their messages through the CPU): f2a secure (skipped with a note
  where ``cryptography`` is missing), gossip, MD-GAN's swap, the dedicated generator rank, 5-client F2U;
- ``ddgan.eval`` on the GPU for two checkpoints of the f2a run: Inception FID where its weights are
  present, otherwise fid_classifier stands in and the row says so.

A row's steps/s is the last logged interval's (the first holds start-up). ``--cpu`` runs the same
rows with tiny models, a few steps and 2 clients where the GPU run has 5, so that the suite keeps it
working. The JSON written by ``--out`` records the GPU, PyTorch and the date; ``--report`` turns it
into the ``gpu_check`` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Row:
    name: str
    ranks: int
    overrides: list[str]
    backend: str                # nccl: one rank on the GPU; gloo: every rank on the one GPU
    needs: str | None = None    # a module the row needs
    data: str = "digits"        # mnist: only where --data-root holds MNIST
    resume: bool = False        # stop at a checkpoint taken at a swap step, then resume to the end


def rows(cpu: bool) -> list[Row]:
    many = 2 if cpu else 5                  # clients of the multi-rank rows
    one = ["partition.clients=1", "partition.scheme=iid"]
    split = [f"partition.clients={many}"] + ([] if many == 5 else [
        "partition.scheme=classes", "partition.classes=[[0,1,2,3,4],[5,6,7,8,9]]"])
    return [
        Row("f2u", 1, [*one, "algo.name=f2u"], "nccl", data="mnist"),
        Row("f2a feedback", 1, [*one, "algo.name=f2a", "comm.exchange=feedback"], "nccl"),
        Row("f2a params", 1, [*one, "algo.name=f2a", "comm.exchange=params"], "nccl"),
        Row("f2a robust", 1, [*one, "algo.name=f2a", "comm.robust=true"], "nccl"),
        Row("fedavg", 1, [*one, "algo.name=fedavg"], "nccl"),
        Row("centralized", 1, [*one, "algo.name=centralized"], "nccl", data="mnist"),
        Row("f2a secure", 2, ["partition.clients=2", "partition.scheme=classes",
                              "partition.classes=[[0,1,2,3,4],[5,6,7,8,9]]", "algo.name=f2a",
                              "comm.exchange=secure", "algo.lambda_objective=generator", "algo.lambda_max=20"], "gloo",
            needs="cryptography"),
        Row("gossip", many, [*split, "algo.name=gossip", "topology.kind=ring"], "gloo"),
        Row("MD-GAN swap", many, [*split, "algo.name=mean", "algo.swap_every=10"], "gloo"),
        Row("dedicated generator rank", many + 1, [*split, "algo.name=f2u_balanced", "train.generator_rank=dedicated"],
            "gloo"),
        Row(f"f2u, {many} clients", many, [*split, "algo.name=f2u"], "gloo", data="mnist"),
        Row("robust MD-GAN, deterministic, resumed at its swap step", many,
            [*split, "algo.name=mean", "comm.robust=true", "defence.seed=5", "train.deterministic=true"], "gloo",
            resume=True),
    ]


TINY = ["data.image_size=8", "model.g_width=4", "model.d_width=4", "model.z_dim=8", "train.batch_size=8",
        "algo.max_d_steps=2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_line(text: str) -> str:
    """ddgan's own one-line error where there is one, else the last exception line that is not torchrun's."""
    lines = [l for l in text.splitlines() if l.strip()]
    ours = [l for l in lines if l.startswith("error:")]
    raised = [l for l in lines if "Error: " in l and "ChildFailedError" not in l]     # "[rank0]: RuntimeError: ..."
    return (ours or raised or lines or ["(no output)"])[-1].strip()[:240]


def dataset(row: Row, root: Path | None) -> list[str]:
    if row.data == "mnist" and root is not None and (root / "MNIST" / "raw").is_dir():
        return ["data.name=mnist", f"data.root={root}", "data.image_size=28"]
    return ["data.name=digits"]


def train(row: Row, run: Path, args) -> dict:
    device = "cpu" if args.cpu else "cuda"
    steps = args.steps
    size = dataset(row, args.data_root) + (TINY if args.cpu else [])
    half = max(1, steps // 2)
    cfg = ["--config", str(ROOT / "configs" / "default.yaml"), *row.overrides, *size,
           f"train.device={device}", f"comm.backend={row.backend if not args.cpu else 'gloo'}",
           f"run.log_every={max(1, steps // 3)}", f"run.sample_every={steps}",
           f"run.checkpoint_every={half}", "comm.timeout_s=120"]
    # the resumed row swaps at exactly the step its first launch checkpoints and stops at, then
    # continues; an uninterrupted run beside it must end with the same bits
    straight = run.with_name(run.name + "_straight")
    swap = [f"algo.swap_every={half}"]
    launches = [[f"run.dir={run}", f"train.steps={half}", *swap], [f"run.dir={run}", f"train.steps={steps}", *swap],
                [f"run.dir={straight}", f"train.steps={steps}", *swap]] \
        if row.resume else [[f"run.dir={run}", f"train.steps={steps}", "train.resume=never"]]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1" if args.cpu else "2"}
    start = time.perf_counter()
    for launch in launches:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(row.ranks),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "ddgan.train", *cfg, *launch]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=args.row_timeout)
            code, said = proc.returncode, last_line(proc.stderr + proc.stdout)
        except subprocess.TimeoutExpired:
            code, said = 124, f"no result within {args.row_timeout} s"
        if code:
            break
    out = {"row": row.name, "ranks": row.ranks, "backend": "gloo" if args.cpu else row.backend, "data": size[0].split("=")[1],
           "steps": steps, "wall_s": round(time.perf_counter() - start, 1), "ok": code == 0}
    if code == 0:
        from ddgan.runtime.rundir import read_metrics
        out["steps_per_s"] = round(read_metrics(run)[-1]["steps_per_s"], 1)
        if row.resume:
            out["bit_identical"] = same_bits(run, straight, row.ranks)
    else:
        out["error"] = f"exit {code}: {said}"
    return out


def same_bits(a: Path, b: Path, ranks: int) -> bool:
    """Whether two runs' newest checkpoints hold the same tensors, bit for bit, on every rank."""
    import torch

    from ddgan.runtime.checkpoint import (
        complete_checkpoints,
        flat_state,
        load_rank_file,
    )

    where_a, where_b = complete_checkpoints(a)[0], complete_checkpoints(b)[0]
    for rank in range(ranks):
        la, lb = flat_state(load_rank_file(where_a, rank)), flat_state(load_rank_file(where_b, rank))
        if la.keys() != lb.keys() or not all(
                torch.equal(v, lb[k]) if isinstance(v, torch.Tensor) else v == lb[k] for k, v in la.items()):
            return False
    return True


def evaluate(run: Path, args) -> list[dict]:
    """``ddgan.eval`` of the run's checkpoints (oldest first), on the GPU unless ``--cpu``."""
    from ddgan.runtime.checkpoint import complete_checkpoints
    found = sorted(complete_checkpoints(run), key=lambda p: p.name)
    results = []
    for where in found[-2:]:
        cmd = [sys.executable, "-m", "ddgan.eval", "--run", str(run), "--checkpoint", str(where),
               "--n", str(args.eval_n), "--svm-train", "0", "--device", "cpu" if args.cpu else "cuda"]
        if args.cache:
            cmd += ["--cache", str(args.cache)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=args.row_timeout,
                              env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
        row = {"row": f"eval {where.name}", "ok": proc.returncode == 0, "wall_s": round(time.perf_counter() - start, 1)}
        if proc.returncode == 0:
            result = json.loads((run / "eval.json").read_text())
            g = result["generators"]["0"]
            fid = result["inception_fid"]
            row.update(device=result["device"], samples=args.eval_n, classes=g["classes_covered"],
                       confident=g["confident_classes_covered"], fid_classifier=round(g["fid_classifier"], 1),
                       inception_fid=fid["value"]["0"] if fid["value"] else None,
                       inception_note=None if fid["value"] else fid["reason"].split(":")[0])
        else:
            row["error"] = f"exit {proc.returncode}: {last_line(proc.stderr)}"
        results.append(row)
    return results


def machine(cpu: bool) -> dict:
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not cpu else "none (CPU mode)"
    return {"date": datetime.date.today().isoformat(), "gpu": gpu, "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": sys.version.split()[0], "cpus": os.cpu_count()}


def plain_loop(args) -> dict:
    from bench.plain_loop import steps_per_s
    size = dataset(Row("", 1, [], "", data="mnist"), args.data_root) + (TINY if args.cpu else [])
    device = "cpu" if args.cpu else "cuda"
    steps = args.steps
    return {"row": "plain PyTorch loop (bench/plain_loop.py)", "data": size[0].split("=")[1], "ok": True,
            "steps_per_s": round(steps_per_s(size, device, steps, 10), 1),
            "fused_steps_per_s": None if args.cpu else round(steps_per_s(size, device, steps, 10, fused=True), 1)}


def check(args) -> dict:
    result = {"machine": machine(args.cpu), "mode": "cpu" if args.cpu else "gpu", "rows": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows(args.cpu):
            if not any(fnmatch(row.name, pattern) for pattern in args.only):
                continue
            if row.needs and importlib.util.find_spec(row.needs) is None:
                result["rows"].append({"row": row.name, "ok": None, "skipped": f"{row.needs} is not installed"})
            else:
                result["rows"].append(train(row, Path(tmp) / row.name.replace(" ", "_").replace(",", ""), args))
            print(format_row(result["rows"][-1]), flush=True)
            if row.name == "centralized" and result["rows"][-1]["ok"]:
                result["rows"].append(plain_loop(args))
                print(format_row(result["rows"][-1]), flush=True)
        f2a = Path(tmp) / "f2a_feedback"
        if f2a.is_dir() and args.eval_n > 0:
            for r in evaluate(f2a, args):
                result["rows"].append(r)
                print(format_row(r), flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def format_row(r: dict) -> str:
    if r.get("skipped"):
        what = f"skipped: {r['skipped']}"
    elif not r["ok"]:
        what = f"FAILED ({r['error']})"
    elif "fid_classifier" in r:
        inc = f"Inception FID {r['inception_fid']:.1f}" if r["inception_fid"] is not None else \
            f"Inception FID {r['inception_note']}"
        what = (f"on {r['device']}, {r['samples']} samples: {r['classes']} classes ({r['confident']} confidently), "
                f"fid_classifier {r['fid_classifier']}; {inc}")
    elif "fused_steps_per_s" in r:
        fused = f", {r['fused_steps_per_s']} with fused Adam" if r["fused_steps_per_s"] else ""
        what = f"{r['steps_per_s']} steps/s{fused}"
    else:
        what = f"ok, {r['steps_per_s']} steps/s"
        if "bit_identical" in r:
            what += "; ends bit for bit as an uninterrupted run" if r["bit_identical"] else \
                "; NOT bit-identical to an uninterrupted run"
    where = f"{r['ranks']} rank(s), {r['backend']}, {r['data']}" if "ranks" in r else r.get("data", "")
    return f"| {r['row']} | {where} | {what} | {r.get('wall_s', '-')} |"


def table(result: dict) -> str:
    m = result["machine"]
    lines = [f"`python bench/gpu_check.py` on {m['date']}: {m['gpu']}, PyTorch {m['torch']} (CUDA {m['cuda']}), "
             f"Python {m['python']}, {m['cpus']} CPUs; the whole check took {result['seconds']} s. One client per "
             "rank on NCCL where a row says nccl; every rank on the one GPU over gloo where it says gloo.", "",
             "| row | ranks, backend, data | result | wall s |", "| --- | --- | --- | --- |"]
    return "\n".join(lines + [format_row(r) for r in result["rows"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny steps on the CPU (what the test suite runs)")
    parser.add_argument("--data-root", type=Path, help="a folder holding MNIST/raw (else the MNIST rows use digits)")
    parser.add_argument("--steps", type=int, help="steps per training row (default 300; --cpu: 6)")
    parser.add_argument("--eval-n", type=int, help="samples per evaluated checkpoint (default 5000; --cpu: 100)")
    parser.add_argument("--only", nargs="+", default=["*"], metavar="GLOB", help="only the rows whose names match")
    parser.add_argument("--row-timeout", type=float, default=180.0, help="seconds before a row counts as failed")
    parser.add_argument("--cache", type=Path, help="ddgan.eval's classifier cache")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--report", type=Path, metavar="JSON", help="write this result's table into BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.report:
        from bench.report import update_section
        result = json.loads(args.report.read_text())
        update_section("gpu_check", table(result), "GPU check")
        return 0
    args.steps = args.steps or (6 if args.cpu else 300)
    args.eval_n = args.eval_n or (100 if args.cpu else 5000)
    result = check(args)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0 if all(r["ok"] is not False and r.get("bit_identical", True) for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
