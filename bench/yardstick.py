"""How much fid_classifier depends on its yardstick: the same samples scored by domain classifiers
trained with different seeds.

    python bench/yardstick.py                  # every checkpoint of the cells under runs/bench/cells
    python bench/yardstick.py --report         # only rebuild the section from bench/yardstick.json
    python bench/yardstick.py --quick          # digits, real images only, printed

fid_classifier is the Frechet distance in the 128-d features of a small classifier that
``ddgan.eval`` trains once per machine and caches (ddgan/eval/classifier.py). It trains with a fixed
seed on one thread, yet different CPUs round differently: the MNIST classifiers that scored the F2U
table's rows came out with different test accuracies on different machines, so those rows were
measured with slightly different rulers. This script bounds what that does to a number: it scores
each checkpoint's 10,000 samples of the averaged generator (the ones ``ddgan.eval`` scores), and as
the floor 10,000 real training images, against 10,000 real test images in the features of the
classifiers of seeds 0, 1 and 2: fid_classifier, and fid_classifier_scaled (the same distance in
units of the real features' mean squared norm, which ddgan.eval also reports). A classifier that
trained with the same seed on another CPU starts from the same weights and sees the same batches,
so the spread across seeds bounds the spread across machines from above; how tight that bound is
was not measured (a neural network's training amplifies small rounding differences).
Measured points are kept in bench/yardstick.json (the checkpoints themselves may be lost).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import CELLS, CLASSIFIERS, ROOT, SHARED_DATA, pin_classifiers, pinned, yardstick  # noqa: E402
from bench.report import publish_table  # noqa: E402
from ddgan.core.config import DataConfig  # noqa: E402
from ddgan.eval import classifier, metrics  # noqa: E402
from ddgan.runtime.checkpoint import complete_checkpoints  # noqa: E402
from ddgan.sample import generate, load_generator  # noqa: E402

STORE = ROOT / "bench" / "yardstick.json"
SEEDS = (0, 1, 2)
DATASETS = ("mnist", "fashion_mnist")


def score(samples: dict[str, torch.Tensor], data: DataConfig, cache: Path, n: int) -> dict[str, dict]:
    """Each sample set's fid_classifier against ``n`` real test images, per classifier seed."""
    pin_classifiers(cache)                     # seed 0 is the classifier the tables score with
    real, _ = classifier.real_split(data, train=False, limit=n, seed=0)
    out = {name: {"fid": {}, "scaled": {}, "classifiers": {}} for name in samples}
    for seed in SEEDS:
        clf = classifier.load_or_train(data, cache, seed)
        real_features = clf.run(real)[1]
        unit = metrics.feature_scale(real_features)
        for name, x in samples.items():
            fid = metrics.frechet_distance(clf.run(x)[1], real_features)
            out[name]["fid"][str(seed)] = round(fid, 4)
            out[name]["scaled"][str(seed)] = round(fid / unit, 4)       # ddgan.eval's fid_classifier_scaled
            out[name]["classifiers"][str(seed)] = {"accuracy": clf.accuracy, "sha256": clf.sha256}
    return out


def measure(cells: Path, root: Path, cache: Path, n: int, datasets: tuple[str, ...]) -> dict[str, dict]:
    """The real floor and every complete checkpoint of every cell of ``datasets`` under ``cells``."""
    points = {}
    for dataset in datasets:
        data = DataConfig(name=dataset, root=str(root))
        samples = {f"{dataset}: real training images": classifier.real_split(data, train=True, limit=n, seed=0)[0]}
        for run in sorted(cells.glob(f"{dataset}_*")):
            for where in complete_checkpoints(run) if run.is_dir() else []:
                G, cfg = load_generator(where)
                if cfg.data.name == dataset:
                    samples[f"{run.name}: {where.name}"] = generate(G, n, seed=0)
        for name, got in score(samples, data, cache, n).items():
            points[name] = {"dataset": dataset, "n": n, **got}
    return points


def spread(point: dict, key: str = "fid") -> float:
    """(max - min) / mean of a point's fid_classifier (or ``scaled``: fid_classifier_scaled) over the
    classifier seeds."""
    values = list(point[key].values())
    return (max(values) - min(values)) / statistics.mean(values)


def span(points: list[dict], key: str) -> str:
    """The smallest to the largest spread of ``points`` on ``key``."""
    spreads = [spread(p, key) for p in points]
    return f"{min(spreads):.1%} to {max(spreads):.1%}"


def checkpoints(points: dict[str, dict], dataset: str) -> list[dict]:
    """The points of ``dataset`` that score a generator's samples (not the real floor)."""
    return [p for name, p in points.items() if p["dataset"] == dataset and "real training" not in name]


