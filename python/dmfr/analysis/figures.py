"""Fig. 5 (feature differences between a real sample and its synthetic versions) and Fig. 6
(loss curves by method and term; ROC curves). Every figure is written as PNG and SVG, with the
plotted numbers as JSON next to it. matplotlib runs on the Agg backend (no display)."""
from __future__ import annotations

import json
import os

import numpy as np

from dmfr.errors import DataError
from dmfr.eval.verification import l2_normalize


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_prefix: str, data: dict) -> list[str]:
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    paths = [f"{out_prefix}.png", f"{out_prefix}.svg", f"{out_prefix}.json"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    with open(paths[2], "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    _pyplot().close(fig)
    return paths


def feature_differences(real: np.ndarray, synthetic: dict, top: int = 10) -> dict:
    """Per-dimension difference (synthetic − real) of L2-normalised features, per version."""
    r = l2_normalize(np.asarray(real, dtype=np.float64)[None])[0]
    out = {}
    for label, feat in synthetic.items():
        s = l2_normalize(np.asarray(feat, dtype=np.float64)[None])[0]
        if s.shape != r.shape:
            raise DataError(f"synthetic version {label!r} is {s.size}-d, the real sample {r.size}-d")
        diff = s - r
        order = np.argsort(-np.abs(diff))[:top]
        out[label] = {"diff": diff.tolist(), "cosine": float(s @ r), "l2": float(np.linalg.norm(diff)),
                      "top_dims": order.tolist(), "top_abs_diff": np.abs(diff[order]).tolist()}
    return out


def plot_fig5(real: np.ndarray, synthetic: dict, out_prefix: str) -> list[str]:
    """Fig. 5: one row per synthetic version, the per-dimension difference as a line and as a
    colour strip (the paper's "visualized image of the feature")."""
    plt = _pyplot()
    data = feature_differences(real, synthetic)
    n = len(data)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.9 * n), squeeze=False, sharex=True)
    lim = max(max(abs(v) for v in d["diff"]) for d in data.values()) or 1.0
    for ax, (label, d) in zip(axes[:, 0], data.items()):
        diff = np.array(d["diff"])
        ax.imshow(diff[None], aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim,
                  extent=(-0.5, diff.size - 0.5, -lim, lim), alpha=0.5)
        ax.plot(np.arange(diff.size), diff, lw=0.8, color="black")
        ax.set_ylim(-lim, lim)
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        ax.set_title(f"cos = {d['cosine']:.3f}, ‖Δ‖ = {d['l2']:.3f}", fontsize=8, loc="right")
    axes[-1, 0].set_xlabel("feature dimension")
    fig.suptitle("synthetic − real, per dimension (L2-normalised features)")
    return _save(fig, out_prefix, data)


def read_metrics(path: str) -> list[dict]:
    """`metrics` message bodies (docs/protocol.md) as JSON lines, or one JSON array of them."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read metrics: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON: {exc}") from None
        where = [f"item {i}" for i in range(len(records))]
    else:
        records, where = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {n}: invalid JSON: {exc.msg}") from None
            where.append(f"line {n}")
    for rec, w in zip(records, where):
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int) or \
                not (rec.get("loss") is None or isinstance(rec.get("loss"), (int, float))) or "loss" not in rec:
            raise DataError(f"{path}, {w}: a metrics record needs an integer 'step' and a numeric (or null) 'loss'")
        if "terms" in rec and not isinstance(rec["terms"], dict):
            raise DataError(f"{path}, {w}: 'terms' must be an object of named loss terms")
    if not records:
        raise DataError(f"{path}: no metrics records")
    return records


def loss_series(records: list[dict]) -> dict:
    """{"loss": (steps, values), term: (steps, values)…}, sorted by step."""
    records = sorted(records, key=lambda r: r["step"])
    # null is a non-finite value (JSON has no NaN, docs/protocol.md): a gap in the curve
    series = {"loss": ([r["step"] for r in records if r["loss"] is not None],
                       [float(r["loss"]) for r in records if r["loss"] is not None])}
    for r in records:
        for term, value in (r.get("terms") or {}).items():
            if value is None:
                continue
            steps, values = series.setdefault(term, ([], []))
            steps.append(r["step"])
            values.append(float(value))
    return series


def plot_loss_curves(runs: dict, out_prefix: str) -> list[str]:
    """Fig. 6 (left): one panel per loss term, one line per method."""
    plt = _pyplot()
    per_run = {name: loss_series(records) for name, records in runs.items()}
    terms = list(dict.fromkeys(t for s in per_run.values() for t in s))
    cols = min(3, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, term in zip(axes.ravel(), terms):
        for name, series in per_run.items():
            if term in series:
                ax.plot(*series[term], label=name, lw=1.2)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(terms):]:
        ax.axis("off")
    fig.tight_layout()
    data = {name: {t: {"step": s[0], "value": s[1]} for t, s in series.items()} for name, series in per_run.items()}
    return _save(fig, out_prefix, data)


def plot_roc_curves(curves: dict, out_prefix: str, title: str | None = None, ylabel: str = "TAR") -> list[str]:
    """Fig. 6 (right): TAR against FAR (log axis) per model, from `dmfr eval templates` results
    (or a study's mean curves per arm)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, c in curves.items():
        ax.plot(c["far"], c["tar"], label=name, lw=1.3)
    ax.set_xscale("log")
    ax.set_xlabel("FAR")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out_prefix, curves)
