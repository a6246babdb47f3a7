"""TAR@FAR read-offs over millions of scores without sorting them all.

Two read-offs, both documented in docs/evaluation.md:

`nearest` — insightface's IJB evaluator (`recognition/arcface_torch/eval_ijbc.py`): an sklearn
`roc_curve` (here with every point kept, `drop_intermediate=False`), then for each target FAR the
point whose FPR is nearest (`min` over `(|fpr - target|, index)` on the flipped curve, so ties go
to the later point of the unflipped curve: the larger FAR, then the larger TAR).

`threshold` — PFE's `find_thresholds_by_FAR` + `ROC` (seasonSH/Probabilistic-Face-Embeddings,
`utils/metrics.py`), which the DMFR authors' evaluator uses: k = round(FAR · N_impostor) (NumPy's
round-half-to-even); threshold = the k-th highest impostor score, or the highest + 1e-8 when
k = 0 (computed in float64, so the margin is not lost to float32 rounding); accept score ≥
threshold; TAR and FAR are measured at that threshold.

Why no full sort is needed. sklearn's curve has one point per distinct score value v (plus
(0, 0)), at FP(v) = #impostors ≥ v and TP(v) = #genuine ≥ v. Let I(1) ≥ I(2) ≥ … be the impostor
scores in descending order. The false-positive counts the curve reaches are 0, N, and every c
with I(c) > I(c+1) (the end of a run of tied impostor scores), because a threshold v gives
FP = c exactly when I(c) ≥ v > I(c+1). So, with c* = target · N:
  - the largest reachable count ≤ c* is c_lo = #impostors > I(⌊c*⌋+1) (0 when ⌊c*⌋ = 0), and
    the smallest ≥ c* is c_hi = #impostors ≥ I(⌈c*⌉) (`_reachable_bounds`);
  - among the curve points with FP = c, the last (largest TP) is at the lowest distinct score
    above I(c+1), so its TP = #genuine > I(c+1) (= N_genuine when c = N).
The nearest point therefore needs only the impostor order statistics around each c* — the top
max(FAR)·N impostor scores, selected without a full sort (`ImpostorTail`) — and counts over the
sorted genuine scores. Tests check this against `sklearn.metrics.roc_curve` point by point.
"""
from __future__ import annotations

import numpy as np

from dmfr.errors import DataError

FAR_TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
PFE_EPSILON = 1e-8


def far_label(far: float) -> str:
    """1e-4 -> "1e-4", 5e-3 -> "5e-3" (the JSON keys)."""
    mantissa, exponent = f"{far:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


class ImpostorTail:
    """Every impostor score ≥ a floor, sorted, with at least `size` of them; exact counts anywhere.

    The floor comes from a fixed-seed sample of the scores (a quantile a little below the one
    needed), so selecting the tail is one vectorised pass with no copy of all impostors; if the
    sample guessed too high, an exact `np.partition` of the impostors is used instead."""

    SAMPLE = 1 << 18

    def __init__(self, scores: np.ndarray, impostor: np.ndarray, n_imp: int, size: int):
        self.scores, self.impostor, self.n = scores, impostor, n_imp
        size = int(min(max(size, 1), n_imp))
        top = None
        floor = self._estimate_floor(size)
        if floor is not None:
            top = scores[impostor & (scores >= floor)]
            if top.size < size:
                top = None
        if top is None:  # exact: the `size` highest impostors, then everything tied with the lowest
            imp = scores[impostor]
            imp.partition(n_imp - size)
            floor = imp[n_imp - size:].min()
            top = imp[imp >= floor]
        self.floor = floor
        self.top = np.sort(top)  # ascending; holds every impostor ≥ floor

    def _estimate_floor(self, size: int):
        n_all = self.scores.size
        if size * 4 > self.n or n_all < 4 * self.SAMPLE:  # a large share, or few scores: go exact
            return None
        pick = np.random.default_rng(0).integers(0, n_all, self.SAMPLE)
        sample = self.scores[pick][self.impostor[pick]]
        expected = size / self.n * sample.size
        rank = int(expected * 1.25 + 6 * np.sqrt(expected) + 64)  # comfortably below the needed quantile
        if rank >= sample.size:
            return None
        return np.partition(sample, sample.size - 1 - rank)[sample.size - 1 - rank]

    def kth_highest(self, k: int):
        """I(k), 1-based, k ≤ size."""
        return self.top[self.top.size - k]

    def count_ge(self, x) -> int:
        if x < self.floor:  # below the tail: count over all scores
            return int(np.count_nonzero(self.impostor & (self.scores >= x)))
        return int(self.top.size - np.searchsorted(self.top, x, side="left"))

    def count_gt(self, x) -> int:
        if x < self.floor:
            return int(np.count_nonzero(self.impostor & (self.scores > x)))
        return int(self.top.size - np.searchsorted(self.top, x, side="right"))

    def max_below(self, x):
        """The highest impostor score < x (x is one of them, so one exists unless x is the minimum)."""
        i = int(np.searchsorted(self.top, x, side="left"))
        if i > 0:
            return self.top[i - 1]
        return self.scores[self.impostor & (self.scores < x)].max()


