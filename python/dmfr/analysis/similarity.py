"""Table 1 of the paper: mean intra-class and inter-class cosine similarity of a model's features,
separately for real and for synthetic samples (and between the two modalities).

The paper (§ "Similarity of Synthesis Samples") extracts last-layer features and averages the
cosine similarity over pairs of samples of one class (intra) and of different classes (inter).
Means are over all such pairs. They come from per-class feature sums of the L2-normalised
features: Σ_{i<j in c} x_i·x_j = (‖Σ_c x‖² − n_c) / 2, so no pair matrix is formed.
"""
from __future__ import annotations

import numpy as np

from dmfr.errors import DataError
from dmfr.textfile import split_lines
from dmfr.eval.verification import l2_normalize

MODALITIES = ("real", "synthetic")


def read_sample_labels(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Lines `key identity modality` (modality: real | synthetic) -> keys, identities, modalities."""
    keys, ids, mods = [], [], []
    for n, parts in split_lines(path, "sample labels"):
        if len(parts) != 3:
            raise DataError(f"{path}, line {n}: expected 'key identity modality', got {len(parts)} fields")
        if parts[2] not in MODALITIES:
            raise DataError(f"{path}, line {n}: modality must be real or synthetic, got {parts[2]!r}")
        keys.append(parts[0])
        ids.append(parts[1])
        mods.append(parts[2])
    if not keys:
        raise DataError(f"{path}: no samples")
    return keys, np.array(ids), np.array(mods)


def _class_sums(x: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, classes, x)
    return sums


def _within(x: np.ndarray, classes: np.ndarray, n_classes: int) -> dict:
    """Mean cosine over same-class and different-class pairs within one set of samples."""
    n = x.shape[0]
    sums = _class_sums(x, classes, n_classes)
    counts = np.bincount(classes, minlength=n_classes).astype(np.float64)
    self_dots = np.sum(x * x, axis=1).sum()  # n for unit rows; exact for zero rows too
    intra_sum = (np.sum(sums * sums) - self_dots) / 2
    intra_pairs = np.sum(counts * (counts - 1) / 2)
    total = x.sum(axis=0)
    total_sum = (total @ total - self_dots) / 2
    inter_pairs = n * (n - 1) / 2 - intra_pairs
    return _means(intra_sum, intra_pairs, total_sum - intra_sum, inter_pairs, n, int(np.count_nonzero(counts)))


def _between(xa, ca, xb, cb, n_classes) -> dict:
    """Mean cosine over (a, b) pairs of one class and of different classes, a and b disjoint sets."""
    sa, sb = _class_sums(xa, ca, n_classes), _class_sums(xb, cb, n_classes)
    na = np.bincount(ca, minlength=n_classes).astype(np.float64)
    nb = np.bincount(cb, minlength=n_classes).astype(np.float64)
    intra_sum = np.sum(sa * sb)
    intra_pairs = float(na @ nb)
    total = xa.sum(axis=0) @ xb.sum(axis=0)
    inter_pairs = xa.shape[0] * xb.shape[0] - intra_pairs
    return _means(intra_sum, intra_pairs, total - intra_sum, inter_pairs, xa.shape[0] + xb.shape[0],
                  int(np.count_nonzero(na * nb)))


def _means(intra_sum, intra_pairs, inter_sum, inter_pairs, n, n_ids) -> dict:
    return {"intraclass": float(intra_sum / intra_pairs) if intra_pairs else None,
            "interclass": float(inter_sum / inter_pairs) if inter_pairs else None,
            "samples": int(n), "identities": n_ids,
            "intra_pairs": int(intra_pairs), "inter_pairs": int(inter_pairs)}


def similarity_table(features: np.ndarray, identities: np.ndarray, modalities: np.ndarray) -> dict:
    x = l2_normalize(features)
    _, classes = np.unique(identities, return_inverse=True)
    n_classes = int(classes.max()) + 1
    rows = {}
    for mod in MODALITIES:
        sel = modalities == mod
        if sel.any():
            rows[mod] = _within(x[sel], classes[sel], n_classes)
    rows["all"] = _within(x, classes, n_classes)
    real, syn = modalities == "real", modalities == "synthetic"
    if real.any() and syn.any():
        rows["real_vs_synthetic"] = _between(x[real], classes[real], x[syn], classes[syn], n_classes)
    return rows


def to_markdown(rows: dict, title: str = "") -> str:
    fmt = lambda v: "—" if v is None else f"{v:.3f}"
    lines = ([f"**{title}**", ""] if title else []) + [
        "| Samples | Intraclass | Interclass | samples | identities |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {fmt(r['intraclass'])} | {fmt(r['interclass'])} | {r['samples']} | {r['identities']} |")
    return "\n".join(lines) + "\n"
