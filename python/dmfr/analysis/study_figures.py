"""The figures of a study report (PNG + SVG + the plotted numbers as JSON, dmfr.analysis.figures):
mean TAR with 95 % intervals per protocol, mean TAR-vs-FAR curves per arm (Fig. 6 right), the
loss-term curves per arm (Fig. 6 left, mean over seeds) and Table 1's similarities."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dmfr.analysis.figures import _pyplot, _save, plot_roc_curves
from dmfr.analysis.study_eval import TAR_PREFIX


def _err(d: dict) -> float:
    return 0.0 if d["ci95"] is None else (d["ci95"][1] - d["ci95"][0]) / 2


def _tar_metrics(report: dict) -> dict[str, list[str]]:
    by_protocol: dict[str, list[str]] = {}
    for m in (report["arms"][0]["metrics"] if report["arms"] else {}):
        protocol, _, name = m.partition("/")
        if name.startswith(TAR_PREFIX):
            by_protocol.setdefault(protocol, []).append(m)
    return by_protocol


def plot_tar_intervals(report: dict, protocol: str, metrics: list[str], out_prefix: str) -> list[str]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(report["arms"]) * len(metrics) / 2, 3.6))
    width = 0.8 / max(1, len(report["arms"]))
    data = {}
    for i, arm in enumerate(report["arms"]):
        ds = [arm["metrics"][m] for m in metrics]
        x = np.arange(len(metrics)) + i * width
        means = [np.nan if d["mean"] is None else d["mean"] for d in ds]
        ax.errorbar(x, means, yerr=[_err(d) for d in ds], fmt="o", capsize=3, label=arm["name"])
        data[arm["name"]] = {m: {"mean": d["mean"], "ci95": d["ci95"]} for m, d in zip(metrics, ds)}
    ax.set_xticks(np.arange(len(metrics)) + width * (len(report["arms"]) - 1) / 2)
    ax.set_xticklabels([m.partition("/" + TAR_PREFIX)[2] or m for m in metrics])
    ax.set_xlabel("FAR")
    ax.set_ylabel("TAR (mean, 95 % CI)")
    ax.set_title(protocol)
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", lw=0.3)
    return _save(fig, out_prefix, data)


def plot_mean_roc(curves: dict, title: str, out_prefix: str) -> list[str]:
    return plot_roc_curves(curves, out_prefix, title=title, ylabel="TAR (mean over seeds)")


def plot_loss_terms(curves: dict, out_prefix: str) -> list[str]:
    """Fig. 6 (left): one panel per loss term, one line per arm (mean over seeds)."""
    plt = _pyplot()
    terms = list(dict.fromkeys(t for c in curves.values() for t in c))
    cols = min(3, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, term in zip(axes.ravel(), terms):
        for name, c in curves.items():
            if term in c:
                ax.plot(c[term]["step"], c[term]["value"], label=name, lw=1.2)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(terms):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, out_prefix, curves)


def plot_table1(report: dict, metrics: list[str], out_prefix: str) -> list[str]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(metrics), 3.6))
    width = 0.8 / max(1, len(report["arms"]))
    data = {}
    for i, arm in enumerate(report["arms"]):
        ds = [arm["metrics"][m] for m in metrics]
        ax.bar(np.arange(len(metrics)) + i * width, [d["mean"] or 0.0 for d in ds], width,
               yerr=[_err(d) for d in ds], capsize=2, label=arm["name"])
        data[arm["name"]] = {m: {"mean": d["mean"], "ci95": d["ci95"]} for m, d in zip(metrics, ds)}
    ax.set_xticks(np.arange(len(metrics)) + width * (len(report["arms"]) - 1) / 2)
    ax.set_xticklabels([m.removeprefix("table1/") for m in metrics], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("mean cosine similarity")
    ax.set_title("Table 1")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    return _save(fig, out_prefix, data)


def write_all(report: dict, groups: dict, out_dir: Path) -> list[str]:
    from dmfr.analysis.study_report import _group_name, np_mean_curve

    import json

    paths: list[str] = []
    if not report["arms"]:
        return paths
    for protocol, metrics in _tar_metrics(report).items():
        paths += plot_tar_intervals(report, protocol, metrics, str(out_dir / f"tar_{protocol}"))
    named = {_group_name(arm, json.loads(lv)): cells for (arm, lv), cells in groups.items() if cells}
    protocols = list(dict.fromkeys(p for cells in named.values() for c in cells.values() for p in c.get("roc", {})))
    for protocol in protocols:
        curves = {}
        for name, cells in named.items():
            rocs = [c["roc"][protocol] for c in cells.values() if protocol in c.get("roc", {})]
            if rocs and all(len(r["far"]) == len(rocs[0]["far"]) for r in rocs):
                curves[name] = {"far": np.mean([r["far"] for r in rocs], axis=0).tolist(),
                                "tar": np.mean([r["tar"] for r in rocs], axis=0).tolist()}
        if curves:
            paths += plot_mean_roc(curves, protocol, str(out_dir / f"roc_{protocol}"))
    loss = {}
    for name, cells in named.items():
        terms = list(dict.fromkeys(t for c in cells.values() for t in c.get("loss_curves", {})))
        loss[name] = {t: np_mean_curve([c["loss_curves"][t] for c in cells.values() if t in c.get("loss_curves", {})])
                      for t in terms}
    if any(loss.values()):
        paths += plot_loss_terms(loss, str(out_dir / "loss_terms"))
    t1 = [m for m in report["arms"][0]["metrics"] if m.startswith("table1/")]
    if t1:
        paths += plot_table1(report, t1, str(out_dir / "table1"))
    return paths
