"""What the benchmark tables share: a cell (one training run with its settings), training and
evaluating it for real, and one JSON file of results so that an interrupted table resumes where it
stopped and two tables with a cell in common run it once. An interrupted cell resumes from its
newest checkpoint: ``touch runs/bench/cells/<cell>/STOP`` checkpoints it where it is and ends the
script; the same command continues it (the long Kosmopoulos cells outlast a working session).

A cell's name spells out every setting it pins (dataset, split, rule, D normalisation, variant,
seed, steps), so the forgiveness ablation and the F2U reproduction find each other's cells in the
shared store. The store, ``bench/results.json`` and the cells' sample grids in ``bench/grids/``,
is tracked in git: a cell's run (checkpoints, samples, logs, under ``runs/bench/cells/``) can be
deleted or lost with a machine, its numbers and its pictures stay and its table rebuilds. (They
once were kept beside the runs and went with them: the rows measured before 2026-12-01 survive
only as the tables showed them, see bench/report.py.)
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from pathlib import Path

from ddgan.core.algorithms import ALGORITHMS
from ddgan.core.config import Config, load_config
from ddgan.data.partition import SCHEMES
from ddgan.forgiver.layout import world_size

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CELLS = ROOT / "runs" / "bench" / "cells"
STORE = ROOT / "bench" / "results.json"
CLASSIFIERS = Path(os.environ.get("DDGAN_BENCH_CLASSIFIERS", ROOT / "runs" / "bench" / "classifiers"))
PINNED = ROOT / "bench" / "classifiers"       # the MNIST and Fashion-MNIST classifiers every table scores with

# What a --quick smoke run shrinks: small models on a small batch (the plumbing, not the numbers).
QUICK = ("model.g_width=16", "model.d_width=16", "model.z_dim=32", "train.batch_size=32")
QUICK_CLIENTS = ("partition.clients=2", "partition.classes=[[0,1,2,3,4],[5,6,7,8,9]]")    # with split "classes"

# How every cell is launched, beside its settings (neither changes what it trains): it resumes an
# interrupted attempt of the same settings (Results.run starts other attempts over), and keeps every
# checkpoint, so a stop's extra checkpoints never push out the ones a table evaluates.
LAUNCH = ("train.resume=auto", "run.keep_checkpoints=1000")
CELL_MARKER = "cell.json"       # in a cell's run: the settings it was started with

# Rule name in the tables -> the algo settings it stands for (MD-GAN is the mean rule with swaps).
RULES = {
    "f2u": ["algo.name=f2u"],
    "f2a": ["algo.name=f2a"],
    "f2u_balanced": ["algo.name=f2u_balanced"],
    "mdgan": ["algo.name=mean", "algo.swap_every=100"],
    "gman": ["algo.name=gman"],
    "centralized": ["algo.name=centralized", "partition.clients=1", "partition.scheme=iid"],
}


@dataclass(frozen=True)
class Cell:
    """One training run of a table. ``dataset`` digits uses configs/default.yaml with the rule's
    settings; mnist / fashion_mnist use configs/paper/<dataset>_<split>_<rule>.yaml."""

    dataset: str
    split: str
    rule: str
    norm: str
    seed: int
    steps: int
    variant: str = ""                    # a label for ``extra`` (e.g. lambda settings); "" = none
    extra: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        """The name without the step count: every length of the same settings shares it."""
        variant = f"_{self.variant}" if self.variant else ""
        return f"{self.dataset}_{self.split}_{self.rule}_{self.norm}{variant}_s{self.seed}"

    @property
    def name(self) -> str:
        return f"{self.stem}_{self.steps}"

    @property
    def config(self) -> Path:
        if self.split == "kosmopoulos":      # the MNIST experiment's configs (digits: their smoke run)
            return ROOT / "configs" / "paper" / f"mnist_kosmopoulos_{self.rule}.yaml"
        if self.dataset == "digits":
            return ROOT / "configs" / "default.yaml"
        paper_split = self.split if self.split in ("non_ovl", "mod_ovl") else "non_ovl"   # the scheme is overridden
        return ROOT / "configs" / "paper" / f"{self.dataset}_{paper_split}_{self.rule}.yaml"

    def overrides(self, root: Path) -> list[str]:
        rule = RULES[self.rule] if self.config.name == "default.yaml" else []
        split = [] if self.rule == "centralized" or self.split not in SCHEMES else [f"partition.scheme={self.split}"]
        every = max(1, self.steps // 20)
        dataset = [f"data.name={self.dataset}"] if self.split == "kosmopoulos" else []
        return [*rule, *split, *dataset, f"data.root={root}", f"model.d_norm={self.norm}", f"train.seed={self.seed}",
                f"train.steps={self.steps}", f"run.log_every={every}", f"run.checkpoint_every={self.steps}",
                f"run.sample_every={self.steps}", *self.extra]


class Results:
    """``{cell name: result}`` in one JSON file, re-read before and rewritten after every cell, so
    that two scripts filling the same file never drop each other's cells; each cell's run lies in
    ``runs / name``."""

    def __init__(self, path: Path, runs: Path, only: Sequence[str] = ("*",), again: bool = False):
        self.path, self.runs = Path(path), Path(runs)
        self.only = only          # name patterns of the cells run() may train (the others it only reads)
        self.again = again        # train those anew even where stored (run()'s ``again`` for each of them)
        self.made: set[str] = set()     # the cells run() trained or scored here: --again does each once

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Results":
        """The store a table script's ``args`` name: ``--store`` (tracked in git) for the real
        cells, a file beside the runs for a ``--quick`` smoke (its numbers are not kept)."""
        if args.again and args.only == ["*"]:
            raise SystemExit("--again trains stored cells anew: name them with --only (every cell would be trained)")
        return cls(args.out / "results.json" if args.quick else args.store, args.out, args.only, args.again)

    @property
    def cells(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, cell: Cell, root: Path = SHARED_DATA) -> dict | None:
        """The cell's result, if it was trained with the config the cell resolves to today (a
        changed default makes it stale: it is trained again)."""
        done = self.cells.get(cell.name)
        return done if done is not None and same_config(done.get("config"), resolved(cell, root)) else None

    def grids(self, name: str) -> Path:
        """Where a cell's sample grids (``samples_node_<k>.png``) are kept beside the store, for
        the figures: a lost run leaves them, as it leaves the numbers."""
        return self.path.parent / "grids" / name

    def add(self, name: str, result: dict) -> None:
        cells = self.cells
        cells[name] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cells, indent=1, sort_keys=True) + "\n")     # sorted: small git diffs
        tmp.replace(self.path)

    def run(self, cell: Cell, root: Path, n: int = 10000, svm_train: int = 0, cache: Path = CLASSIFIERS,
            eval_args: list[str] = (), again: bool = False) -> dict:
        """Train and evaluate ``cell`` under this file's folder unless it is already done (or not
        among ``only``: then None). ``again`` trains a done cell anew (its stored result lacks what
        a table needs and its run is gone); the stored result stays until the new one replaces it."""
        done = self.get(cell, root)
        wanted = any(fnmatch(cell.name, pattern) for pattern in self.only)
        anew = again or (self.again and cell.name not in self.made)
        if (done is not None and not anew) or not wanted:
            return done
        run_dir, config = self.runs / cell.name, resolved(cell, root)
        marker = run_dir / CELL_MARKER
        stored = json.loads(marker.read_text()) if marker.exists() else None
        # the same settings, a key added to ddgan since counting as the value the run had (same_config)
        resuming = same_config(stored, json.loads(json.dumps(config)))       # as the marker holds it
        print(f"[{self.runs.name}] {cell.name} ...{' (resuming its run)' if resuming else ''}", flush=True)
        shorter = None if resuming else self.shorter(cell, root)
        if not resuming:           # an attempt under other settings (or none) starts over, clean
            shutil.rmtree(run_dir, ignore_errors=True)
            if shorter is not None:       # ... or from where the same settings' shorter run ended
                print(f"[{self.runs.name}] {cell.name} continues {shorter.name}", flush=True)
                shutil.copytree(shorter, run_dir)
            else:
                run_dir.mkdir(parents=True)
            marker.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
        result = train_and_evaluate(cell.config, cell.overrides(root), run_dir, n, svm_train, cache, eval_args,
                                    fresh=not resuming and shorter is None)
        result["config"] = config
        if shorter is not None:
            result["continued"] = shorter.name
        shutil.rmtree(self.grids(cell.name), ignore_errors=True)
        self.grids(cell.name).mkdir(parents=True)
        for grid in (run_dir / "eval").glob("samples_node_*.png"):
            shutil.copy2(grid, self.grids(cell.name) / grid.name)
        self.add(cell.name, result)
        self.made.add(cell.name)
        return result


    def shorter(self, cell: Cell, root: Path) -> Path | None:
        """The run of the longest cell of ``cell``'s settings with fewer steps, if one lies under the
        runs: a longer cell continues it from its last checkpoint instead of starting over (ddgan
        resumes past the old ``train.steps`` exactly as the uninterrupted run, and nothing it trains
        depends on the step count)."""
        for short in shorter_cells(cell, [p.name for p in self.runs.glob(f"{glob.escape(cell.stem)}_*")]):
            marker = self.runs / short.name / CELL_MARKER
            if marker.exists() and same_config(json.loads(marker.read_text()),
                                               json.loads(json.dumps(resolved(short, root)))):
                return marker.parent
        return None


def shorter_cells(cell: Cell, names: Iterable[str]) -> list[Cell]:
    """``cell`` with fewer steps, for each such length among the cell ``names``, longest first."""
    lengths = {name.removeprefix(f"{cell.stem}_") for name in names if name.startswith(f"{cell.stem}_")}
    return [replace(cell, steps=s) for s in sorted((int(n) for n in lengths if n.isdigit()), reverse=True)
            if s < cell.steps]


def table_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every table script shares: where the data and the cells are, report-only, and
    which cells to train."""
    parser.add_argument("--root", type=Path, default=SHARED_DATA, help="dataset root (torchvision layout)")
    parser.add_argument("--out", type=Path, default=CELLS, help="where the cells' runs go")
    parser.add_argument("--store", type=Path, default=STORE, help="the cells' results (default bench/results.json, "
                        "tracked in git; a --quick run keeps its own beside its runs)")
    parser.add_argument("--report", action="store_true", help="only rebuild the tables from stored cells")
    parser.add_argument("--only", nargs="+", metavar="GLOB", default=["*"],
                        help="train only the cells whose names match (e.g. 'mnist_*_s0_*'); the tables show all")
    parser.add_argument("--again", action="store_true",
                        help="train the cells --only names again even where stored (scored by another machine's "
                        "classifier, say), or score their runs again where those are still here; each stored result "
                        "stays until its new one replaces it")


