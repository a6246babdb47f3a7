"""IJB-C-scale template 1:1: scoring and both TAR@FAR read-offs vs a plain sklearn roc_curve read-off.

Synthetic data of exactly IJB-C's size (insightface's IJB-C 1:1 meta): 23,124 templates with
512-d features (3,531 identities), 15,658,489 template pairs of which 19,557 are genuine.
Prints seconds and memory for:
  - scoring (`dmfr.eval.templates.score_pairs`: block matrix products here; `--gather` also times
    the chunked row-gather path used for sparse pairs),
  - dmfr's read-offs (`dmfr.eval.roc.tar_at_far`: nearest + threshold, six FARs 1e-6…1e-1),
  - the reference: `sklearn.metrics.roc_curve(drop_intermediate=False)` + insightface's nearest
    look-up, on the same scores,
and the ratio reference / dmfr (target ≥ 4×) and dmfr's read-off memory beyond the scores
(target ≤ 256 MB). Memory is measured two ways: tracemalloc's peak (NumPy reports its buffers to
it) and the process's peak RSS (VmHWM, reset through /proc/self/clear_refs before each phase)
minus the RSS before it; RSS understates a phase that reuses memory an earlier phase freed, so
the larger of the two is reported. On a shared machine wall time swings with the load; CPU time
(all threads) is printed too. The nearest read-off is checked to agree with the reference.

    cd /work/main && PYTHONPATH=python .venv/bin/python bench/ijbc_scale.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

from dmfr.eval.roc import FAR_TARGETS, far_label, tar_at_far  # noqa: E402
from dmfr.eval.templates import score_pairs  # noqa: E402

N_TEMPLATES = 23_124
N_PAIRS = 15_658_489
N_GENUINE = 19_557
N_IDENTITIES = 3_531
DIM = 512
MB = 1024 * 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


class Measure:
    """Wall time, tracemalloc peak, and peak RSS above the starting RSS, of one phase."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset VmHWM to the current RSS
            self.rss_ok = True
        except OSError:
            self.rss_ok = False
        self.rss0 = _status_kb("VmRSS")
        tracemalloc.reset_peak()
        self.traced0 = tracemalloc.get_traced_memory()[0]
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = time.process_time() - self.c0
        self.traced_peak_mb = (tracemalloc.get_traced_memory()[1] - self.traced0) / MB
        self.rss_peak_mb = (_status_kb("VmHWM") - self.rss0) / 1024 if self.rss_ok else float("nan")
        return False

    def line(self, name: str) -> str:
        return (f"{name:<34} {self.seconds:8.2f} s (cpu {self.cpu_seconds:7.2f} s)   tracemalloc peak {self.traced_peak_mb:8.1f} MB   "
                f"peak RSS +{self.rss_peak_mb:8.1f} MB")


