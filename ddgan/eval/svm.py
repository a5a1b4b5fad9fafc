"""Kosmopoulos' protocol: how much a discriminator learned about the data, read by a linear SVM.

The activations of every block of D (``Discriminator.forward(x, features=True)``) on real images
are flattened and concatenated into one feature vector per image; a linear SVM (standardised
features, scikit-learn's LinearSVC) is trained on a seeded subset of the training split and its
error measured on a seeded subset of the test split. D runs in eval mode (batchnorm's running
statistics), so an image's features do not depend on the rest of its batch.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from ddgan.models import Discriminator


@torch.no_grad()
def d_features(D: Discriminator, images: torch.Tensor, batch: int = 500) -> np.ndarray:
    was_training = D.training
    D.eval()
    dtype = next(D.parameters()).dtype
    rows = []
    for start in range(0, len(images), batch):
        _, acts = D(images[start:start + batch].to(dtype), features=True)
        rows.append(torch.cat([a.flatten(1) for a in acts], 1).float())
    D.train(was_training)
    return torch.cat(rows).numpy()


def svm_test_error(D: Discriminator, train_x: torch.Tensor, train_y: np.ndarray,
                   test_x: torch.Tensor, test_y: np.ndarray, seed: int = 0) -> float:
    """Test error (fraction) of a linear SVM on D's features."""
    svm = make_pipeline(StandardScaler(), LinearSVC(C=0.01, max_iter=3000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)     # a few thousand iterations suffice to rank Ds
        svm.fit(d_features(D, train_x), train_y)
    return float((svm.predict(d_features(D, test_x)) != test_y).mean())