# Keys added to ddgan whose default does not reproduce what came before them: the value a stored
# cell without the key ran with (its samples came from the raw G before the averaged generator;
# F2A's lambda saw every D every step before the refreshed copies).
IMPLIED = {("train", "g_ema"): 0.0, ("algo", "lambda_refresh"): 1}
# Keys only some algorithms read: a cell of another algorithm trains the same whatever they hold.
# lambda_refresh paces the copies of the Ds that a lambda descending D_agg's loss sees (the registry
# says which rules offer that objective).
READ_BY = {("algo", "lambda_refresh"): {a.name for a in ALGORITHMS.values() if "discriminator" in a.lambda_objectives}}


def same_config(stored: dict | None, now: dict) -> bool:
    """Whether a stored cell was trained with the config it resolves to now. A key added to ddgan
    after the cell was stored counts as the same when it holds the value the cell ran as if it held:
    its default (the new option did not exist then), or what IMPLIED says; a key ddgan has dropped
    since, or one the cell's algorithm does not read (READ_BY), is ignored (what a cell varies is in
    its name)."""
    if stored is None:
        return False
    defaults = Config().to_dict()
    for section, values in now.items():
        for key, value in values.items():
            if now["algo"]["name"] not in READ_BY.get((section, key), {now["algo"]["name"]}):
                continue
            if key in stored.get(section, {}):
                if stored[section][key] != value:
                    return False
            elif value != IMPLIED.get((section, key), defaults[section].get(key)):
                return False
    return True


