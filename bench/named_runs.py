"""Named runs: the bench's runs that live in a run directory of their own (``runs/<name>``, the
way a user trains the default job) rather than among the cells of bench/cells.py. A script
declares each one by its run directory, its config and its overrides (the seed among them), and
says which evaluations it needs: the averaged generator (``python -m ddgan.eval --run RUN``) and/or
the trained G itself (``--raw``).

A declared run is

* reused when its directory holds a finished run trained with the config it declares (read from
  its newest checkpoint's manifest, not from config.yaml: any launch into the directory rewrites
  that file, even one that fails before training), and never trained again;
* trained when it is missing (``launch/run.sh`` for the default job, torchrun of ``ddgan.train``
  for another config), resumed when it was interrupted;
* refused when its directory holds a run of other settings: nothing is deleted.

``ddgan.eval`` writes one ``eval.json`` (and report.md, and ``eval/``) per run directory, whichever
generator it scored, so a second evaluation overwrites the first. Each evaluation is therefore
filed, as it is made, in bench/named_runs.json under the run's name and its kind (``averaged`` or
``raw``), with the config the run trained with and the lambda and G loss it logged; an eval.json
already in the run directory is filed first when it scored the final checkpoint, that kind and
as many samples. Evaluations use ddgan.eval's own classifier cache (``--cache`` unset), as the
commands a section shows do. The file is tracked in git: a run lost with its machine keeps its numbers, and
its section rebuilds from them (``--report``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from bench.cells import CLASSIFIERS, ROOT, Results, same_config
from bench.report import publish_table
from ddgan.core.config import load_config
from ddgan.core.layout import world_size
from ddgan.runtime.checkpoint import complete_checkpoints, read_manifest

STORE = ROOT / "bench" / "named_runs.json"
DEFAULT_JOB = ROOT / "configs" / "default.yaml"
LAUNCHER = ("train.device=cpu", "comm.backend=gloo")      # what launch/run.sh adds to the overrides
KINDS = {"averaged": (), "raw": ("--raw",)}                # ddgan.eval's flags per evaluation kind
LOGGED = ("lambda", "g_loss")                              # per logged step, kept with the run


def shown(path: Path) -> str:
    """A path as a command line shows it: relative to the repository where it lies inside."""
    path = Path(path)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else str(path)


def comparable(config: dict) -> dict:
    """A config without where the run and its data lie, and whether it resumes (as bench cells)."""
    config = json.loads(json.dumps(config))
    config["run"].pop("dir", None)
    config["data"].pop("root", None)
    config["train"].pop("resume", None)
    return config


@dataclass(frozen=True)
class NamedRun:
    """One declared run. ``launch``: ``run.sh`` (launch/run.sh, the default job's launcher: it
    adds ``train.device=cpu comm.backend=gloo``) or ``torchrun`` (as many ranks as the config needs)."""

    dir: Path
    overrides: tuple[str, ...]
    config: Path = DEFAULT_JOB
    launch: str = "run.sh"

    @property
    def name(self) -> str:
        return Path(self.dir).name

    @property
    def path(self) -> Path:
        return Path(self.dir) if Path(self.dir).is_absolute() else ROOT / self.dir

    def settings(self) -> list[str]:
        launcher = list(LAUNCHER) if self.launch == "run.sh" else []
        return [*launcher, *self.overrides, f"run.dir={self.dir}"]

    def resolved(self) -> dict:
        """The config the run trains with, as comparable()."""
        return comparable(load_config(self.config, self.settings()).to_dict())

    def train_command(self) -> list[str]:
        if self.launch == "run.sh":
            config = [] if self.config == DEFAULT_JOB else [f"CONFIG={shown(self.config)}"]
            return [*config, "launch/run.sh", f"run.dir={shown(self.dir)}", *self.overrides]
        ranks = world_size(load_config(self.config, self.settings()))
        return ["torchrun", "--standalone", "--nproc_per_node", str(ranks), "-m", "ddgan.train", "--config",
                shown(self.config), *self.overrides, f"run.dir={shown(self.dir)}"]

    def eval_command(self, kind: str) -> list[str]:
        return ["python", "-m", "ddgan.eval", "--run", shown(self.dir), *KINDS[kind]]


def trained(run_dir: Path) -> tuple[dict, int, Path] | None:
    """The comparable config, step and directory of a run directory's newest complete checkpoint."""
    found = complete_checkpoints(run_dir) if (run_dir / "checkpoints").is_dir() else []
    if not found:
        return None
    manifest = read_manifest(found[0])
    return comparable(manifest["config"]), manifest["step"], found[0]


