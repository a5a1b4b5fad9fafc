"""Metrics of generated samples, as pure functions of classifier outputs and features.

* ``classes_covered``: a class counts when it holds at least 1/(2C) of the samples.
* ``confident``: samples whose top class probability is >= 0.9; an argmax histogram alone counts
  blurry composites as classes, the confident histogram does not. ``confident_classes_covered``
  counts a class when its confidently classified samples are at least 1/(2C) of *all* samples.
* ``kl_to_target``: KL(p_gen || p_target), p_target uniform over the union of the clients'
  classes; both are smoothed with eps = 1e-6 (then renormalised) so that mass on a class outside
  the target gives a large, finite value.
* ``frechet_distance``: Frechet distance between Gaussians fitted to two feature sets, in float64.
  Computed on the domain classifier's features it is ``fid_classifier``, not Inception FID.
  tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2), the latter symmetric PSD, so both square roots come
  from ``numpy.linalg.eigh`` (no scipy).
* ``fid_on_classes``: fid_classifier restricted to some classes: the generated samples the
  classifier assigns to them against the real test images labelled with them (e.g. the honest
  clients' classes when one client lied).
* ``precision_recall``: Kynkaenniemi et al. (2019): a sample is inside a set's manifold when it is
  within the k-th nearest-neighbour radius (k = 3) of one of the set's points; precision is the
  fraction of generated samples inside the real manifold, recall the fraction of real samples
  inside the generated one.
* ``precision_recall_per_class``: the same within each class: the generated samples the classifier
  assigns to class c against the real test images labelled c. A generator can cover every class and
  still draw each one narrowly (every class's recall low), which the overall recall blurs.
"""
from __future__ import annotations

import numpy as np
import torch


def class_histogram(probs: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction of samples per argmax class."""
    if len(probs) == 0:
        return np.zeros(n_classes)
    return np.bincount(probs.argmax(1), minlength=n_classes) / len(probs)


def classes_covered(histogram: np.ndarray) -> int:
    return len(histogram) - len(missed_classes(histogram, range(len(histogram))))


def missed_classes(histogram, classes) -> list[int]:
    """Those of ``classes`` holding less than 1/(2C) of the samples (not covered)."""
    return [c for c in classes if histogram[c] < 1.0 / (2 * len(histogram))]


def confident(probs: np.ndarray, threshold: float = 0.9) -> tuple[float, np.ndarray]:
    """(fraction of samples classified with probability >= threshold, their histogram over all samples)."""
    keep = probs.max(1) >= threshold
    counts = np.bincount(probs[keep].argmax(1), minlength=probs.shape[1]) if keep.any() else np.zeros(probs.shape[1])
    return float(keep.mean()), counts / max(len(probs), 1)


def kl_to_target(histogram: np.ndarray, target_classes: list[int], eps: float = 1e-6) -> float:
    target = np.zeros(len(histogram))
    target[list(target_classes)] = 1.0
    p = (histogram + eps) / (histogram + eps).sum()
    q = (target / target.sum() + eps) / (target / target.sum() + eps).sum()
    return float((p * np.log(p / q)).sum())


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of N x D features, in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(a: np.ndarray, b: np.ndarray | tuple[np.ndarray, np.ndarray]) -> float:
    """Frechet distance between Gaussians fitted to features ``a`` and ``b`` (``b`` may be given as
    its mean and covariance already, e.g. cached reference statistics)."""
    (mu_a, cov_a), (mu_b, cov_b) = gaussian(a), (b if isinstance(b, tuple) else gaussian(b))
    root_a = _sqrt_psd(cov_a)
    middle = np.linalg.eigvalsh((root_a @ cov_b @ root_a + (root_a @ cov_b @ root_a).T) / 2)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    radii = []
    for start in range(0, len(x), 1024):
        d = torch.cdist(x[start:start + 1024], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)          # +1: the point itself is at 0
    return torch.cat(radii)


def _inside(points: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    hits = []
    for start in range(0, len(points), 1024):
        d = torch.cdist(points[start:start + 1024], ref)
        hits.append((d <= radii[None, :]).any(1))
    return torch.cat(hits)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    r, f = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    precision = _inside(f, r, _kth_radius(r, k)).double().mean().item()
    recall = _inside(r, f, _kth_radius(f, k)).double().mean().item()
    return precision, recall


def precision_recall_per_class(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                               n_classes: int, k: int = 3) -> tuple[list[float | None], list[float | None]]:
    """(precision, recall) lists, one entry per class; None for a class with k or fewer real images or
    generated samples in it (no k-th neighbour to measure a radius by)."""
    precision, recall = [], []
    for c in range(n_classes):
        r, f = real[real_labels == c], fake[fake_labels == c]
        p, q = precision_recall(r, f, k) if min(len(r), len(f)) > k else (None, None)
        precision.append(None if p is None else round(p, 4))
        recall.append(None if q is None else round(q, 4))
    return precision, recall


def feature_scale(features: np.ndarray) -> float:
    """The unit of ``fid_classifier_scaled``: a thousandth of the features' mean squared norm, E||f||^2
    (the trace of their covariance plus their squared mean norm). Classifiers trained apart (another seed, another
    machine's rounding) spread the same images' features over different scales, and a Frechet
    distance grows with the square of the scale; divided by the real features' E||f||^2, the
    distances the classifiers give the same samples agree far more closely (bench/yardstick.py)."""
    return float((np.asarray(features, np.float64) ** 2).sum(1).mean()) / 1000


def summarize(probs: np.ndarray, fake_features: np.ndarray, real_features: np.ndarray,
              target_classes: list[int], real_labels: np.ndarray) -> dict:
    """Every sample metric of one generator, as plain JSON values."""
    n_classes = probs.shape[1]
    hist = class_histogram(probs, n_classes)
    fraction, confident_hist = confident(probs)
    precision, recall = precision_recall(real_features, fake_features)
    per_class = precision_recall_per_class(real_features, real_labels, fake_features, probs.argmax(1), n_classes)
    fid = frechet_distance(fake_features, real_features)
    return {
        "n": int(len(probs)),
        "class_histogram": hist.round(5).tolist(),
        "classes_covered": classes_covered(hist),
        "confident_fraction": round(fraction, 5),
        "confident_classes_covered": int((confident_hist >= 1.0 / (2 * n_classes)).sum()),
        "confident_histogram": confident_hist.round(5).tolist(),
        "target_classes": sorted(int(c) for c in target_classes),
        "kl_to_target": round(kl_to_target(hist, target_classes), 5),
        "fid_classifier": round(fid, 4),
        "fid_classifier_scaled": round(fid / feature_scale(real_features), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "precision_per_class": per_class[0],
        "recall_per_class": per_class[1],
    }


def fid_on_classes(probs: np.ndarray, fake_features: np.ndarray, real_features: np.ndarray,
                   real_labels: np.ndarray, classes: list[int]) -> float | None:
    """Frechet distance of the samples classified into ``classes`` to the real images of them (None
    when fewer than 2 generated samples fall into them)."""
    fake = fake_features[np.isin(probs.argmax(1), classes)]
    real = real_features[np.isin(real_labels, classes)]
    return frechet_distance(fake, real) if len(fake) > 1 else None
