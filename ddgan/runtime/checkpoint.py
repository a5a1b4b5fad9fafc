"""Atomic, verified, per-rank checkpoints shared by every trainer.

Layout: ``<run>/checkpoints/step_NNNNNNN/rank_K.pt`` (one file per rank: that rank's
``state_dict()``s) and ``manifest.json`` (step, world size, the SHA-256 and size of every rank
file, the config). A rank file is written to a temporary name, fsynced and renamed; the manifest
is written the same way by rank 0 only after every rank reported success, so a checkpoint without
a manifest is incomplete and is never resumed. Loading uses ``torch.load(weights_only=True)``
(no arbitrary unpickling) after checking the file's size and checksum against the manifest.
The run directory must be visible to every rank at the same path (a shared filesystem on
multi-node jobs).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from ddgan.core.config import Config, config_diff, config_from_dict
from ddgan.core.errors import CheckpointError, ConfigError, TrainingError
from ddgan.runtime.comm import Comm
from ddgan.runtime.preemption import StopRequest

# Fields a resumed run may change: how long and where it runs, how it logs and talks.
RESUMABLE_CHANGES = ("train.steps", "train.resume", "run", "comm.timeout_s", "comm.watchdog", "comm.backend",
                     "train.device", "train.deterministic", "train.stack_clients", "eval")
# ... and how clients are spread over ranks, where the trainer can regroup them (``files`` below)
REGROUPING = ("train.client_ranks",)


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}"


def _fsync_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _finite(state: Any) -> bool:
    if isinstance(state, torch.Tensor):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_finite(v) for v in state)
    return True


def save(run_dir: Path, step: int, state: dict[str, Any], cfg: Config, comm: Comm, keep: int) -> Path:
    """Collective: every rank writes its ``state``; rank 0 seals the checkpoint with a manifest.

    A rank whose state holds NaN/inf or whose write fails (disk full, permissions) makes every
    rank raise TrainingError, and the previous complete checkpoint stays the newest.
    """
    where = step_dir(run_dir, step)
    path = where / f"rank_{comm.rank}.pt"
    error = ""
    if not _finite(state):
        error = "non-finite values in the model or optimizer state"
    else:
        try:
            where.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()      # serialize first: torch.save turns a full disk into a RuntimeError
            torch.save(state, buffer)
            _fsync_write(path, lambda f: f.write(buffer.getbuffer()))
        except OSError as exc:
            error = f"cannot write {path}: {exc.strerror or exc}"
    digest = bytes.fromhex(_digest(path)) if not error else bytes(32)
    size = path.stat().st_size if not error else 0
    row = torch.tensor([0 if not error else 1, size, *digest], dtype=torch.int64)
    rows = comm.all_gather(row, "checkpoint checksums")
    failed = [r for r in range(comm.world) if rows[r, 0]]
    if failed:
        mine = f" (rank {comm.rank}: {error})" if error else ""
        raise TrainingError(f"step {step}: checkpoint not written, rank(s) {failed} failed{mine}; "
                            f"the newest complete checkpoint is kept", same_on_all_ranks=not error)
    if comm.rank == 0:
        manifest = {
            "format": "ddgan-checkpoint-1", "step": step, "world_size": comm.world,
            "files": {f"rank_{r}.pt": {"bytes": int(rows[r, 1]), "sha256": bytes(rows[r, 2:].tolist()).hex()}
                      for r in range(comm.world)},
            "config": cfg.to_dict(),
        }
        try:
            _fsync_write(where / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
        except OSError as exc:
            raise TrainingError(f"step {step}: cannot write the checkpoint manifest ({exc.strerror}); "
                                f"the newest complete checkpoint is kept") from None
        _prune(Path(run_dir), keep)
    return where


def _prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and older incomplete leftovers.

    A directory is renamed out of the ``step_*`` namespace before it is deleted, so a kill in the
    middle of the deletion never leaves a half-deleted checkpoint that still looks complete.
    """
    complete = [d for d in _step_dirs(run_dir) if (d / "manifest.json").exists()]
    newest = complete[-1] if complete else None
    doomed = complete[:-keep] + [d for d in _step_dirs(run_dir)
                                 if newest is not None and d < newest and not (d / "manifest.json").exists()]
    for d in doomed:
        trash = d.with_name("deleting_" + d.name)
        d.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    for leftover in _in_checkpoints(run_dir, "deleting_*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _in_checkpoints(run_dir: Path, pattern: str) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    return sorted(root.glob(pattern)) if root.is_dir() else []


def _step_dirs(run_dir: Path) -> list[Path]:
    return [d for d in _in_checkpoints(run_dir, "step_*") if d.is_dir()]


def read_manifest(where: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((Path(where) / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: no readable manifest.json ({exc})", same_on_all_ranks=True) from None
    if manifest.get("format") != "ddgan-checkpoint-1":
        raise CheckpointError(f"{where}: not a ddgan checkpoint (manifest format {manifest.get('format')!r})",
                              same_on_all_ranks=True)
    return manifest


def flat_state(state, prefix=""):
    """A nested state (dicts, lists, tensors) as {dotted path: leaf}, for exact comparisons."""
    out = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(flat_state(v, f"{prefix}{k}."))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            out.update(flat_state(v, f"{prefix}{i}."))
    else:
        out[prefix] = state
    return out


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories with a manifest, newest first (files not yet verified)."""
    return [d for d in reversed(_step_dirs(run_dir)) if (d / "manifest.json").exists()]


def load_rank_file(where: Path, rank: int, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """One rank's state from checkpoint ``where``, verified against the manifest; CheckpointError if bad."""
    manifest = manifest or read_manifest(where)
    name = f"rank_{rank}.pt"
    path = Path(where) / name
    expect = manifest["files"].get(name)
    if expect is None:
        raise CheckpointError(f"{where}: the manifest lists no {name} (saved with {manifest['world_size']} ranks)")
    if not path.exists() or path.stat().st_size != expect["bytes"]:
        size = path.stat().st_size if path.exists() else "missing"
        raise CheckpointError(f"{path}: truncated or missing ({size} bytes, manifest says {expect['bytes']})")
    if _digest(path) != expect["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch; the file is corrupt")
    try:
        with warnings.catch_warnings():   # torch warns about foreign pickle protocols; the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or failed: not ours, or damaged
        raise CheckpointError(f"{path}: cannot be loaded safely ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None


def check_compatible(manifest: dict[str, Any], cfg: Config, world: int, where: Path,
                     regroups: bool = False) -> Config:
    """Raise ConfigError when a checkpoint was written by another config or world size (with
    ``regroups``, a trainer whose clients may move between ranks: by another config than one that
    only changes ``REGROUPING``); the config it was saved with."""
    saved = config_from_dict(manifest["config"], source=str(where / "manifest.json"))
    if manifest["world_size"] != world and not regroups:
        raise ConfigError(f"{where}: saved by {manifest['world_size']} ranks, this run has {world}")
    diff = config_diff(saved, cfg, ignore=RESUMABLE_CHANGES + (REGROUPING if regroups else ()))
    if diff:
        raise ConfigError(f"{where}: checkpoint from another config; fields that differ: {'; '.join(diff)} "
                          f"(use another run.dir, or train.resume=never with an empty run directory)")
    return saved


def _agreed_candidates(run_dir: Path, comm: Comm) -> list[Path]:
    """Rank 0's complete checkpoints, newest first, on every rank.

    Ranks must try the same checkpoints in the same order, or their verification all_reduces pair
    up wrongly and the group hangs; but they can see different sets: a network file system's cache,
    or a rank that starts resuming while rank 0 is still sealing the previous checkpoint.
    """
    mine = [int(d.name.removeprefix("step_")) for d in complete_checkpoints(run_dir)]
    count = int(comm.broadcast(torch.tensor([len(mine)]), 0, "checkpoint list"))
    steps = torch.tensor(mine) if comm.rank == 0 else torch.zeros(count, dtype=torch.int64)
    if count:
        comm.broadcast(steps, 0, "checkpoint list")
    return [step_dir(run_dir, step) for step in steps.tolist()]


def resume(run_dir: Path, cfg: Config, comm: Comm, files: Callable[[Config], list[int]] | None = None
           ) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Collective: this rank's state from the newest checkpoint every rank can verify, or None.
    ``files`` (a trainer whose clients can move between ranks) maps the config a checkpoint was
    saved with to the saved ranks whose files this rank needs; their states come back as a list.

    Candidates are tried newest first; each rank verifies its own file and all ranks agree (an
    all_reduce of MIN) before using it, so a half-written or corrupt checkpoint falls back to the
    previous one on every rank together. A checkpoint of another config is an error, not skipped;
    so is a run directory whose checkpoints all fail verification (starting over would silently
    throw the run's progress away).
    """
    candidates = _agreed_candidates(run_dir, comm)
    for where in candidates:
        manifest = read_manifest(where)
        saved = check_compatible(manifest, cfg, comm.world, where, regroups=files is not None)
        try:
            if files is None:
                state, ok = load_rank_file(where, comm.rank, manifest), 1
            else:
                state, ok = [load_rank_file(where, r, manifest) for r in files(saved)], 1
        except CheckpointError as exc:
            state, ok = None, 0
            print(f"[rank {comm.rank}] skipping checkpoint: {exc}", file=sys.stderr, flush=True)
        agreed = comm.all_reduce(torch.tensor([ok]), "checkpoint verification", op=torch.distributed.ReduceOp.MIN)
        if agreed.item():
            return state
    if candidates:
        raise CheckpointError(f"{Path(run_dir) / 'checkpoints'}: none of the {len(candidates)} checkpoints verifies "
                              f"on every rank (see the messages above); move them aside to start over",
                              same_on_all_ranks=True)
    return None


def resume_or_start(run_dir: Path, cfg: Config, comm: Comm, files: Callable[[Config], list[int]] | None = None
                    ) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Collective, at the start of every trainer: this rank's saved state per ``train.resume``, or
    None to start fresh (``never`` refuses a run directory that already holds checkpoints);
    ``files`` as in :func:`resume`."""
    if cfg.train.resume == "never":
        if _agreed_candidates(run_dir, comm):
            raise ConfigError(f"train.resume = 'never': {run_dir}/checkpoints already holds checkpoints; "
                              f"use another run.dir, or train.resume=auto to continue")
        return None
    state = resume(run_dir, cfg, comm, files)
    if state is not None and comm.rank == 0:
        step = (state[0] if isinstance(state, list) else state)["step"]
        print(f"resumed from step {step} ({Path(run_dir) / 'checkpoints'})", flush=True)
    return state


def at_step_end(run_dir: Path, cfg: Config, comm: Comm, stop: StopRequest, step: int,
                state: Callable[[], dict[str, Any]], before_save: Callable[[], None] | None = None) -> bool:
    """Collective, the end of every step of every trainer: the stop check, then a checkpoint when
    one is due (every ``run.checkpoint_every`` steps, the last step, a stop; ``before_save`` runs
    first, e.g. the NaN check); True when the run stops here (resumable)."""
    stopping = stop.check(comm, step)
    if step % cfg.run.checkpoint_every == 0 or step == cfg.train.steps or stopping:
        if before_save is not None:
            before_save()
        save(run_dir, step, state(), cfg, comm, cfg.run.keep_checkpoints)
    if stopping:
        stop.clear()
    return stopping
