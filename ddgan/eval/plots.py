"""Figures of a run from its metrics.jsonl and its evaluation (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _series(records: list[dict], key: str) -> tuple[list[int], list]:
    rows = [(r["step"], r[key]) for r in records if key in r]
    return [s for s, _ in rows], [v for _, v in rows]


def _per_client(ax, steps: list[int], values: list, label: str) -> None:
    if values and isinstance(values[0], list):
        for k in range(len(values[0])):
            ax.plot(steps, [v[k] for v in values], label=f"{label} {k}", lw=1)
    elif values:
        ax.plot(steps, values, label=label, lw=1)


def training_curves(records: list[dict], out: Path) -> list[Path]:
    """Loss curves, lambda and forgiver shares (whichever the run logged); the files written."""
    written = []
    panels = [("losses", [("d_loss", "D"), ("g_loss", "G")]), ("lambda", [("lambda", "lambda")]),
              ("forgiver_share", [("forgiver_share", "client")])]
    for name, keys in panels:
        if not any(key in r for r in records for key, _ in keys):
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in keys:
            _per_client(ax, *_series(records, key), label)
        ax.set_xlabel("step")
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def class_histogram(histogram: list[float], confident: list[float], target: list[int], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3))
    classes = range(len(histogram))
    ax.bar(classes, histogram, color=["tab:blue" if c in target else "tab:gray" for c in classes], label="argmax")
    ax.bar(classes, confident, color="tab:orange", alpha=0.8, label="confident (p >= 0.9)")
    ax.axhline(1 / (2 * len(histogram)), color="k", lw=0.8, ls="--", label="coverage threshold 1/(2C)")
    ax.set_xticks(list(classes))
    ax.set_xlabel("class")
    ax.set_ylabel("fraction of samples")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