def resolved(cell: Cell, root: Path) -> dict:
    """The config a cell trains with, where it runs and where its data lies aside (the store is
    shared through git, so a cell trained from another checkout or machine is the same cell), and
    whether it resumes (cells stored before 2026-12-02 hold ``never``: they started over instead)."""
    cfg = load_config(cell.config, cell.overrides(root)).to_dict()
    cfg["run"].pop("dir")
    cfg["data"].pop("root")
    cfg["train"].pop("resume")
    return cfg


def train_and_evaluate(config: Path, overrides: list[str], run_dir: Path, n: int, svm_train: int,
                       cache: Path, eval_args: list[str] = (), fresh: bool = True) -> dict:
    """Train ``config`` with as many torchrun ranks as it needs, then ``ddgan.eval`` it; the
    result is eval.json plus the training time and the clients' shares over the last fifth.

    Not ``fresh``: the run continues from its newest checkpoint (ddgan's resume, which refuses a
    checkpoint of other settings and continues exactly as the uninterrupted run). A stop request
    (a ``STOP`` file in the run directory, or SIGUSR1) checkpoints the run where it is and ends
    this call with a SystemExit saying so; the same command then resumes the cell."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--config", str(config), *overrides, *LAUNCH, f"run.dir={run_dir}"]
    ranks = world_size(load_config(config, overrides))
    if ranks == 1:
        cmd = [sys.executable, "-m", "ddgan.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               "-m", "ddgan.train", *args]
    start = time.perf_counter()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.with_name(run_dir.name + ".log")       # beside the run: a retried cell starts clean
    with open(log, "w" if fresh else "a") as out:
        offset = out.tell()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    lines = log.read_text()[offset:].splitlines()
    if proc.returncode:
        errors = [line for line in lines if line.startswith(("error:", "Traceback", "terminate"))]
        raise SystemExit(f"training failed (exit {proc.returncode}), full log in {log}: {' '.join(cmd)}\n"
                         + "\n".join(errors[:20]))
    stopped = [line for line in lines if line.startswith("stopped on request")]
    if stopped:
        raise SystemExit(f"{run_dir.name}: {stopped[-1].split(';')[0]}; the same command resumes it")
    train_seconds = time.perf_counter() - start
    result = evaluate(run_dir, n, cache, ["--svm-train", str(svm_train), *eval_args])
    result["train_seconds"] = round(train_seconds, 1)       # the last attempt's (a resumed cell: since its resume)
    resumed = [int(line.split()[3]) for line in log.read_text().splitlines() if line.startswith("resumed from step")]
    if resumed:
        result["resumed_from"] = resumed
    result.update(late_shares(run_dir))
    return result


def pin_classifiers(cache: Path, pinned: Path = PINNED) -> None:
    """Put the tracked domain classifiers (``pinned``) into ``cache`` where it holds another one.
    Each machine trains its own from the same seed, and other float rounding gives another
    classifier, which moves fid_classifier by up to bench/yardstick.py's spread (about a third):
    the tables score MNIST and Fashion-MNIST with these files on every machine instead."""
    for meta in sorted(pinned.glob("*.json")):
        target = cache / meta.name
        if target.exists() and json.loads(target.read_text())["sha256"] == json.loads(meta.read_text())["sha256"]:
            continue
        cache.mkdir(parents=True, exist_ok=True)
        # weights first: interrupted between the two, the cache keeps the old checksum and the next call copies again
        for src, dst in ((meta.with_suffix(".pt"), target.with_suffix(".pt")), (meta, target)):
            tmp = dst.with_suffix(f".tmp{os.getpid()}")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)


def evaluate(run_dir: Path, n: int, cache: Path = CLASSIFIERS, eval_args: Sequence[str] = (),
             checkpoint: Path | None = None) -> dict:
    """``ddgan.eval`` of a run's newest checkpoint (or ``checkpoint``) on ``n`` samples, its eval.json.
    Every bench evaluation goes through here, so a cell's points all share one cached classifier:
    the pinned one for MNIST and Fashion-MNIST (pin_classifiers). It runs on every core, for
    Inception FID's sake; the classifier trains on one thread anyway."""
    pin_classifiers(Path(cache))
    where = ["--checkpoint", str(checkpoint)] if checkpoint else []
    proc = subprocess.run([sys.executable, "-m", "ddgan.eval", "--run", str(run_dir), *where, "--n", str(n),
                           "--cache", str(cache), *eval_args],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"evaluation of {checkpoint or run_dir} failed:\n{proc.stderr[-3000:]}")
    return json.loads((run_dir / "eval.json").read_text())


