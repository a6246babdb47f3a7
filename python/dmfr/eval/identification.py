"""1:N identification (MegaFace style): probes searched against a gallery padded with distractors.

Closed set (MegaFace's CMC): for every probe whose identity is enrolled, its rank is 1 + the
number of non-mated gallery entries (other identities and distractors) that score at least as
high as its best mated entry (ties count against the probe); CMC(r) is the fraction of mated
probes with rank ≤ r, rank-1 is CMC(1).
Open set (NIST FRVT's TPIR@FPIR, also PFE's `DIR_FAR`): a non-mated search (probe identity not
enrolled) is a false positive at threshold t when its top score ≥ t; a mated search is a true
positive when its mate is at rank 1 and scores ≥ t. The threshold for a target FPIR is picked
like the `threshold` TAR@FAR read-off: the k-th highest non-mated top score, k = round(FPIR·N).
Scores are cosine similarities of L2-normalised features; the distractors are streamed in chunks
so a million of them never form a full score matrix.
"""
from __future__ import annotations

import numpy as np

from dmfr.errors import DataError
from dmfr.eval.roc import far_label
from dmfr.eval.verification import l2_normalize

FPIR_TARGETS = (1e-3, 1e-2, 1e-1)
DISTRACTOR_CHUNK = 65536


def identify(probe_feats, probe_labels, gallery_feats, gallery_labels, distractor_feats=None,
             max_rank: int = 100, fpirs=FPIR_TARGETS) -> dict:
    probe = l2_normalize(probe_feats).astype(np.float32)
    gallery = l2_normalize(gallery_feats).astype(np.float32)
    probe_labels = np.asarray(probe_labels)
    gallery_labels = np.asarray(gallery_labels)
    if probe.shape[0] != probe_labels.size or gallery.shape[0] != gallery_labels.size:
        raise DataError("identification: feature rows and labels differ in number")
    if probe.shape[1] != gallery.shape[1]:
        raise DataError(f"identification: probe features are {probe.shape[1]}-d, gallery {gallery.shape[1]}-d")
    scores = probe @ gallery.T                          # [P, G]: the gallery proper is small
    mated_mask = probe_labels[:, None] == gallery_labels[None, :]
    mated = mated_mask.any(axis=1)
    mate_score = np.where(mated_mask, scores, -np.inf).max(axis=1)
    # Non-mated entries scoring ≥ the mate, and the best non-mated score, over gallery + distractors.
    nonmate_scores = np.where(mated_mask, -np.inf, scores)
    above = (nonmate_scores >= mate_score[:, None]).sum(axis=1)
    best_nonmate = nonmate_scores.max(axis=1)
    n_distractors = 0
    if distractor_feats is not None and len(distractor_feats):
        if distractor_feats.shape[1] != probe.shape[1]:
            raise DataError("identification: distractor features have a different dimension")
        n_distractors = distractor_feats.shape[0]
        for start in range(0, n_distractors, DISTRACTOR_CHUNK):
            d = l2_normalize(distractor_feats[start:start + DISTRACTOR_CHUNK]).astype(np.float32)
            s = probe @ d.T
            above += (s >= mate_score[:, None]).sum(axis=1)
            best_nonmate = np.maximum(best_nonmate, s.max(axis=1))
    n_mated = int(mated.sum())
    result = {"n_probes": int(probe.shape[0]), "n_mated": n_mated, "n_gallery": int(gallery.shape[0]),
              "n_distractors": int(n_distractors), "notes": []}
    if n_mated:
        ranks = above[mated] + 1
        cmc = [float(np.mean(ranks <= r)) for r in range(1, max_rank + 1)]
        result["rank1"] = cmc[0]
        result["cmc"] = cmc
    else:
        result["notes"].append("no probe identity is in the gallery: no CMC")
    # Open set: the top candidate over everything is a mate at rank 1 only when above == 0.
    nonmated_top = best_nonmate[~mated]  # every entry is non-mated for these probes
    if nonmated_top.size and n_mated:
        top_sorted = np.sort(nonmated_top)[::-1]
        hit = (above == 0) & mated
        tpir = {}
        for f in fpirs:
            k = int(np.round(f * top_sorted.size))
            t = np.float64(top_sorted[0]) + 1e-8 if k == 0 else np.float64(top_sorted[k - 1])
            too_few = f * top_sorted.size < 1
            tpir[far_label(f)] = {
                "tpir": float(np.mean(hit[mated] & (mate_score[mated] >= t))),
                "fpir": float(np.mean(nonmated_top >= t)), "threshold": float(t), "too_few_nonmated": too_few}
            if too_few:
                result["notes"].append(f"FPIR {far_label(f)}: only {top_sorted.size} non-mated searches")
        result["tpir_at_fpir"] = tpir
    else:
        result["notes"].append("open-set TPIR@FPIR needs both mated and non-mated probes")
    return result
