"""Which identities of a labelled image folder or list file train: the `data.select` config.

Rules, applied in this order (docs/data.md "Choosing the training identities"):
  1. `include`: when non-empty, only these identity names are kept (an unknown name is an error);
  2. `exclude`: these names are dropped (an unknown name is an error: a typo would silently keep
     a test identity in training);
  3. `exclude_pairs` + `exclude_folds`: every identity named in those folds (1-based; empty =
     every fold) of an LFW View-2 pairs file is dropped, so a model can train on the people of
     some folds and be tested on the pairs of the others (LFW's folds are disjoint in identity;
     a file whose folds share an identity is refused, as the held-out pairs would leak);
  4. `min_images`: identities with fewer images than this are dropped (LFW's "people with ≥ 2
     images", the usual floor for a classification loss to see an identity twice).
The kept identities are relabelled 0..K-1 in their original order (sorted folder names, as
torchvision's ImageFolder; list-file labels in numeric order).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from dmfr.errors import ConfigError, DataError

DEFAULT_SELECT = {"min_images": 1, "include": [], "exclude": [], "exclude_pairs": "", "exclude_folds": []}


@dataclass
class Selection:
    names: list  # kept identity names, in label order
    samples: list[tuple[str, int]]  # (path, new label)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> identities dropped by it
    identities_before: int = 0
    images_before: int = 0

    def report(self) -> dict:
        return {"identities_before": self.identities_before, "images_before": self.images_before,
                "identities": len(self.names), "images": len(self.samples),
                "dropped_identities": dict(self.dropped)}


def is_active(select: dict | None) -> bool:
    s = {**DEFAULT_SELECT, **(select or {})}
    return bool(s["include"] or s["exclude"] or s["exclude_pairs"] or s["exclude_folds"] or s["min_images"] > 1)


def pairs_identities_by_fold(path: str) -> dict[int, set[str]]:
    """{fold (1-based): identity names} of an LFW pairs file; overlapping folds are an error naming
    the line and both folds."""
    from dmfr.data.lfw import read_pairs_file

    pairs = read_pairs_file(path)
    by_fold: dict[int, set[str]] = {}
    first_seen: dict[str, tuple[int, int]] = {}  # name -> (fold, line)
    for k, (a, b, _) in enumerate(pairs.pairs):
        fold = pairs.fold_of(k) + 1
        line = pairs.lines[k]
        for key in (a, b):
            name = key.split("/", 1)[0]
            seen = first_seen.setdefault(name, (fold, line))
            if seen[0] != fold:
                raise DataError(f"{path}:{line}: identity {name!r} in fold {fold} also appears in fold "
                                f"{seen[0]} (line {seen[1]}): the folds must be disjoint in identity")
            by_fold.setdefault(fold, set()).add(name)
    for f in range(1, pairs.folds + 1):
        by_fold.setdefault(f, set())
    return by_fold


def _check_names(wanted: list, known: dict, key: str, where: str) -> None:
    for i, name in enumerate(wanted):
        if str(name) not in known:
            raise ConfigError(f"data.select.{key}[{i}]: unknown identity {name!r} (no such identity in {where})")


def select_samples(names: list, samples: list[tuple[str, int]], select: dict | None,
                   where: str) -> Selection:
    """Apply `data.select` to identities `names` (label = position) and `samples` [(path, label)];
    `where` names the dataset in errors."""
    s = {**DEFAULT_SELECT, **(select or {})}
    unknown = set(s) - set(DEFAULT_SELECT)
    if unknown:
        raise ConfigError(f"data.select: unknown field(s) {', '.join(sorted(unknown))}")
    if not isinstance(s["min_images"], int) or s["min_images"] < 1:
        raise ConfigError(f"data.select.min_images: expected an integer ≥ 1, got {s['min_images']!r}")
    known = {str(n): lab for lab, n in enumerate(names)}
    counts = [0] * len(names)
    for _, lab in samples:
        counts[lab] += 1
    keep = [True] * len(names)
    dropped: dict[str, int] = {}

    def drop(lab: int, reason: str) -> None:
        if keep[lab]:
            keep[lab] = False
            dropped[reason] = dropped.get(reason, 0) + 1

    if s["include"]:
        _check_names(s["include"], known, "include", where)
        wanted = {str(n) for n in s["include"]}
        for lab, n in enumerate(names):
            if str(n) not in wanted:
                drop(lab, "include")
    if s["exclude"]:
        _check_names(s["exclude"], known, "exclude", where)
        for n in s["exclude"]:
            drop(known[str(n)], "exclude")
    if s["exclude_folds"] and not s["exclude_pairs"]:
        raise ConfigError("data.select.exclude_folds needs data.select.exclude_pairs (the pairs file)")
    if s["exclude_pairs"]:
        path = os.fspath(s["exclude_pairs"])
        by_fold = pairs_identities_by_fold(path)
        folds = s["exclude_folds"] or sorted(by_fold)
        for i, f in enumerate(folds):
            if f not in by_fold:
                raise ConfigError(f"data.select.exclude_folds[{i}]: {path} has folds 1..{len(by_fold)}, "
                                  f"not {f}")
        for f in folds:
            for n in by_fold[f]:
                if n in known:
                    drop(known[n], "exclude_pairs")
    for lab in range(len(names)):
        if counts[lab] < s["min_images"]:
            drop(lab, "min_images")
    new_label, kept_names = {}, []
    for lab, n in enumerate(names):
        if keep[lab]:
            new_label[lab] = len(kept_names)
            kept_names.append(n)
    if not kept_names:
        raise ConfigError(f"data.select: no identity of {where} is left after the selection "
                          f"({', '.join(f'{k}: {v} dropped' for k, v in dropped.items())})")
    kept = [(p, new_label[lab]) for p, lab in samples if lab in new_label]
    return Selection(kept_names, kept, dropped, len(names), len(samples))


def link_selection(src: str, out: str, select: dict) -> Selection:
    """`dmfr data select`: the selected identities of folder `src` as folder `out` of symbolic
    links (`out/identity/image` → the source file), for tools that take a folder rather than a
    config (`dmfr data synth`). Built in a temporary folder beside `out`, then renamed."""
    from dmfr.data.folder import scan_folder
    from dmfr.data.staging import staged_folder

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise DataError(f"{out}: already exists and is not an empty folder; give a new folder")
    names, samples, _ = scan_folder(src)
    sel = select_samples(names, samples, select, src)
    with staged_folder(out) as tmp:
        for name in sel.names:
            os.mkdir(os.path.join(tmp, str(name)))
        for rel, _ in sel.samples:
            os.symlink(os.path.abspath(os.path.join(src, rel)), os.path.join(tmp, rel))
    return sel
