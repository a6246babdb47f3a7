"""`dmfr data pairs`: an LFW View-2 pairs file from a labelled folder `root/identity/image`.

LFW's View 2 (Huang et al. 2007, the `pairs.txt` that dmfr.data.lfw reads): `folds pairs` on the
first line, then per fold `pairs` same-person lines and `pairs` different-person lines, the folds
disjoint in identity so that each fold is tested by a model fitted on the others. The builder:
  - deals the identities to the folds at random (seeded): first those with ≥ 2 images (they give
    same-person pairs), then the rest, round-robin, so every fold gets an equal share of both;
  - in each fold draws `pairs` distinct same-person pairs (an identity uniformly among the fold's
    multi-image identities, then two distinct images of it) and `pairs` distinct different-person
    pairs (two distinct identities of the fold, one image each), so same and different are balanced;
  - refuses, naming the fold, when a fold cannot hold that many distinct pairs.
Images whose names follow LFW's `Name_%04d.jpg` are written as numbers (the file reads in any LFW
tool); other names are written as file names (dmfr's extension, docs/data.md).
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from dmfr.errors import DataError


def _field(name: str, file: str) -> str:
    m = re.fullmatch(re.escape(name) + r"_(\d{4})\.jpg", file)
    return str(int(m.group(1))) if m else file


def _distinct(draw, capacity: int, count: int, rng: np.random.Generator, enumerate_all) -> list:
    """`count` distinct items: rejection sampling while the space is roomy; otherwise enumerate
    every item and draw without replacement (bounded work either way)."""
    if capacity <= 4 * count:
        items = enumerate_all()
        pick = rng.choice(len(items), size=count, replace=False)
        return [items[i] for i in sorted(pick)]
    seen, out = set(), []
    while len(out) < count:
        item = draw()
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def build_pairs(root: str, folds: int, per_fold: int, seed: int = 0) -> tuple[list[list[str]], dict]:
    """(lines of the pairs file without its header, a summary). Raises DataError naming the fold
    (or file) that cannot be served."""
    from dmfr.data.folder import scan_folder

    if folds < 1 or per_fold < 1:
        raise DataError(f"--folds and --pairs-per-fold must be ≥ 1, got {folds} and {per_fold}")
    names, samples, _ = scan_folder(root)
    files: dict[str, list[str]] = {n: [] for n in names}
    for rel, label in samples:
        files[names[label]].append(rel.split("/", 1)[1])
    for n in names:
        if any(c.isspace() for c in n):
            raise DataError(f"{os.path.join(root, n)}: identity names with spaces cannot be written to a "
                            f"pairs file")
        for f in files[n]:
            if any(c.isspace() for c in f):
                raise DataError(f"{os.path.join(root, n, f)}: image names with spaces cannot be written to a "
                                f"pairs file")
    rng = np.random.default_rng(seed)
    multi = [n for n in names if len(files[n]) >= 2]
    single = [n for n in names if len(files[n]) == 1]
    fold_ids: list[list[str]] = [[] for _ in range(folds)]
    for group in (multi, single):
        order = rng.permutation(len(group))
        for k, i in enumerate(order):
            fold_ids[k % folds].append(group[i])
    lines: list[list[str]] = []
    for f, ids in enumerate(fold_ids, 1):
        ids.sort()
        fmulti = [n for n in ids if len(files[n]) >= 2]
        same_cap = sum(math.comb(len(files[n]), 2) for n in fmulti)
        if same_cap < per_fold:
            raise DataError(f"{root}: fold {f} of {folds} has {len(fmulti)} identities with ≥ 2 images, "
                            f"{same_cap} distinct same-person pairs, fewer than --pairs-per-fold {per_fold}")
        sizes = [len(files[n]) for n in ids]
        diff_cap = (sum(sizes) ** 2 - sum(s * s for s in sizes)) // 2
        if diff_cap < per_fold:
            raise DataError(f"{root}: fold {f} of {folds} has {len(ids)} identities, {diff_cap} distinct "
                            f"different-person pairs, fewer than --pairs-per-fold {per_fold}")

        def draw_same():
            n = fmulti[rng.integers(len(fmulti))]
            i, j = sorted(rng.choice(len(files[n]), size=2, replace=False).tolist())
            return (n, i, j)

        def all_same():
            return [(n, i, j) for n in fmulti for i in range(len(files[n])) for j in range(i + 1, len(files[n]))]

        def draw_diff():
            a, b = sorted(rng.choice(len(ids), size=2, replace=False).tolist())
            return (ids[a], int(rng.integers(sizes[a])), ids[b], int(rng.integers(sizes[b])))

        def all_diff():
            return [(ids[a], i, ids[b], j) for a in range(len(ids)) for b in range(a + 1, len(ids))
                    for i in range(sizes[a]) for j in range(sizes[b])]

        for n, i, j in _distinct(draw_same, same_cap, per_fold, rng, all_same):
            lines.append([n, _field(n, files[n][i]), _field(n, files[n][j])])
        for a, i, b, j in _distinct(draw_diff, diff_cap, per_fold, rng, all_diff):
            lines.append([a, _field(a, files[a][i]), b, _field(b, files[b][j])])
    summary = {"folds": folds, "pairs_per_fold": per_fold, "pairs": len(lines), "seed": seed,
               "identities_per_fold": [len(ids) for ids in fold_ids]}
    return lines, summary


def write_pairs(out: str, folds: int, per_fold: int, lines: list[list[str]]) -> None:
    """Write `folds per_fold` + the lines (tab-separated, as LFW's file) atomically."""
    from pathlib import Path

    from dmfr.checkpoint import atomic_write

    text = f"{folds}\t{per_fold}\n" + "".join("\t".join(ln) + "\n" for ln in lines)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
