"""A linear probe of the context: is the visible goal linearly readable from what the DiT sees?"""

from __future__ import annotations

import numpy as np


def linear_probe(features: np.ndarray, targets: np.ndarray, *, train_fraction: float = 0.7,
                 ridge: float = 1e-2, seed: int = 0) -> dict:
    """Ridge regression from flattened context tokens (M, ...) to targets (M, 2); held-out R^2.

    Shows the goal is linearly readable from what the DiT attends to, so a policy that copies
    its prefix is taking a shortcut, not blind.
    """
    X = np.asarray(features, np.float64).reshape(len(features), -1)
    Y = np.asarray(targets, np.float64)
    order = np.random.default_rng(seed).permutation(len(X))
    n_train = int(train_fraction * len(X))
    tr, te = order[:n_train], order[n_train:]
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
    Xs = (X - mu) / sd
    Xtr = np.concatenate([Xs[tr], np.ones((len(tr), 1))], 1)
    coef = np.linalg.solve(Xtr.T @ Xtr + ridge * len(tr) * np.eye(Xtr.shape[1]), Xtr.T @ Y[tr])
    pred = np.concatenate([Xs[te], np.ones((len(te), 1))], 1) @ coef
    ss_res = ((pred - Y[te]) ** 2).sum()
    ss_tot = ((Y[te] - Y[te].mean(0)) ** 2).sum()
    return {"r2": float(1 - ss_res / ss_tot), "rmse": float(np.sqrt(((pred - Y[te]) ** 2)
                                                                    .sum(1).mean())),
            "n_train": int(len(tr)), "n_test": int(len(te))}