def late_shares(run_dir: Path) -> dict:
    """Mean per-client forgiver and weight shares (and lambda) over the last fifth of the logged
    steps: who taught G at the end of the run."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    # a run resumed after a kill logs again the steps after its last checkpoint: the later record counts
    records = list({r["step"]: r for r in map(json.loads, filter(str.strip, lines))}.values())
    late = [r for r in records if "forgiver_share" in r][-max(1, len(records) // 5):]
    out = {}
    for key in ("forgiver_share", "weight_share"):
        if late and key in late[0]:
            out[key] = [round(statistics.mean(r[key][k] for r in late), 4) for k in range(len(late[0][key]))]
    if late and "lambda" in late[0]:
        out["lambda_end"] = round(late[-1]["lambda"], 3)
    if records and "named" in records[-1]:
        out["named"] = records[-1]["named"]
    return out


def generator_metrics(result: dict) -> dict:
    return result["generators"]["0"]


def yardstick(result: dict) -> str | None:
    """The domain classifier that scored a result's fid_classifier, as a table names it: its test
    accuracy, with the start of its SHA-256 where the result kept it (results scored before
    2026-12-06 did not); None where the result does not say. Each machine trains its own."""
    clf = result.get("classifier")
    if not clf:
        return None
    return f"{clf['accuracy']:.4f}" + (f" ({clf['sha256'][:8]})" if clf.get("sha256") else "")


def pinned(dataset: str, where: Path = PINNED) -> str | None:
    """The tracked classifier of ``dataset`` (pin_classifiers), named as yardstick names it."""
    metas = [json.loads(meta.read_text()) for meta in sorted(where.glob("*.json"))]
    return next((yardstick({"classifier": m}) for m in metas if m["dataset"] == dataset), None)


def mean_spread(values: list[float], fmt: str) -> str:
    """``mean`` of one value, ``mean (lo-hi)`` of several."""
    if not values:
        return "-"
    mean = f"{statistics.mean(values):{fmt}}"
    return mean if len(values) == 1 else f"{mean} ({min(values):{fmt}}-{max(values):{fmt}})"
