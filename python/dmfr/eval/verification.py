"""Pair verification (LFW / CFP-FP / AgeDB style), insightface's protocol.

Follows insightface `recognition/arcface_torch/eval/verification.py` (after FaceNet's `lfw.py`):
- features are L2-normalised; from images the embedding of the image and of its horizontal flip
  are summed first, then normalised (`test()`: `embeddings_list[0] + embeddings_list[1]`);
- the distance is the squared Euclidean distance between the two normalised features;
- 10 folds in file order (sklearn `KFold(shuffle=False)`: the first `n % 10` folds get one more
  pair); a pair is called "same" when `dist < threshold` (strict, `np.less`);
- per fold, the threshold is the first (smallest) one of `np.arange(0, 4, 0.01)` with the best
  accuracy on the other 9 folds (`np.argmax`), and accuracy is measured on the held-out fold;
- VAL@FAR (`calculate_val`): per fold, FAR on the other 9 folds is computed over
  `np.arange(0, 4, 0.001)`; if the largest FAR reaches the target, the threshold is interpolated
  linearly from FAR to threshold at the target, else it is 0; VAL and FAR are then measured on the
  held-out fold and averaged. insightface calls `interp1d(far_train, thresholds, kind='slinear')`,
  which current SciPy rejects because `far_train` repeats values; we keep, for every distinct FAR,
  its smallest threshold (the first where that FAR is reached) and interpolate linearly — the
  same piecewise-linear curve without the repeated knots.
- `std` is `np.std` over the fold accuracies (population std, as insightface prints);
  `stderr` is the LFW benchmark's standard error, sample std (ddof=1) / sqrt(n_folds).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dmfr.errors import DataError

ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)  # insightface evaluate(): calculate_roc grid
VAL_THRESHOLDS = np.arange(0, 4, 0.001)      # insightface evaluate(): calculate_val grid
VAL_FAR_TARGET = 1e-3


@dataclass
class VerificationResult:
    accuracy: float
    std: float
    stderr: float
    folds: list
    thresholds: list
    val: float
    val_std: float
    far: float
    n_pairs: int
    n_same: int

    def to_json(self) -> dict:
        out = asdict(self)
        # The field name; `val` is kept as well for readers of insightface's output.
        out["val_at_far_1e-3"] = out.pop("val")
        out["val_at_far_1e-3_std"] = out.pop("val_std")
        out["far_at_val"] = out.pop("far")
        # a side with no pairs (e.g. an all-positive pack) leaves VAL/FAR undefined: null in JSON
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero (sklearn.preprocessing.normalize)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def flip_fused(emb: np.ndarray, emb_flip: np.ndarray | None) -> np.ndarray:
    """insightface's flip test: sum the image and flipped-image embeddings, then normalise."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb_flip is not None:
        emb = emb + np.asarray(emb_flip, dtype=np.float64)
    return l2_normalize(emb)


