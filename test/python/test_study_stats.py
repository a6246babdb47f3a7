"""The study report's statistics (dmfr.analysis.study_stats) on hand-checkable inputs, cross-checked
against scipy; the report (dmfr.analysis.study_report) on a study directory of stored metrics."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from dmfr.analysis import study_stats
from dmfr.analysis.study_report import build_report, write_report

# Every quantity below is a handful of float64 operations on numbers of order 1, so the results
# agree with scipy's (and with the hand values) to a few ulps; 1e-12 leaves a wide margin.
TOL = 1e-12


def test_describe_by_hand_and_against_scipy():
    d = study_stats.describe([1.0, 2.0, 3.0])
    assert d["mean"] == 2.0 and d["sd"] == 1.0 and d["n"] == 3 and d["values"] == [1.0, 2.0, 3.0]
    half = 4.302652729749464 / math.sqrt(3)  # t_{0.975, 2} (tables: 4.3027) · sd / √n
    assert d["ci95"] == pytest.approx([2.0 - half, 2.0 + half], abs=1e-9)
    lo, hi = stats.t.interval(0.95, 2, loc=2.0, scale=stats.sem([1.0, 2.0, 3.0]))
    assert d["ci95"] == pytest.approx([lo, hi], abs=TOL)


def test_paired_difference_against_scipy():
    a = [0.50, 0.60, 0.70, 0.65]
    b = [0.40, 0.55, 0.60, 0.60]
    r = study_stats.paired(a, b)
    d = np.subtract(a, b)  # [0.10, 0.05, 0.10, 0.05]
    assert r["diff"] == pytest.approx(0.075, abs=TOL) and r["n"] == 4
    assert r["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, abs=TOL)
    assert r["p"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, abs=TOL)
    lo, hi = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert r["ci95"] == pytest.approx([lo, hi], abs=TOL)
    # by hand: sd of d = 0.05/√3, t = 0.075 / (sd/2) = 3√3 = 5.196 on 3 d.f.
    assert r["p"] == pytest.approx(2 * stats.t.sf(3 * math.sqrt(3), 3), abs=TOL)


def test_holm_by_hand():
    # sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06
    assert study_stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=TOL)
    assert study_stats.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert study_stats.holm([0.02, None, 0.04]) == [0.04, None, 0.04]  # None: not in the family
    assert study_stats.holm([]) == []


def test_interaction_contrast_by_hand():
    # arm effect [2, 3, 4], baseline effect [1, 1, 2] → contrast [1, 2, 2]
    r = study_stats.interaction([3, 4, 5], [1, 1, 1], [2, 2, 2], [1, 1, 0])
    assert r["diff"] == pytest.approx(5 / 3, abs=TOL)
    assert r["p"] == pytest.approx(stats.ttest_1samp([1, 2, 2], 0.0).pvalue, abs=TOL)


def test_one_seed_is_a_pilot_without_nans():
    d = study_stats.describe([0.7])
    assert d == {"mean": 0.7, "sd": None, "n": 1, "ci95": None, "values": [0.7], "note": study_stats.PILOT}
    r = study_stats.paired([0.7], [0.6])
    assert r["ci95"] is None and r["p"] is None and r["note"] == study_stats.PILOT
    assert r["diff"] == pytest.approx(0.1, abs=TOL)


def test_zero_spread_has_no_p():
    # 0.3 − 0.2 and 0.2 − 0.1 differ in the last bits (rounding), not in substance
    assert np.subtract([0.3, 0.2], [0.2, 0.1]).std(ddof=1) > 0
    r = study_stats.paired([0.3, 0.2], [0.2, 0.1])
    assert r["p"] is None and r["note"] == study_stats.NO_SPREAD
    assert r["ci95"] == pytest.approx([0.1, 0.1], abs=TOL)


def _study(tmp_path, seeds, values, factors=None, flags=None):
    """A study directory as `dmfr study run` leaves it: study.json + cells/<hash>/eval/metrics.json.
    values: {(arm, level): [per-seed metric dicts]}."""
    cells = []
    for (arm, level), per_seed in values.items():
        levels = {} if level is None else {"data.procedural.fingerprint_strength": level}
        for seed, metrics in zip(seeds, per_seed):
            h = f"{arm}-{level}-{seed}"
            (tmp_path / "cells" / h / "eval").mkdir(parents=True)
            roc = {"general": {"far": [1e-3, 1e-2, 1e-1], "tar": [0.2, 0.5, 0.9]}}
            curves = {"loss": {"step": [1, 2, 3], "value": [3.0, 2.0, 1.5]}}
            (tmp_path / "cells" / h / "eval" / "metrics.json").write_text(
                json.dumps({"metrics": metrics, "flags": flags or {}, "roc": roc, "loss_curves": curves}))
            cells.append({"hash": h, "arm": arm, "levels": levels, "seed": seed, "state": "evaluated"})
    cells.append({"hash": "x", "arm": "filter", "levels": {}, "seed": 99, "state": "failed", "cause": "boom"})
    (tmp_path / "study.json").write_text(json.dumps({
        "name": "t", "baseline": "mix", "seeds": seeds, "cells": cells,
        "factors": factors or []}))
    return tmp_path


def test_report_contract_and_holm_families(tmp_path):
    mix = [{"general/tar_at_far_1e-3": 0.50, "cross_pose/tar_at_far_1e-3": 0.30, "loss/loss": 1.0},
           {"general/tar_at_far_1e-3": 0.55, "cross_pose/tar_at_far_1e-3": 0.35, "loss/loss": 1.1},
           {"general/tar_at_far_1e-3": 0.52, "cross_pose/tar_at_far_1e-3": 0.33, "loss/loss": 0.9}]
    flt = [{"general/tar_at_far_1e-3": 0.52, "cross_pose/tar_at_far_1e-3": 0.40, "loss/loss": 1.2},
           {"general/tar_at_far_1e-3": 0.54, "cross_pose/tar_at_far_1e-3": 0.44, "loss/loss": 1.4},
           {"general/tar_at_far_1e-3": 0.55, "cross_pose/tar_at_far_1e-3": 0.43, "loss/loss": 1.1}]
    d = _study(tmp_path, [0, 1, 2], {("mix", None): mix, ("filter", None): flt})
    report = write_report(d)
    on_disk = json.loads((d / "report.json").read_text())
    assert on_disk["arms"] == report["arms"]
    arm = {a["name"]: a for a in report["arms"]}["filter"]
    assert arm["n"] == 3 and set(arm["metrics"]["general/tar_at_far_1e-3"]) >= {"mean", "sd", "ci95", "values"}
    assert arm["metrics"]["cross_pose/tar_at_far_1e-3"]["values"] == [0.40, 0.44, 0.43]
    comp = {c["metric"]: c for c in report["comparisons"]}
    assert set(comp) == {"general/tar_at_far_1e-3", "cross_pose/tar_at_far_1e-3", "loss/loss"}
    for c in comp.values():
        assert set(c) >= {"arm", "baseline", "metric", "diff", "ci95", "p", "p_holm"}
        # one comparison per protocol family here: Holm leaves each p as it is
        assert c["p_holm"] == pytest.approx(c["p"], abs=TOL)
    cp = comp["cross_pose/tar_at_far_1e-3"]
    assert cp["p"] == pytest.approx(stats.ttest_rel([0.40, 0.44, 0.43], [0.30, 0.35, 0.33]).pvalue, abs=TOL)
    assert report["failed"] == [{"arm": "filter", "levels": {}, "seed": 99, "hash": "x", "cause": "boom"}]
    assert any(s.startswith("cross_pose: filter − mix at cross_pose/tar_at_far_1e-3: +0.097") for s in report["sentences"])
    for name in ("tar_general", "roc_general", "loss_terms"):
        assert (d / "figures" / f"{name}.png").stat().st_size > 0 and (d / "figures" / f"{name}.svg").exists()
    md = (d / "report.md").read_text()
    assert "| filter | 3 |" in md and "p_Holm" in md


def test_report_with_a_factor_states_the_interaction(tmp_path):
    # filter loses nothing from strength 0 to 2, mix loses 0.1 ± a little: contrast ≈ +0.1
    vals = {("mix", 0): [{"g/tar_at_far_1e-3": 0.60}, {"g/tar_at_far_1e-3": 0.62}, {"g/tar_at_far_1e-3": 0.61}],
            ("mix", 2): [{"g/tar_at_far_1e-3": 0.50}, {"g/tar_at_far_1e-3": 0.51}, {"g/tar_at_far_1e-3": 0.52}],
            ("filter", 0): [{"g/tar_at_far_1e-3": 0.60}, {"g/tar_at_far_1e-3": 0.61}, {"g/tar_at_far_1e-3": 0.60}],
            ("filter", 2): [{"g/tar_at_far_1e-3": 0.60}, {"g/tar_at_far_1e-3": 0.61}, {"g/tar_at_far_1e-3": 0.62}]}
    d = _study(tmp_path, [0, 1, 2], vals, factors=[{"path": "data.procedural.fingerprint_strength", "levels": [0, 2]}])
    report = build_report(d)
    (inter,) = report["interactions"]
    contrast = [(0.60 - 0.60) - (0.50 - 0.60), (0.61 - 0.61) - (0.51 - 0.62), (0.62 - 0.60) - (0.52 - 0.61)]
    assert inter["diff"] == pytest.approx(np.mean(contrast), abs=TOL)
    assert inter["p"] == pytest.approx(stats.ttest_1samp(contrast, 0.0).pvalue, abs=TOL)
    assert inter["level"] == 2 and inter["reference"] == 0 and inter["at"] == {}
    assert len(report["comparisons"]) == 2  # filter vs mix at each strength
    # each arm's own response to the factor: mix(2) − mix(0), the harm the interaction compares
    effects = {e["arm"]: e for e in report["effects"]}
    harm = [0.50 - 0.60, 0.51 - 0.62, 0.52 - 0.61]
    assert effects["mix"]["diff"] == pytest.approx(np.mean(harm), abs=TOL)
    assert effects["mix"]["p"] == pytest.approx(stats.ttest_rel([0.50, 0.51, 0.52], [0.60, 0.62, 0.61]).pvalue, abs=TOL)
    # two effects in the g family: Holm doubles the smaller p (capped at 1), keeps the order
    ps = sorted(e["p"] for e in report["effects"])
    assert min(e["p_holm"] for e in report["effects"]) == pytest.approx(min(1.0, 2 * ps[0]), abs=TOL)
    assert effects["mix"]["level"] == 2 and effects["mix"]["reference"] == 0
    assert any(s.startswith("effect of data.procedural.fingerprint_strength 0→2 on mix at g/tar_at_far_1e-3: −0.100")
               or s.startswith("effect of data.procedural.fingerprint_strength 0→2 on mix at g/tar_at_far_1e-3: -0.100")
               for s in report["sentences"])


def test_report_with_one_seed_is_a_pilot(tmp_path):
    d = _study(tmp_path, [0], {("mix", None): [{"general/tar_at_far_1e-3": 0.5}], ("filter", None): [{"general/tar_at_far_1e-3": 0.6}]})
    report = write_report(d)
    (c,) = report["comparisons"]
    assert c["ci95"] is None and c["p"] is None and c["p_holm"] is None
    assert report["sentences"][0].startswith("general: pilot (n = 1 seed), no interval")
    json.loads((d / "report.json").read_text())  # strict JSON: no NaN anywhere


def test_loss_curves_take_the_resumed_runs_values(tmp_path):
    """A resumed cell's store holds two runs; where both logged a step, the later run's value wins
    (it is the one the final model descends from), and method terms lose their `terms.` prefix."""
    import sqlite3

    from dmfr.analysis.study_eval import loss_curves

    db = sqlite3.connect(tmp_path / "dmfr.sqlite")
    db.executescript("""
        CREATE TABLE runs (id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
        CREATE TABLE metrics (run_id TEXT, step INTEGER, name TEXT, value REAL, PRIMARY KEY (run_id, step, name));
        INSERT INTO runs VALUES ('r1', '2026-11-30T08:00:00Z'), ('r2', '2026-11-30T08:05:00Z');
        INSERT INTO metrics VALUES ('r1', 0, 'loss', 3.0), ('r1', 1, 'loss', 2.5), ('r1', 2, 'loss', 2.4),
                                   ('r1', 1, 'terms.L_cls', 2.0), ('r1', 1, 'lr', 0.1),
                                   ('r2', 2, 'loss', 2.2), ('r2', 3, 'loss', 2.0);
    """)
    db.commit()
    db.close()
    curves = loss_curves(tmp_path)
    assert curves == {"loss": {"step": [0, 1, 2, 3], "value": [3.0, 2.5, 2.2, 2.0]},
                      "L_cls": {"step": [1], "value": [2.0]}}


def test_report_marks_fars_the_test_set_cannot_measure(tmp_path):
    # lfw/tar_at_far_1e-3 on 600 impostors: FAR · impostors < 1, so the read-off flags it; the
    # report shows it but leaves it out of Holm and the sentences, even with a large difference.
    mix = [{"lfw/accuracy": 0.80, "lfw/tar_at_far_1e-3": 0.10}, {"lfw/accuracy": 0.81, "lfw/tar_at_far_1e-3": 0.12},
           {"lfw/accuracy": 0.82, "lfw/tar_at_far_1e-3": 0.11}]
    flt = [{"lfw/accuracy": 0.80, "lfw/tar_at_far_1e-3": 0.50}, {"lfw/accuracy": 0.82, "lfw/tar_at_far_1e-3": 0.55},
           {"lfw/accuracy": 0.81, "lfw/tar_at_far_1e-3": 0.51}]
    d = _study(tmp_path, [0, 1, 2], {("mix", None): mix, ("filter", None): flt},
               flags={"lfw/tar_at_far_1e-3": "too_few_impostors"})
    report = write_report(d)
    assert report["flags"] == {"lfw/tar_at_far_1e-3": "too_few_impostors"}
    arm = {a["name"]: a for a in report["arms"]}["filter"]
    assert arm["metrics"]["lfw/tar_at_far_1e-3"]["flag"] == "too_few_impostors"
    comp = {c["metric"]: c for c in report["comparisons"]}
    assert comp["lfw/tar_at_far_1e-3"]["flag"] == "too_few_impostors" and comp["lfw/tar_at_far_1e-3"]["p_holm"] is None
    assert comp["lfw/tar_at_far_1e-3"]["p"] is not None  # the test itself is still reported
    # accuracy alone in its family: Holm leaves its p as it is
    assert comp["lfw/accuracy"]["p_holm"] == pytest.approx(comp["lfw/accuracy"]["p"], abs=TOL)
    assert not any("tar_at_far_1e-3" in s for s in report["sentences"])
    assert "lfw/tar_at_far_1e-3 †" in (d / "report.md").read_text()


def test_an_interaction_equal_up_to_rounding_has_no_p():
    # TARs are k / 1416 (genuine pairs); both seeds' contrasts are exactly +1/1416 in exact
    # arithmetic, computed from different TARs, so they differ only by the subtractions' rounding.
    n = 1416
    arm_s, arm_ref = [700 / n, 500 / n], [699 / n, 500 / n]
    base_s, base_ref = [300 / n, 200 / n], [300 / n, 201 / n]
    effects = [(a - b) - (c - d) for a, b, c, d in zip(arm_s, arm_ref, base_s, base_ref)]
    assert effects[0] != effects[1]  # rounding shows: without the scale a t-test would "resolve" it
    r = study_stats.interaction(arm_s, arm_ref, base_s, base_ref)
    assert r["p"] is None and r["note"] == study_stats.NO_SPREAD
    assert r["diff"] == pytest.approx(1 / n, abs=4 * np.finfo(float).eps)
