"""Cross-pose / cross-quality template protocols (CP-IJB-C, CQ-IJB-C).

From a per-image attribute table and a rule, each template keeps only some of its images: on the
gallery side (`template1` of a pair, IJB-C's enrolment template) the easy ones, on the probe side
(`template2`) the hard ones — the DMFR authors' evaluator:
  - yaw:     gallery |yaw| < 40°,   probe |yaw| > 40°
  - quality: gallery quality > 0.2, probe quality < 0.2
(thresholds are options). A template left with no image on a side is dropped from that side, and
every pair that loses one of its two templates is dropped; the counts are reported, then the
remaining pairs are scored exactly as `dmfr.eval.templates` does (gallery-side and probe-side
template features pooled separately).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmfr.errors import DataError
from dmfr.eval.roc import FAR_TARGETS, tar_at_far
from dmfr.eval.templates import (ROC_POINTS, MediaTable, TemplatePairs, score_pairs, template_features,
                                 template_rows)


@dataclass(frozen=True)
class Rule:
    column: str
    gallery_threshold: float
    probe_threshold: float

    def gallery_keep(self, values: np.ndarray) -> np.ndarray:
        if self.column == "yaw":
            return np.abs(values) < self.gallery_threshold
        return values > self.gallery_threshold

    def probe_keep(self, values: np.ndarray) -> np.ndarray:
        if self.column == "yaw":
            return np.abs(values) > self.probe_threshold
        return values < self.probe_threshold


RULES = {"yaw": (40.0, 40.0), "quality": (0.2, 0.2)}


def make_rule(name: str, gallery_threshold: float | None = None, probe_threshold: float | None = None) -> Rule:
    if name not in RULES:
        raise DataError(f"unknown attribute rule {name!r} (expected one of {', '.join(RULES)})")
    g, p = RULES[name]
    return Rule(name, g if gallery_threshold is None else gallery_threshold,
                p if probe_threshold is None else probe_threshold)


def read_attribute_table(path: str, column: str) -> dict:
    """image -> value of `column`, from a CSV or TSV file with a header naming `image` and `column`."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read attribute table: {exc}") from None
    if not lines:
        raise DataError(f"{path}: empty attribute table")
    sep = "\t" if "\t" in lines[0] else ","
    header = [h.strip() for h in lines[0].split(sep)]
    for name in ("image", column):
        if name not in header:
            raise DataError(f"{path}, line 1: header has no {name!r} column (columns: {', '.join(header)})")
    ci, cv = header.index("image"), header.index(column)
    table = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(sep)]
        if len(fields) != len(header):
            raise DataError(f"{path}, line {n}: {len(fields)} fields, the header has {len(header)}")
        try:
            value = float(fields[cv])
        except ValueError:
            raise DataError(f"{path}, line {n}: {column} {fields[cv]!r} is not a number") from None
        if not np.isfinite(value):
            raise DataError(f"{path}, line {n}: {column} is not finite")
        table[fields[ci]] = value
    return table


def attribute_values(media: MediaTable, table: dict, table_path: str) -> np.ndarray:
    values = np.empty(len(media.images), dtype=np.float64)
    for i, image in enumerate(media.images):
        v = table.get(image)
        if v is None:
            raise DataError(f"{media.path}: image {image!r} (line {media.lines[i] if media.lines is not None else i + 1}) is not in {table_path}")
        values[i] = v
    return values


def filter_pairs(media: MediaTable, pairs: TemplatePairs, values: np.ndarray, rule: Rule):
    """Which images each side keeps, which templates survive on each side, which pairs remain."""
    g_img = rule.gallery_keep(values)
    p_img = rule.probe_keep(values)
    template_ids, t_row = np.unique(media.templates, return_inverse=True)
    g_tmpl = np.bincount(t_row, weights=g_img, minlength=template_ids.size) > 0
    p_tmpl = np.bincount(t_row, weights=p_img, minlength=template_ids.size) > 0
    r1 = template_rows(template_ids, pairs.t1, pairs.path)
    r2 = template_rows(template_ids, pairs.t2, pairs.path)
    keep = g_tmpl[r1] & p_tmpl[r2]
    counts = {
        "rule": {"column": rule.column, "gallery_threshold": rule.gallery_threshold,
                 "probe_threshold": rule.probe_threshold},
        "images": {"total": int(values.size), "gallery_kept": int(g_img.sum()), "probe_kept": int(p_img.sum())},
        "gallery_templates": {"total": int(np.unique(r1).size), "kept": int(np.unique(r1[g_tmpl[r1]]).size)},
        "probe_templates": {"total": int(np.unique(r2).size), "kept": int(np.unique(r2[p_tmpl[r2]]).size)},
        "pairs": {"total": int(keep.size), "kept": int(keep.sum()),
                  "genuine_kept": int((keep & pairs.labels).sum()),
                  "impostor_kept": int((keep & ~pairs.labels).sum())},
    }
    return g_img, p_img, keep, counts


def evaluate_attribute_protocol(media: MediaTable, pairs: TemplatePairs, features: np.ndarray,
                                values: np.ndarray, rule: Rule, fars=FAR_TARGETS, *,
                                norm_weight: bool = True, detector_weight: bool = False) -> dict:
    if features.shape[0] != len(media.images):
        raise DataError(f"{media.path}: {len(media.images)} images but {features.shape[0]} feature rows")
    g_img, p_img, keep, counts = filter_pairs(media, pairs, values, rule)
    result = {"filter": counts}
    if counts["pairs"]["genuine_kept"] == 0 or counts["pairs"]["impostor_kept"] == 0:
        result["notes"] = [f"after the {rule.column} filter {counts['pairs']['genuine_kept']} genuine and "
                           f"{counts['pairs']['impostor_kept']} impostor pairs remain: TAR@FAR is undefined"]
        return result
    opts = dict(norm_weight=norm_weight, detector_weight=detector_weight)
    ids, gallery, _ = template_features(media, features, image_mask=g_img, **opts)
    _, probe, _ = template_features(media, features, image_mask=p_img, **opts)
    r1 = template_rows(ids, pairs.t1[keep], pairs.path)
    r2 = template_rows(ids, pairs.t2[keep], pairs.path)
    scores = score_pairs(gallery, r1, probe, r2)
    result.update(tar_at_far(scores, pairs.labels[keep], fars, roc_points=ROC_POINTS))
    result["n_pairs"] = int(scores.size)
    result["options"] = opts
    return result