def pair_distances(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance row by row."""
    diff = np.asarray(emb1, dtype=np.float64) - np.asarray(emb2, dtype=np.float64)
    return np.sum(diff * diff, axis=1)


def fold_slices(n: int, n_folds: int) -> list[np.ndarray]:
    """Test indices of sklearn KFold(n_splits, shuffle=False): contiguous, first n % k get +1."""
    if n < n_folds:
        raise DataError(f"verification needs at least {n_folds} pairs for {n_folds} folds, got {n}")
    sizes = np.full(n_folds, n // n_folds, dtype=np.int64)
    sizes[: n % n_folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.arange(bounds[i], bounds[i + 1]) for i in range(n_folds)]


def _counts_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """#values < t for every t (np.less semantics) from a sorted array."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def accuracy_per_threshold(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(TP + TN) / n for `predict same = dist < t`, for every threshold at once."""
    same = np.sort(dist[issame])
    diff = np.sort(dist[~issame])
    tp = _counts_below(same, thresholds)
    tn = diff.size - _counts_below(diff, thresholds)
    return (tp + tn) / float(dist.size)


def val_far_per_threshold(dist: np.ndarray, issame: np.ndarray, thresholds: np.ndarray):
    """(VAL, FAR) for `accept = dist < t`; NaN where a side has no pairs (insightface divides by 0)."""
    same = np.sort(dist[issame])
    diff = np.sort(dist[~issame])
    with np.errstate(invalid="ignore", divide="ignore"):
        val = _counts_below(same, thresholds) / float(same.size) if same.size else np.full(len(thresholds), np.nan)
        far = _counts_below(diff, thresholds) / float(diff.size) if diff.size else np.full(len(thresholds), np.nan)
    return val, far


def _threshold_for_far(far_train: np.ndarray, thresholds: np.ndarray, far_target: float) -> float:
    if np.max(far_train) < far_target:
        return 0.0
    uniq, first = np.unique(far_train, return_index=True)
    if uniq.size == 1:  # a single knot: interp1d would need two; the curve is that point
        return float(thresholds[first[0]])
    return float(np.interp(far_target, uniq, thresholds[first]))


def evaluate_distances(dist: np.ndarray, issame: np.ndarray, n_folds: int = 10,
                       far_target: float = VAL_FAR_TARGET, fold_distances=None) -> VerificationResult:
    """The 10-fold protocol on pair distances. `fold_distances(train_idx)`, when given, returns
    the distances to use for that fold (insightface's `pca > 0` mode refits PCA per fold);
    VAL@FAR always uses `dist`, as insightface's `calculate_val` does."""
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    if dist.shape != issame.shape or dist.ndim != 1:
        raise DataError(f"{dist.shape[0]} distances but {issame.shape[0]} labels")
    if not np.all(np.isfinite(dist)):
        raise DataError("non-finite distance (NaN/inf features?)")
    folds = fold_slices(dist.size, n_folds)
    everything = np.arange(dist.size)
    accs, best_ts, vals, fars = [], [], [], []
    for test in folds:
        train = np.setdiff1d(everything, test, assume_unique=True)
        d = dist if fold_distances is None else np.asarray(fold_distances(train), dtype=np.float64)
        acc_train = accuracy_per_threshold(d[train], issame[train], ACCURACY_THRESHOLDS)
        best = ACCURACY_THRESHOLDS[int(np.argmax(acc_train))]
        best_ts.append(float(best))
        accs.append(float(accuracy_per_threshold(d[test], issame[test], np.array([best]))[0]))
        _, far_train = val_far_per_threshold(dist[train], issame[train], VAL_THRESHOLDS)
        if not np.all(np.isfinite(far_train)):  # no different-person pair to train on: undefined
            vals.append(float("nan"))
            fars.append(float("nan"))
            continue
        t = _threshold_for_far(far_train, VAL_THRESHOLDS, far_target)
        v, f = val_far_per_threshold(dist[test], issame[test], np.array([t]))
        vals.append(float(v[0]))
        fars.append(float(f[0]))
    accs_arr = np.array(accs)
    return VerificationResult(
        accuracy=float(accs_arr.mean()),
        std=float(accs_arr.std()),
        stderr=float(accs_arr.std(ddof=1) / np.sqrt(n_folds)),
        folds=accs,
        thresholds=best_ts,
        val=float(np.mean(vals)),
        val_std=float(np.std(vals)),
        far=float(np.mean(fars)),
        n_pairs=int(dist.size),
        n_same=int(issame.sum()),
    )


def pca_fold_distances(emb1: np.ndarray, emb2: np.ndarray, n_components: int):
    """insightface's `pca > 0`: PCA fit on the training pairs' features (both sides), then every
    pair projected, L2-normalised and compared — so no test-fold image shapes the projection."""
    from sklearn.decomposition import PCA

    def fold(train: np.ndarray) -> np.ndarray:
        pca = PCA(n_components=n_components).fit(np.concatenate([emb1[train], emb2[train]]))
        return pair_distances(l2_normalize(pca.transform(emb1)), l2_normalize(pca.transform(emb2)))
    return fold


def evaluate_embeddings(emb: np.ndarray, issame, emb_flip: np.ndarray | None = None,
                        n_folds: int = 10, pca: int = 0) -> VerificationResult:
    """Embeddings of 2N images in pair order (2i, 2i+1), as in an insightface .bin pack."""
    emb = np.asarray(emb)
    issame = np.asarray(issame, dtype=bool)
    if emb.ndim != 2 or emb.shape[0] != 2 * issame.size:
        raise DataError(f"{emb.shape[0]} embeddings for {issame.size} pairs (need 2 per pair)")
    feats = flip_fused(emb, emb_flip)
    per_fold = pca_fold_distances(feats[0::2], feats[1::2], pca) if pca > 0 else None
    return evaluate_distances(pair_distances(feats[0::2], feats[1::2]), issame, n_folds,
                              fold_distances=per_fold)
