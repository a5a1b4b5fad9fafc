"""eval.json (numbers) and report.md (numbers, figures, sample grids) in the run directory."""
from __future__ import annotations

import json
from pathlib import Path


def write(run: Path, result: dict, figures: list[Path], grids: dict[int, Path]) -> tuple[Path, Path]:
    json_path = run / "eval.json"
    json_path.write_text(json.dumps(result, indent=1))
    lines = [f"# Evaluation of {run}", "",
             f"Checkpoint `{result['checkpoint']}` (step {result['step']}), {result['algo']} with "
             f"{result['world_size']} rank(s) on {result['dataset']}.", "",
             f"Domain classifier: test accuracy {result['classifier']['accuracy']:.4f} "
             f"(`{result['classifier']['path']}`). `fid_classifier` is the Frechet distance in this "
             f"classifier's 128-d features, not Inception FID ({_inception(result['inception_fid'])}).", "",
             "| generator | samples | classes covered | confident fraction | confident classes | KL to target | "
             "fid_classifier | precision | recall |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for node, m in result["generators"].items():
        lines.append(f"| {node} | {m['n']} | {m['classes_covered']} / {len(m['class_histogram'])} | "
                     f"{m['confident_fraction']:.3f} | {m['confident_classes_covered']} | {m['kl_to_target']:.3f} | "
                     f"{m['fid_classifier']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} |")
    n_classes = len(next(iter(result["generators"].values()))["class_histogram"])
    lines += ["", "Within each class (the samples the classifier puts in it against the real images of it):", "",
              "| generator | " + " | ".join(f"class {c}" for c in range(n_classes)) + " |",
              "| --- |" + " --- |" * n_classes]
    for node, m in result["generators"].items():
        for key in ("precision", "recall"):
            lines.append(f"| {node}: {key} | " + " | ".join("-" if v is None else f"{v:.2f}"
                                                        for v in m[f"{key}_per_class"]) + " |")
    if result.get("svm"):
        svm = result["svm"]
        lines += ["", f"Linear SVM on each discriminator's activations ({svm['train']} training, {svm['test']} test "
                  "images): test error per node", "", "| node | test error |", "| --- | --- |"]
        lines += [f"| {node} | {100 * err:.2f} % |" for node, err in svm["test_error"].items()]
    lines += [""] + [f"![{p.stem}]({p.relative_to(run)})" for p in figures]
    lines += [""] + [f"Samples of generator {node}:\n\n![samples {node}]({p.relative_to(run)})" for node, p in grids.items()]
    md_path = run / "report.md"
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def _inception(fid: dict) -> str:
    if fid["value"] is None:
        return fid["reason"]
    return "Inception FID on the same samples: " + ", ".join(f"generator {k} {v:.2f}" for k, v in fid["value"].items())