def logged(run_dir: Path) -> dict:
    """``{key: {step: value}}`` for LOGGED from metrics.jsonl (a step logged twice, after a resume: the later record)."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    records = {r["step"]: r for r in map(json.loads, filter(str.strip, lines))}
    return {key: {str(step): r[key] for step, r in sorted(records.items()) if key in r} for key in LOGGED
            if any(key in r for r in records.values())}


def filed_eval(run_dir: Path, step: int, checkpoint: Path, n: int) -> tuple[str, dict] | None:
    """The kind and content of the run directory's eval.json, if it scored ``checkpoint`` (made after
    it) on ``n`` samples per generator; an eval.json older than the averaged generator scored the raw G."""
    path = run_dir / "eval.json"
    if not path.exists() or path.stat().st_mtime < (checkpoint / "manifest.json").stat().st_mtime:
        return None
    evaluated = json.loads(path.read_text())
    if evaluated.get("step") != step or Path(evaluated.get("checkpoint", "")).name != checkpoint.name:
        return None
    if any(g.get("n") != n for g in evaluated.get("generators", {}).values()):
        return None
    return ("raw" if evaluated.get("raw_generator", True) else "averaged"), evaluated


class NamedRuns:
    """The store of the named runs, and what a script may do to fill it: ``train`` / ``evaluate``
    the runs whose names match ``only`` (``--report``: neither). Evaluations use ``n`` samples per
    generator and ``cache`` (ddgan.eval's ``--cache``; None: its default)."""

    def __init__(self, store: Path = STORE, only: tuple[str, ...] = ("*",), train: bool = True,
                 evaluate: bool = True, n: int = 10000, cache: Path | None = None):
        self.store = Results(store, ROOT / "runs")
        self.only, self.train, self.evaluate, self.n, self.cache = only, train, evaluate, n, cache

    def stored(self, run: NamedRun) -> dict | None:
        """The run's entry, if it was filed with the config the run declares today."""
        entry = self.store.cells.get(run.name)
        return entry if entry is not None and same_config(entry["config"], run.resolved()) else None

    def get(self, run: NamedRun, kinds: tuple[str, ...]) -> dict | None:
        """The run's entry with every evaluation of ``kinds`` in it, filling what is missing where
        allowed; None when it still lacks one (the script lists it as not run)."""
        entry = self.stored(run)
        if entry is not None and all(k in entry["evals"] for k in kinds):
            return entry
        if not any(fnmatch(run.name, pattern) for pattern in self.only) or not (self.train or self.evaluate):
            return None
        want = run.resolved()
        done = trained(run.path)
        if done is not None and not same_config(done[0], want):
            raise SystemExit(f"{shown(run.path)} holds a run of other settings than `{shlex.join(run.train_command())}`"
                             " declares: move it away (it is not deleted), or declare another run directory")
        if done is None or done[1] < want["train"]["steps"]:
            if not self.train:
                return None
            self._train(run)
            done = trained(run.path)
            if done is None or done[1] < want["train"]["steps"] or not same_config(done[0], want):
                raise SystemExit(f"{shown(run.path)}: `{shlex.join(run.train_command())}` left no finished run of "
                                 "the settings it declares")
        config, step, checkpoint = done
        entry = entry or {"config": config, "step": step, "evals": {}}
        entry.update(logged(run.path))
        adopt = filed_eval(run.path, step, checkpoint, self.n)
        if adopt is not None and adopt[0] in kinds and adopt[0] not in entry["evals"]:
            entry["evals"][adopt[0]] = adopt[1]
            self.store.add(run.name, entry)
        for kind in kinds:
            if kind not in entry["evals"]:
                if not self.evaluate:
                    return None
                entry["evals"][kind] = self._evaluate(run, kind, step)
                self.store.add(run.name, entry)
        self.store.add(run.name, entry)
        return entry

    def _train(self, run: NamedRun) -> None:
        cmd = run.train_command()
        print(f"[named runs] training {run.name}: {shlex.join(cmd)}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if run.launch == "run.sh":
            if run.config != DEFAULT_JOB:
                env["CONFIG"] = str(run.config)
            argv = ["bash", "launch/run.sh", f"run.dir={run.dir}", *run.overrides]
        else:
            argv = [sys.executable, "-m", "torch.distributed.run", *cmd[1:cmd.index("--config") + 1], str(run.config),
                    *run.overrides, f"run.dir={run.dir}"]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"training {run.name} failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
                             f"{proc.stderr[-3000:]}")

    def _evaluate(self, run: NamedRun, kind: str, step: int) -> dict:
        cmd = [sys.executable, "-m", "ddgan.eval", "--run", str(run.path), "--n", str(self.n), "--svm-train", "0",
               "--inception", "off", *(["--cache", str(self.cache)] if self.cache else []), *KINDS[kind]]
        print(f"[named runs] evaluating {run.name} ({kind})", flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True)
        if proc.returncode:
            raise SystemExit(f"evaluation of {run.path} failed:\n{proc.stderr[-3000:]}")
        evaluated = json.loads((run.path / "eval.json").read_text())
        assert evaluated["step"] == step and evaluated["raw_generator"] == (kind == "raw"), evaluated
        return evaluated


def not_run(script: str, missing: list[tuple[NamedRun, tuple[str, ...]]]) -> list[str]:
    """Lines naming each run the table lacks, with the commands that fill it."""
    if not missing:
        return []
    lines = ["", "Not run yet:"]
    for run, kinds in missing:
        evals = " and ".join(f"`{shlex.join(run.eval_command(k))}`" for k in kinds)
        lines.append(f"- {shown(run.dir)}: `{shlex.join(run.train_command())}` (unless trained), then {evals}; "
                     f"`python bench/{script} --only {run.name}` does both and files the results.")
    return lines


def arguments(doc: str, report_help: str, extra=None) -> argparse.Namespace:
    """The command line every named-run script takes (``extra`` adds its own options first)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if extra is not None:
        extra(parser)
    parser.add_argument("--report", action="store_true", help=report_help)
    parser.add_argument("--only", nargs="+", metavar="GLOB", default=["*"],
                        help="train and evaluate only the runs whose names match; the table shows all")
    parser.add_argument("--quick", action="store_true", help="tiny runs (seed 0) in a temporary directory; printed only")
    return parser.parse_args()


def section_main(doc: str, name: str, title: str, section, seeds: tuple[int, ...]) -> int:
    """A named-run script's whole command line: train and evaluate what is missing (``--only``),
    or only rebuild (``--report``), or run tiny seed-0 runs in a temporary directory (``--quick``,
    printed only); ``section(runs, seeds, quick)`` writes the section's body."""
    args = arguments(doc, "only rebuild the section from bench/named_runs.json")
    with tempfile.TemporaryDirectory() as tmp:
        quick = Path(tmp) if args.quick else None
        runs = NamedRuns(quick / "named_runs.json", n=200, cache=CLASSIFIERS) if quick else \
            NamedRuns(only=tuple(args.only), train=not args.report, evaluate=not args.report)
        body = section(runs, (0,) if quick else seeds, quick)
    publish_table(name, title, body, args.quick)
    return 0