def synthetic(seed: int):
    """IJB-C's 1:1 shape: template1 is one of 3,531 enrolment templates (one per subject),
    template2 one of the other 19,593; pairs drawn with replacement, 19,557 of them genuine.
    Templates are subject centre + noise of a per-template strength, so scores overlap."""
    rng = np.random.default_rng(seed)
    n_probe = N_TEMPLATES - N_IDENTITIES
    identity = np.concatenate([np.arange(N_IDENTITIES), rng.integers(0, N_IDENTITIES, n_probe)])
    centres = rng.standard_normal((N_IDENTITIES, DIM), dtype=np.float32)
    noise = rng.uniform(1.0, 4.0, N_TEMPLATES).astype(np.float32)[:, None]
    feats = centres[identity] + noise * rng.standard_normal((N_TEMPLATES, DIM), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    probes_of = np.argsort(identity[N_IDENTITIES:], kind="stable") + N_IDENTITIES
    starts = np.searchsorted(identity[probes_of], np.arange(N_IDENTITIES))
    counts = np.bincount(identity[N_IDENTITIES:], minlength=N_IDENTITIES)
    t1 = rng.integers(0, N_IDENTITIES, N_PAIRS, dtype=np.int32)
    t2 = rng.integers(N_IDENTITIES, N_TEMPLATES, N_PAIRS, dtype=np.int32)
    labels = np.zeros(N_PAIRS, dtype=bool)
    genuine = rng.choice(N_PAIRS, N_GENUINE, replace=False)
    labels[genuine] = True
    t1[genuine] = rng.choice(np.flatnonzero(counts), N_GENUINE)  # subjects that have probe templates
    t2[genuine] = probes_of[starts[t1[genuine]] + rng.integers(0, counts[t1[genuine]])]
    clash = np.flatnonzero(~labels & (identity[t1] == identity[t2]))  # impostors: different subjects
    while clash.size:
        t2[clash] = rng.integers(N_IDENTITIES, N_TEMPLATES, clash.size, dtype=np.int32)
        clash = clash[identity[t1[clash]] == identity[t2[clash]]]
    return feats, t1, t2, labels


def sklearn_readoff(scores, labels, fars):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    out = {}
    for f in fars:  # insightface eval_ijbc.py's look-up (vectorised: first index of the minimum)
        i = int(np.argmin(np.abs(fpr - f)))
        out[far_label(f)] = (float(tpr[i]), float(fpr[i]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gather", action="store_true",
                    help="also time the chunked row-gather scorer (slow: one gather per pair)")
    args = ap.parse_args()
    print(f"IJB-C-scale synthetic data: {N_TEMPLATES} templates x {DIM}-d, {N_PAIRS} pairs "
          f"({N_GENUINE} genuine); threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"cpus {os.cpu_count()}")
    feats, t1, t2, labels = synthetic(args.seed)
    tracemalloc.start()

    with Measure() as m_score:
        scores = score_pairs(feats, t1, feats, t2)
    print(m_score.line("scoring (block products)"))
    if args.gather:
        from dmfr.eval import templates

        with Measure() as m_gather:
            gathered = templates._score_gather(feats, t1, feats, t2, templates.SCORE_CHUNK)
        print(m_gather.line("scoring (chunked row gather)"))
        print(f"  max |difference| between the two scorers: {np.max(np.abs(gathered - scores)):.2e}")
        del gathered
    print(f"  scores array itself: {scores.nbytes / MB:.1f} MB float32")

    with Measure() as m_ours:
        ours = tar_at_far(scores, labels, FAR_TARGETS)
    print(m_ours.line("dmfr read-offs (nearest+threshold)"))

    with Measure() as m_ref:
        ref = sklearn_readoff(scores, labels, FAR_TARGETS)
    print(m_ref.line("sklearn roc_curve + nearest"))
    tracemalloc.stop()

    agree = all((ours["tar_at_far"]["nearest"][k]["tar"], ours["tar_at_far"]["nearest"][k]["far"]) == v
                for k, v in ref.items())
    print(f"nearest read-off identical to the sklearn reference at every FAR: {agree}")
    print(f"{'FAR':>6} {'TAR nearest':>12} {'TAR threshold':>14}")
    for k in ours["tar_at_far"]["nearest"]:
        print(f"{k:>6} {ours['tar_at_far']['nearest'][k]['tar']:12.5f} {ours['tar_at_far']['threshold'][k]['tar']:14.5f}")
    ratio = m_ref.seconds / m_ours.seconds
    mem = max(m_ours.traced_peak_mb, m_ours.rss_peak_mb if np.isfinite(m_ours.rss_peak_mb) else 0)
    print(f"ratio: sklearn read-off / dmfr read-offs = {ratio:.1f}x (target >= 4x: "
          f"{'met' if ratio >= 4 else 'NOT met'})")
    print(f"dmfr read-off memory beyond the scores: {mem:.1f} MB (target <= 256 MB: "
          f"{'met' if mem <= 256 else 'NOT met'})")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