def _check(scores: np.ndarray, labels: np.ndarray):
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise DataError(f"scores {scores.shape} and labels {labels.shape} must be 1-D of one length")
    if labels.dtype != bool:
        labels = labels.astype(bool)
    if not np.all(np.isfinite(scores)):
        raise DataError("scores contain NaN or inf (a template with no usable feature?)")
    n_gen = int(np.count_nonzero(labels))
    if n_gen == 0 or n_gen == labels.size:
        raise DataError(f"TAR@FAR needs genuine and impostor pairs; got {n_gen} genuine of {labels.size}")
    return scores, labels


def tar_at_far(scores: np.ndarray, labels: np.ndarray, fars=FAR_TARGETS, roc_points: int = 0) -> dict:
    """Both read-offs for every target FAR. Extra memory: a boolean mask, the genuine scores and
    the impostor tail (about max(FAR) of the impostors), never a sorted copy of all scores.
    With `roc_points`, also a ROC for plots ("roc": the `threshold` read-off on a log grid of
    FARs from max(1e-6, 1/N_impostor) to 1e-1), from the same tail."""
    scores, labels = _check(scores, labels)
    genuine = np.sort(scores[labels])
    n_gen = genuine.size
    impostor = ~labels
    n_imp = scores.size - n_gen
    fars = [float(f) for f in fars]
    grid = []
    if roc_points:
        lo = max(1e-6, 1.0 / n_imp)
        grid = [float(g) for g in np.logspace(np.log10(lo), -1, roc_points)] if lo < 0.1 else []
    # Order statistics needed: I(round(f·N)) for `threshold`, I(⌊f·N⌋+1) and I(⌈f·N⌉) for `nearest`.
    need = max(max(int(np.round(f * n_imp)), int(np.floor(f * n_imp)) + 1) for f in fars + grid)
    tail = ImpostorTail(scores, impostor, n_imp, need)

    def tp_ge(x) -> int:
        return int(n_gen - np.searchsorted(genuine, x, side="left"))

    def tp_gt(x) -> int:
        return int(n_gen - np.searchsorted(genuine, x, side="right"))

    nearest, threshold, notes = {}, {}, []
    for f in fars:
        key = far_label(f)
        too_few = f * n_imp < 1.0
        if too_few:
            notes.append(f"FAR {key}: only {n_imp} impostor pairs, so FAR {key} is below 1/N_impostor "
                         f"({1.0 / n_imp:.3g}); the values there are the strictest reachable")
        # --- threshold (PFE) ---
        k = int(np.round(n_imp * f))
        thr = np.float64(tail.top[-1]) + PFE_EPSILON if k == 0 else tail.kth_highest(k)
        threshold[key] = {"tar": tp_ge(thr) / n_gen, "far": tail.count_ge(thr) / n_imp,
                          "threshold": float(thr), "k": k, "too_few_impostors": too_few}
        # --- nearest (insightface, sklearn curve with every point) ---
        (c_lo, next_lo), (c_hi, next_hi) = _reachable_bounds(tail, f * n_imp)
        fpr_lo, fpr_hi = np.float64(c_lo) / np.float64(n_imp), np.float64(c_hi) / np.float64(n_imp)
        # ties in |fpr - target| go to the later curve point: the larger count
        c, below = (c_lo, next_lo) if abs(fpr_lo - f) < abs(fpr_hi - f) else (c_hi, next_hi)
        tp = n_gen if below is None else tp_gt(below)
        nearest[key] = {"tar": tp / n_gen, "far": float(np.float64(c) / np.float64(n_imp)),
                        "too_few_impostors": too_few}
    out = {"n_genuine": int(n_gen), "n_impostor": int(n_imp),
           "tar_at_far": {"nearest": nearest, "threshold": threshold}, "notes": notes}
    if roc_points:
        roc = {"far": [], "tar": []}
        for f in grid:
            k = max(int(np.round(n_imp * f)), 1)
            thr = tail.kth_highest(k)
            roc["far"].append(tail.count_ge(thr) / n_imp)
            roc["tar"].append(tp_ge(thr) / n_gen)
        out["roc"] = roc
    return out


def _reachable_bounds(tail: ImpostorTail, target_count: float):
    """The largest reachable FP count ≤ target_count and the smallest ≥ it (module docstring),
    each with I(c+1), the highest impostor score below the run that ends at c (None when c = N)."""
    n = tail.n
    floor_c = int(np.floor(target_count))
    ceil_c = int(np.ceil(target_count))
    if floor_c >= n:
        lo = (n, None)
    elif floor_c == 0:
        lo = (0, tail.kth_highest(1))
    else:
        value = tail.kth_highest(floor_c + 1)
        lo = (tail.count_gt(value), value)  # the run holding I(⌊c*⌋+1) starts after c_lo
    if ceil_c == 0:
        hi = (0, tail.kth_highest(1))
    elif ceil_c >= n:
        hi = (n, None)
    else:
        value = tail.kth_highest(ceil_c)
        count = tail.count_ge(value)  # the run holding I(⌈c*⌉) ends at c_hi
        hi = (count, None if count == n else tail.max_below(value))
    return lo, hi
