"""A study's report from its stored cell metrics (no retraining): report.json (the contract in
docs/studies.md), report.md and figures (PNG + SVG, with their numbers as JSON): mean TAR with
95 % intervals per protocol, TAR-vs-FAR curves per arm, the loss-term curves of the paper's Fig. 6
and its Table 1 similarities. Statistics: dmfr.analysis.study_stats.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dmfr.analysis import study_stats
from dmfr.analysis.study_eval import write_json
from dmfr.errors import DataError

ALPHA = 0.05


def protocol_of(metric: str) -> str:
    """'cross_pose/tar_at_far_1e-3' → 'cross_pose', 'lfw/accuracy' → 'lfw', 'loss/L_cls' → 'loss'."""
    return metric.split("/")[0]


def _levels_label(levels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in levels.items())


def _group_name(arm: str, levels: dict) -> str:
    return f"{arm} [{_levels_label(levels)}]" if levels else arm


def _key(arm: str, levels: dict) -> tuple:
    return arm, json.dumps(levels, sort_keys=True)


def load_study(study_dir: Path) -> tuple[dict, dict]:
    """study.json and {(arm, levels): {seed: cell eval}} of the evaluated cells."""
    path = study_dir / "study.json"
    try:
        study = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a study state file: {exc}") from None
    groups: dict[tuple, dict[int, dict]] = {}
    for cell in study["cells"]:
        groups.setdefault(_key(cell["arm"], cell["levels"]), {})
        mpath = study_dir / "cells" / cell["hash"] / "eval" / "metrics.json"
        if cell.get("state") == "evaluated" and mpath.exists():
            groups[_key(cell["arm"], cell["levels"])][int(cell["seed"])] = json.loads(mpath.read_text())
    return study, groups


def _paired_values(a: dict, b: dict, metric: str) -> tuple[list, list, list]:
    seeds = sorted(s for s in a if s in b and metric in a[s]["metrics"] and metric in b[s]["metrics"])
    return seeds, [a[s]["metrics"][metric] for s in seeds], [b[s]["metrics"][metric] for s in seeds]


def _apply_holm(rows: list[dict], flags: dict | None = None) -> None:
    """Holm across the arms and metrics of one protocol (one family per protocol). A metric the
    test sets cannot measure (flags: too few impostors for its FAR) is marked and left out of the
    family: its p_holm stays None, so no sentence claims anything on it."""
    flags = flags or {}
    for r in rows:
        if r["metric"] in flags:
            r["flag"], r["p_holm"] = flags[r["metric"]], None
    for protocol in dict.fromkeys(protocol_of(r["metric"]) for r in rows):
        family = [r for r in rows if protocol_of(r["metric"]) == protocol and "flag" not in r]
        for r, adj in zip(family, study_stats.holm([r["p"] for r in family])):
            r["p_holm"] = adj


def build_report(study_dir: str | os.PathLike) -> dict:
    study_dir = Path(study_dir)
    study, groups = load_study(study_dir)
    baseline = study.get("baseline")
    metric_names = list(dict.fromkeys(m for g in groups.values() for cell in g.values() for m in cell["metrics"]))
    flags = {m: f for g in groups.values() for cell in g.values() for m, f in cell.get("flags", {}).items()}

    arms = []
    for (arm, levels_json), cells in groups.items():
        levels = json.loads(levels_json)
        metrics = {m: study_stats.describe([cells[s]["metrics"][m] for s in sorted(cells) if m in cells[s]["metrics"]])
                   for m in metric_names}
        for m, f in flags.items():
            if m in metrics:
                metrics[m]["flag"] = f
        arms.append({"name": _group_name(arm, levels), "arm": arm, "levels": levels, "n": len(cells),
                     "seeds": sorted(cells), "metrics": metrics})

    comparisons = []
    if baseline:
        for (arm, levels_json), cells in groups.items():
            base = groups.get((baseline, levels_json))
            if arm == baseline or base is None:
                continue
            for m in metric_names:
                seeds, a, b = _paired_values(cells, base, m)
                comparisons.append({"arm": arm, "baseline": baseline, "levels": json.loads(levels_json), "metric": m,
                                    "seeds": seeds, **study_stats.paired(a, b)})
        _apply_holm(comparisons, flags)

    interactions = []
    if baseline:
        for path, ref, arm, levels, at, levels_json, ref_json in _non_reference_groups(study, groups):
            if arm == baseline:
                continue
            parts = [groups[(arm, levels_json)], groups.get((arm, ref_json)), groups.get((baseline, levels_json)),
                     groups.get((baseline, ref_json))]
            if any(p is None for p in parts):
                continue
            for m in metric_names:
                seeds = sorted(set.intersection(*(set(s for s in p if m in p[s]["metrics"]) for p in parts)))
                vals = [[p[s]["metrics"][m] for s in seeds] for p in parts]
                interactions.append({"arm": arm, "baseline": baseline, "factor": path, "level": levels[path],
                                     "reference": ref, "at": at, "metric": m, "seeds": seeds,
                                     **study_stats.interaction(*vals)})
        _apply_holm(interactions, flags)

    effects = _factor_effects(study, groups, metric_names, flags)

    failed = [{k: c.get(k) for k in ("arm", "levels", "seed", "hash", "cause")} for c in study["cells"]
              if c.get("state") == "failed"]
    report = {"name": study["name"], "baseline": baseline, "seeds": study.get("seeds"),
              "cells": len(study["cells"]), "evaluated": sum(len(g) for g in groups.values()), "failed": failed,
              "flags": flags, "arms": arms, "comparisons": comparisons, "effects": effects,
              "interactions": interactions}
    report["sentences"] = sentences(report)
    return report


def _non_reference_groups(study: dict, groups: dict):
    """(factor path, its reference level, arm, levels, the other factors' levels, the group's key
    and its reference group's key) for every group at a non-reference level of a factor."""
    for factor in study.get("factors", []):
        path, ref = factor["path"], factor["levels"][0]
        for arm, levels_json in list(groups):
            levels = json.loads(levels_json)
            if path not in levels or levels[path] == ref:
                continue
            at = {k: v for k, v in levels.items() if k != path}
            yield path, ref, arm, levels, at, levels_json, json.dumps({**levels, path: ref}, sort_keys=True)


def _factor_effects(study: dict, groups: dict, metric_names: list[str], flags: dict) -> list[dict]:
    """Each arm's own response to a factor, arm(level) − arm(ref), paired by seed: for the
    generators' fingerprint strength in the baseline arm this is the harm the paper describes
    (mix at strength s against its oracle at 0), the quantity the interactions then compare."""
    effects = []
    for path, ref, arm, levels, at, levels_json, ref_json in _non_reference_groups(study, groups):
        ref_cells = groups.get((arm, ref_json))
        if ref_cells is None:
            continue
        for m in metric_names:
            seeds, a, b = _paired_values(groups[(arm, levels_json)], ref_cells, m)
            effects.append({"arm": arm, "factor": path, "level": levels[path], "reference": ref, "at": at,
                            "metric": m, "seeds": seeds, **study_stats.paired(a, b)})
    _apply_holm(effects, flags)
    return effects


def _fmt(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _p(x: float | None) -> str:
    return "–" if x is None else (f"{x:.3f}" if x >= 1e-3 else f"{x:.1e}")


def _claim(r: dict) -> str:
    where = f" ({_levels_label(r['levels'])})" if r.get("levels") else ""
    head = f"{r['arm']} − {r['baseline']} at {r['metric']}{where}: {_fmt(r['diff'])}"
    if r["ci95"] is None:
        return f"{head} ({r.get('note', 'no interval')})"
    lo, hi = r["ci95"]
    text = f"{head} [{_fmt(lo)}, {_fmt(hi)}]"
    if r.get("p_holm") is not None:
        text += f", p_Holm = {_p(r['p_holm'])}"
    return text


def sentences(report: dict) -> list[str]:
    """One sentence per protocol that says only what the intervals support: a difference is stated
    as one only where the Holm-corrected p is below 0.05 (its interval then excludes 0)."""
    out = []
    rows = report["comparisons"]
    for protocol in dict.fromkeys(protocol_of(r["metric"]) for r in rows):
        family = [r for r in rows if protocol_of(r["metric"]) == protocol and r["diff"] is not None and "flag" not in r]
        resolved = [r for r in family if r.get("p_holm") is not None and r["p_holm"] < ALPHA]
        if not family:
            continue
        if all(r["ci95"] is None for r in family):
            out.append(f"{protocol}: pilot (n = 1 seed), no interval: " + "; ".join(_claim(r) for r in family) + ".")
        elif resolved:
            out.append(f"{protocol}: " + "; ".join(_claim(r) for r in resolved)
                       + f". The other {len(family) - len(resolved)} comparison(s) resolve no difference (p_Holm ≥ {ALPHA}).")
        else:
            best = min(family, key=lambda r: (r.get("p_holm") is None, r.get("p_holm") or 1.0))
            out.append(f"{protocol}: no comparison resolves a difference from {best['baseline']} "
                       f"(all p_Holm ≥ {ALPHA}); the strongest: {_claim(best)}.")
    for r in report.get("effects", []):
        if r.get("p_holm") is not None and r["p_holm"] < ALPHA:
            lo, hi = r["ci95"]
            out.append(f"effect of {r['factor']} {r['reference']}→{r['level']} on {r['arm']} at "
                       f"{r['metric']}: {_fmt(r['diff'])} [{_fmt(lo)}, {_fmt(hi)}], p_Holm = {_p(r['p_holm'])}.")
    for r in report["interactions"]:
        if r.get("p_holm") is not None and r["p_holm"] < ALPHA:
            lo, hi = r["ci95"]
            out.append(f"interaction {r['factor']} {r['reference']}→{r['level']}, {r['arm']} vs {r['baseline']} at "
                       f"{r['metric']}: {_fmt(r['diff'])} [{_fmt(lo)}, {_fmt(hi)}], p_Holm = {_p(r['p_holm'])}.")
    return out


def _cell(d: dict) -> str:
    if d["mean"] is None:
        return "–"
    if d["ci95"] is None:
        return f"{d['mean']:.3f} (n=1)"
    return f"{d['mean']:.3f} ± {(d['ci95'][1] - d['ci95'][0]) / 2:.3f}"


def main_table(report: dict, metrics: list[str] | None = None) -> str:
    """Markdown: one row per arm, mean ± 95 % half-interval of each TAR/accuracy metric."""
    names = metrics or [m for m in (report["arms"][0]["metrics"] if report["arms"] else {})
                        if not m.startswith(("loss/", "table1/"))]
    flagged = report.get("flags", {})
    lines = ["| arm | n | " + " | ".join(n + (" †" if n in flagged else "") for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for a in report["arms"]:
        lines.append(f"| {a['name']} | {a['n']} | " + " | ".join(_cell(a["metrics"][m]) for m in names) + " |")
    return "\n".join(lines)


def _comparison_table(rows: list[dict], interaction: bool = False) -> str:
    head = "| arm | factor | level | at | metric | diff | 95 % CI | p | p_Holm |" if interaction else \
        "| arm | levels | metric | diff | 95 % CI | p | p_Holm |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ci = "–" if r["ci95"] is None else f"[{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}]"
        lead = (f"| {r['arm']} | {r['factor']} | {r['reference']}→{r['level']} | {_levels_label(r['at']) or '–'} "
                if interaction else f"| {r['arm']} | {_levels_label(r['levels']) or '–'} ")
        lines.append(f"{lead}| {r['metric']} | {_fmt(r['diff'])} | {ci} | {_p(r['p'])} | {_p(r.get('p_holm'))} |")
    return "\n".join(lines)


def markdown(report: dict, figures: list[str]) -> str:
    parts = [f"# Study {report['name']}", "",
             f"{report['evaluated']} of {report['cells']} cells evaluated; seeds {report['seeds']}; "
             f"baseline {report['baseline'] or '(none)'}. Mean ± 95 % t half-interval over seeds.", "",
             "## Main table", "", main_table(report), ""]
    if report.get("flags"):
        parts += ["† too few impostor pairs in the test set for this FAR (FAR × impostors < 1): shown, "
                  "but left out of the Holm families and the sentences.", ""]
    if report["sentences"]:
        parts += ["## What the intervals support", ""] + [f"- {s}" for s in report["sentences"]] + [""]
    if report["comparisons"]:
        parts += ["## Paired differences against the baseline (Holm across one protocol's arms and metrics)", "",
                  _comparison_table(report["comparisons"]), ""]
    if report.get("effects"):
        parts += ["## Factor effects within each arm, arm(level) − arm(ref) (Holm across one protocol)", "",
                  _comparison_table(report["effects"], interaction=True), ""]
    if report["interactions"]:
        parts += ["## Interaction contrasts [arm(level) − arm(ref)] − [baseline(level) − baseline(ref)]", "",
                  _comparison_table(report["interactions"], interaction=True), ""]
    t1 = [m for m in (report["arms"][0]["metrics"] if report["arms"] else {}) if m.startswith("table1/")]
    if t1:
        parts += ["## Table 1 (cosine similarity on the training samples)", "", main_table(report, t1), ""]
    losses = [m for m in (report["arms"][0]["metrics"] if report["arms"] else {}) if m.startswith("loss/")]
    if losses:
        parts += ["## Final loss terms (mean of the last 20 logged steps)", "", main_table(report, losses), ""]
    if report["failed"]:
        parts += ["## Failed cells", ""] + [f"- {f['arm']} {_levels_label(f['levels'] or {})} seed {f['seed']} "
                                             f"({f['hash']}): {f['cause']}" for f in report["failed"]] + [""]
    if figures:
        parts += ["## Figures", ""] + [f"- [{os.path.basename(p)}]({p})" for p in figures if p.endswith(".png")] + [""]
    return "\n".join(parts)


def write_report(study_dir: str | os.PathLike) -> dict:
    from dmfr.analysis import study_figures

    study_dir = Path(study_dir)
    report = build_report(study_dir)
    _, groups = load_study(study_dir)
    figures = study_figures.write_all(report, groups, study_dir / "figures")
    report["figures"] = [os.path.relpath(p, study_dir) for p in figures]
    write_json(study_dir / "report.json", report)
    md = markdown(report, report["figures"])
    (study_dir / "report.md.tmp").write_text(md)
    os.replace(study_dir / "report.md.tmp", study_dir / "report.md")
    return report


def summary_line(study_dir: Path, report: dict) -> dict:
    return {"report": str(study_dir / "report.json"), "cells": report["cells"], "evaluated": report["evaluated"],
            "failed": len(report["failed"]), "table": main_table(report), "sentences": report["sentences"]}


def np_mean_curve(curves: list[dict]) -> dict:
    """Mean over seeds on the steps every seed logged."""
    steps = sorted(set.intersection(*(set(c["step"]) for c in curves)))
    vals = [dict(zip(c["step"], c["value"])) for c in curves]
    return {"step": steps, "value": [float(np.mean([v[s] for v in vals])) for s in steps]}
