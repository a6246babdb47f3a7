"""`dmfr data templates --from DIR --out DIR`: IJB-style template files from a labelled folder.

Writes what `dmfr eval templates` reads (insightface's IJB meta formats, dmfr.eval.templates):
  - `media.txt`: `image template media`, image paths relative to DIR. Each identity with ≥ 2
    images gets two templates, as IJB's enrolment (gallery) and verification (probe) templates:
    its images in a seeded random order, the first half (rounded down) to the gallery template,
    the rest to the probe template; every image is its own media (a still photograph, as IJB's
    `img/` frames are).
  - `pairs.txt`: `template1 template2 label`, template1 a gallery and template2 a probe
    template (the side the attribute rules of `eval templates --rule` read so): one genuine pair
    per identity, and `--impostors N` impostor pairs per identity (its gallery template against
    the probe templates of N other identities drawn without replacement, seeded).
  - `attributes.csv`, where the images carry attributes: when DIR is a generative domain (a
    `manifest.jsonl`, docs/domains.md), column `yaw` for the pose generator's images (Δc is yaw in
    degrees) and column `quality` = 1 − Δc for the quality generator's (Δc is the degradation level
    in 0..1, so 1 is the undegraded image), the columns the CP / CQ rules of
    `eval templates --attributes … --rule yaw|quality` read.
The three files are written into a temporary folder beside --out and renamed into place.
"""
from __future__ import annotations

import os

import numpy as np

from dmfr.errors import DataError
from dmfr.data.staging import staged_folder


def _manifest_attributes(root: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    from dmfr.data.manifest import MANIFEST_NAME, read_manifest

    if not os.path.isfile(os.path.join(root, MANIFEST_NAME)):
        return [], {}
    values: dict[str, dict[str, float]] = {}
    columns: list[str] = []
    for e in read_manifest(root, check_files=False):
        if e.generator == "pose":
            col, v = "yaw", float(e.delta)
        elif e.generator == "quality":
            col, v = "quality", 1.0 - float(e.delta)
        else:
            continue
        if col not in columns:
            columns.append(col)
        values[os.path.normpath(e.path)] = {col: v}
    if len(columns) > 1:
        raise DataError(f"{os.path.join(root, MANIFEST_NAME)}: images of both the pose and the quality generator; "
                        f"build templates for one generative domain at a time")
    return columns, values


def build_templates(root: str, out: str, impostors: int = 10, seed: int = 0) -> dict:
    from dmfr.data.folder import scan_folder

    if impostors < 0:
        raise DataError(f"--impostors must be ≥ 0, got {impostors}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise DataError(f"{out}: already exists and is not an empty folder; give a new folder")
    names, samples, _ = scan_folder(root)
    by_id: dict[int, list[str]] = {}
    for rel, lab in samples:
        if any(c.isspace() for c in rel):
            raise DataError(f"{os.path.join(root, rel)}: image names with spaces cannot be written to a media file")
        by_id.setdefault(lab, []).append(rel)
    enrolled = [lab for lab in sorted(by_id) if len(by_id[lab]) >= 2]
    if len(enrolled) < 2:
        raise DataError(f"{root}: {len(enrolled)} identities with ≥ 2 images; templates need at least 2")
    rng = np.random.default_rng(seed)
    media, gallery, probe = [], {}, {}
    next_template, next_media = 1, 1
    for lab in enrolled:
        imgs = [by_id[lab][i] for i in rng.permutation(len(by_id[lab]))]
        half = len(imgs) // 2
        gallery[lab], probe[lab] = next_template, next_template + 1
        next_template += 2
        for k, rel in enumerate(imgs):
            media.append((rel, gallery[lab] if k < half else probe[lab], next_media))
            next_media += 1
    pairs = []
    for i, lab in enumerate(enrolled):
        pairs.append((gallery[lab], probe[lab], 1))
        others = [o for o in enrolled if o != lab]
        for j in rng.choice(len(others), size=min(impostors, len(others)), replace=False):
            pairs.append((gallery[lab], probe[others[j]], 0))
    columns, attrs = _manifest_attributes(root)
    with staged_folder(out) as tmp:
        with open(os.path.join(tmp, "media.txt"), "w", encoding="utf-8") as fh:
            fh.write("".join(f"{rel} {t} {m}\n" for rel, t, m in media))
        with open(os.path.join(tmp, "pairs.txt"), "w", encoding="utf-8") as fh:
            fh.write("".join(f"{a} {b} {y}\n" for a, b, y in pairs))
        if columns:
            with open(os.path.join(tmp, "attributes.csv"), "w", encoding="utf-8") as fh:
                fh.write(",".join(["image", *columns]) + "\n")
                for rel, _, _ in media:
                    row = attrs.get(os.path.normpath(rel))
                    if row is None:
                        raise DataError(f"{os.path.join(root, rel)}: not in {root}'s manifest.jsonl, so it has no "
                                        f"{columns[0]} attribute")
                    fh.write(f"{rel},{row[columns[0]]:g}\n")
    return {"identities": len(enrolled), "templates": 2 * len(enrolled), "images": len(media),
            "pairs": len(pairs), "genuine": len(enrolled), "attributes": columns}