def widest(dataset: str, key: str = "fid", store: Path = STORE) -> float | None:
    """The largest spread measured over ``dataset``'s checkpoints (None where none was)."""
    points = json.loads(store.read_text()) if store.exists() else {}
    return max((spread(p, key) for p in checkpoints(points, dataset) if key in p), default=None)


def mixed_note(dataset: str, used: list[str]) -> str | None:
    """A table's line for ``dataset`` when its cells were scored by more than one domain classifier
    (``used``, as cells.yardstick names them): how far this script measured a change of classifier
    to move the same samples' fid_classifier, and the classifier cells are scored with from now on."""
    if len(used) < 2:
        return None
    line = (f"- {dataset}: its cells were scored by {len(used)} domain classifiers (test accuracy "
            f"{', '.join(used)}), trained on different machines. ")
    bound, scaled = widest(dataset), widest(dataset, "scaled")
    if bound is None:
        line += "How far that moves fid_classifier is not measured yet (`python bench/yardstick.py`)."
    else:
        line += f"Classifiers of different seeds move the same samples' fid_classifier by up to {bound:.1%}"
        if scaled is not None:
            line += f", fid_classifier_scaled (in eval.json since 2026-12-06) by up to {scaled:.1%}"
        line += (" ([the yardstick](#the-fid_classifier-yardstick-classifiers-of-three-seeds)): a bound on what "
                 "another machine's classifier does. Inception FID's network is fixed.")
    if (tracked := pinned(dataset)) is not None:
        line += (f" Cells scored since 2026-12-06 use the tracked one, {tracked}, on every machine "
                 "(bench/classifiers); a table script's `--only <cells> --again` trains older ones anew with it.")
    return line


def mixed_notes(results: list[dict]) -> list[str]:
    """mixed_note for each dataset of a table's stored ``results`` (cells' results)."""
    used = {}
    for result in results:
        if (y := yardstick(result)) is not None:
            used.setdefault(result["config"]["data"]["name"], set()).add(y)
    return [note for dataset, names in sorted(used.items()) if (note := mixed_note(dataset, sorted(names)))]


def section(points: dict[str, dict]) -> str:
    seeds = " / ".join(map(str, SEEDS))
    lines = [f"| samples | fid_classifier (classifier seeds {seeds}) | spread (max - min) / mean | "
             f"fid_classifier_scaled (seeds {seeds}) | spread |", "| --- | --- | --- | --- | --- |"]
    for name, p in sorted(points.items(), key=lambda kv: (kv[1]["dataset"], statistics.mean(kv[1]["fid"].values()))):
        lines.append(f"| {name} | " + " / ".join(f"{p['fid'][str(s)]:.2f}" for s in SEEDS) + f" | {spread(p):.1%} | "
                     + " / ".join(f"{p['scaled'][str(s)]:.2f}" for s in SEEDS) + f" | {spread(p, 'scaled'):.1%} |")
    notes = []
    for dataset in sorted({p["dataset"] for p in points.values()}):
        mine = [p for p in points.values() if p["dataset"] == dataset]
        accuracies = ", ".join(f"{mine[0]['classifiers'][str(s)]['accuracy']:.4f}" for s in SEEDS)
        fakes = checkpoints(points, dataset)
        notes.append(f"- {dataset}: the classifiers' test accuracies {accuracies} (seeds {', '.join(map(str, SEEDS))})"
                     + (f"; over {len(fakes)} checkpoints fid_classifier spreads by {span(fakes, 'fid')}, "
                        f"fid_classifier_scaled by {span(fakes, 'scaled')}." if fakes else "; no checkpoint scored."))
    return "\n".join([f"Each row: one sample set's fid_classifier ({next(iter(points.values()))['n']:,} samples "
                      "against as many real test images) under the domain classifiers of three seeds. The "
                      "checkpoints are those on disk where the script ran (the cells of earlier machines are gone).",
                      "", *lines,
                      "", *notes])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=Path, default=CELLS, help="where the cells' runs lie")
    parser.add_argument("--root", type=Path, default=SHARED_DATA, help="dataset root (torchvision layout)")
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="the datasets to measure")
    parser.add_argument("--n", type=int, default=10000, help="samples (and real test images) per point")
    parser.add_argument("--report", action="store_true", help="only rebuild the section from the store")
    parser.add_argument("--quick", action="store_true", help="digits, real images only, 500 of them; printed")
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.n = ("digits",), 500
    stored = json.loads(STORE.read_text()) if STORE.exists() else {}
    points = {} if args.report else measure(args.cells, args.root, CLASSIFIERS, args.n, tuple(args.datasets))
    if not args.quick:
        stored.update(points)
        STORE.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        points = stored
    publish_table("yardstick", "The fid_classifier yardstick: classifiers of three seeds", section(points), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
