"""Kosmopoulos' protocol: how much a discriminator learned about the data, read by a linear SVM.

The activations of every block of D (``Discriminator.forward(x, features=True)``) on real images
are flattened and concatenated into one feature vector per image; a linear SVM (standardised
features, hinge loss, L2 penalty, fitted by scikit-learn's SGDClassifier in 10 seeded epochs) is
trained on a seeded subset of the training split and its error measured on a seeded subset of the
test split. SGD rather than LinearSVC's exact solver: on MNIST D features (18,816 per image) the
exact solver took 45-65 s per node for 1,000 images and did not converge, SGD takes 4 s and its
error was no worse; the error hardly moved with the penalty (alpha 1e-4 to 1e-1: 8.8-10.3 % on
3,000 images). D runs in eval mode (batchnorm's running statistics), so an image's features do
not depend on the rest of its batch.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ddgan.core.models import Discriminator


@torch.no_grad()
def d_features(D: Discriminator, images: torch.Tensor, batch: int = 500) -> np.ndarray:
    was_training = D.training
    D.eval()
    weight = next(D.parameters())
    rows = []
    for start in range(0, len(images), batch):
        _, acts = D(images[start:start + batch].to(weight.device, weight.dtype), features=True)
        rows.append(torch.cat([a.flatten(1) for a in acts], 1).float())
    D.train(was_training)
    return torch.cat(rows).cpu().numpy()


def svm_test_error(D: Discriminator, train_x: torch.Tensor, train_y: np.ndarray,
                   test_x: torch.Tensor, test_y: np.ndarray, seed: int = 0, scale: bool = True) -> float:
    """Test error (fraction) of a linear SVM on D's features (``scale``: standardised first)."""
    # tol=None: exactly max_iter epochs, so the cost is known and the result does not hinge on a stopping test
    steps = [StandardScaler()] if scale else []
    svm = make_pipeline(*steps, SGDClassifier(loss="hinge", alpha=1e-3, max_iter=10, tol=None, random_state=seed))
    svm.fit(d_features(D, train_x), train_y)
    return float((svm.predict(d_features(D, test_x)) != test_y).mean())
