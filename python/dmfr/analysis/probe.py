"""Modality probe: how much "synthetic-ness" a model's features keep.

A linear classifier (logistic regression on L2-normalised features) is trained to tell real from
synthetic samples; its cross-validated ROC AUC is the measure (0.5: the modality is gone, 1.0:
linearly separable — the fixed modality the paper's filter removes, § "Synthesis Sample Modal
Visualization"). Folds are grouped by identity when identities are known, so the probe cannot
pass by recognising people it saw in training.
"""
from __future__ import annotations

import numpy as np

from dmfr.errors import DataError
from dmfr.eval.verification import l2_normalize


def modality_probe(features: np.ndarray, modalities: np.ndarray, identities: np.ndarray | None = None,
                   folds: int = 5, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = (np.asarray(modalities) == "synthetic").astype(int)
    n_syn, n_real = int(y.sum()), int(y.size - y.sum())
    if min(n_syn, n_real) < folds:
        raise DataError(f"modality probe needs at least {folds} real and {folds} synthetic samples, "
                        f"got {n_real} real and {n_syn} synthetic")
    x = l2_normalize(features)
    if identities is not None and np.unique(identities).size >= folds:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, identities)
        grouping = "identity"
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
        grouping = "none"
    aucs = []
    for train, test in splits:
        if np.unique(y[train]).size < 2 or np.unique(y[test]).size < 2:
            continue  # a fold without both modalities has no AUC
        clf = LogisticRegression(max_iter=2000).fit(x[train], y[train])
        aucs.append(float(roc_auc_score(y[test], clf.decision_function(x[test]))))
    if not aucs:
        raise DataError("modality probe: no fold held both real and synthetic samples")
    return {"auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "folds": aucs,
            "grouped_by": grouping, "n_real": n_real, "n_synthetic": n_syn}
