"""The statistics of a study report (docs/studies.md), over seeds as the unit of replication.

- per arm: mean, sample standard deviation (ddof 1), n and the 95 % t-interval
  mean ± t_{0.975, n-1} · sd / √n;
- arm against baseline: the mean paired difference over the seeds both have, its 95 % t-interval
  and the paired t-test's two-sided p (scipy.stats.ttest_rel);
- Holm's step-down correction across one family of p-values, as statsmodels'
  `multipletests(method="holm")` computes it: sort p ascending, p_(i) · (m − i + 1) (1-based i),
  running maximum, capped at 1 (Holm 1979). Written here (a few lines) rather than adding
  statsmodels for one function; the tests check it against hand-computed values.
- the interaction contrast [arm(s) − arm(ref)] − [baseline(s) − baseline(ref)] per seed, with the
  same interval and a paired t-test of the two differences.

With n = 1 there is no interval: the result says "pilot (n = 1): no interval" and carries nulls,
never NaN. With n ≥ 2 but identical differences (sd 0) the interval is the point and p is null
(the t statistic is undefined).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

PILOT = "pilot (n = 1): no interval"
NO_SPREAD = "zero spread over seeds: no t-test"


def _interval(values: np.ndarray) -> tuple[float | None, list[float] | None]:
    n = values.size
    if n < 2:
        return None, None
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return sd, [mean - half, mean + half]


def describe(values) -> dict:
    """{mean, sd, n, ci95, values[, note]} of one metric over seeds."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0, "ci95": None, "values": [], "note": "no finished cell"}
    sd, ci = _interval(v)
    out = {"mean": float(v.mean()), "sd": sd, "n": int(v.size), "ci95": ci, "values": v.tolist()}
    if v.size == 1:
        out["note"] = PILOT
    return out


def paired(a, b, scale: float = 0.0) -> dict:
    """Mean of a − b over paired seeds, its 95 % t-interval and the paired t-test's p. `scale`:
    the magnitude of the values a and b were computed from, when they are themselves differences
    (their rounding error is relative to those values, not to a and b)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = a - b
    out = {"diff": float(d.mean()) if d.size else None, "n": int(d.size), "ci95": None, "p": None}
    if d.size < 2:
        out["note"] = PILOT if d.size == 1 else "no paired seeds"
        return out
    _, out["ci95"] = _interval(d)
    # Differences equal up to rounding (each a − b is exact to ~1 ulp of the larger operand) have
    # no spread to test; a t statistic from rounding noise would be meaningless.
    scale = float(max(np.abs(a).max(), np.abs(b).max(), scale, 1e-300))
    if float(d.std(ddof=1)) <= 16 * np.finfo(np.float64).eps * scale:
        out["note"] = NO_SPREAD
        return out
    out["p"] = float(stats.ttest_rel(a, b).pvalue)
    return out


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (statsmodels multipletests 'holm'); None entries are left out of the
    family and stay None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    order = sorted(idx, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def interaction(arm_s, arm_ref, base_s, base_ref) -> dict:
    """[arm(s) − arm(ref)] − [baseline(s) − baseline(ref)] over seeds (paired). TARs are counts over
    the genuine pairs (k / N), so two seeds' contrasts are often equal in exact arithmetic and
    differ only by the rounding of the subtractions, relative to the TARs themselves: the no-spread
    test is scaled by them, else a t-test of rounding noise reports p ≈ 1e-13."""
    raw = [np.asarray(x, dtype=np.float64) for x in (arm_s, arm_ref, base_s, base_ref)]
    scale = float(max((np.abs(x).max() for x in raw if x.size), default=0.0))
    return paired(raw[0] - raw[1], raw[2] - raw[3], scale=scale)
