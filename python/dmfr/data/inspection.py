"""`dmfr data inspect`: what a dataset path holds and what is wrong with it.

Detects the format (.rec, .bin, image folder, list file, LFW layout + pairs.txt), counts images,
identities and pairs, tallies image sizes, summarises images per identity, and collects every
problem (a bad record or image with its file and offset or path, a missing file, a `property`
that disagrees) instead of stopping at the first.
"""
from __future__ import annotations

import os
from collections import Counter

import numpy as np

from dmfr.errors import DataError

MAX_PROBLEMS = 50  # listed in full; the rest are counted


def detect_format(path: str) -> str:
    if os.path.isfile(path):
        ext = os.path.splitext(path)[1].lower()
        if ext in (".rec", ".idx"):
            return "rec"
        if ext == ".bin":
            return "bin"
        return "list"
    if os.path.isdir(path):
        from dmfr.data.lfw import find_lfw
        if os.path.isfile(os.path.join(path, "train.rec")):
            return "rec"
        if find_lfw(path) is not None:
            return "lfw"
        return "folder"
    raise DataError(f"{path}: no such file or folder")


def _size(img) -> str:
    """An image's size as HxW: height first, as insightface's `property` file and `data pack` write it."""
    return f"{img.shape[0]}x{img.shape[1]}"


class Report:
    def __init__(self, fmt: str, path: str, limit: int | None):
        self.data: dict = {"format": fmt, "path": path}
        self.problems: list[str] = []
        self.problem_count = 0
        self.sizes: Counter = Counter()
        self.limit = limit
        self.checked = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def may_check(self) -> bool:
        return self.limit is None or self.checked < self.limit

    def check_bytes(self, data: bytes, where: str) -> None:
        from dmfr.data.images import decode_image
        self.checked += 1
        try:
            img = decode_image(data, where)
            self.sizes[_size(img)] += 1
        except DataError as exc:
            self.problem(str(exc))

    def check_path(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            self.checked += 1
            self.problem(f"{path}: cannot read: {exc.strerror or exc}")
            return
        self.check_bytes(data, path)

    def identity_counts(self, labels) -> None:
        counts = np.bincount(np.asarray(labels, dtype=np.int64)) if len(labels) else np.zeros(0, int)
        counts = counts[counts > 0]
        self.data["identities"] = int(len(counts))
        if len(counts):
            self.data["per_identity"] = {
                "min": int(counts.min()), "median": float(np.median(counts)),
                "mean": round(float(counts.mean()), 2), "max": int(counts.max()),
                "single_image": int((counts == 1).sum())}

    def finish(self) -> dict:
        self.data["image_sizes"] = dict(self.sizes.most_common())
        self.data["checked_images"] = self.checked
        self.data["decoded_images"] = sum(self.sizes.values())  # those of the checked that decoded
        self.data["problems"] = self.problems
        self.data["problem_count"] = self.problem_count
        return self.data


def _inspect_rec(path: str, r: Report) -> None:
    from dmfr.data.recordio import RecordFile, detect_layout, read_property, unpack_record
    rec = os.path.join(path, "train.rec") if os.path.isdir(path) else path
    if rec.endswith(".idx"):
        rec = rec[:-4] + ".rec"
    rf = RecordFile(rec)
    layout = detect_layout(rf)
    r.data.update(path=rec, layout=layout.kind, records=int(len(rf.keys)),
                  index=rf.idx_path or "none (records found by scanning)")
    labels = []
    for key in layout.image_keys.tolist():
        off = rf.offset(key)
        where = f"{rec}: record {key} at byte offset {off}"
        try:
            header, payload = unpack_record(rf.read_at(off), where)
        except DataError as exc:
            r.problem(str(exc))
            continue
        label = header.identity
        if label < 0 or not float(label).is_integer():
            r.problem(f"{where}: identity label {label} is not a non-negative integer")
            continue
        labels.append(int(label))
        if r.may_check():
            r.check_bytes(payload, where)
    r.data["images"] = len(labels)
    r.identity_counts(labels)
    if layout.identity_ranges is not None:
        r.data["identity_records"] = len(layout.identity_ranges)
    prop = read_property(os.path.dirname(os.path.abspath(rec)))
    if prop is not None:
        k, h, w = prop
        r.data["property"] = {"num_classes": k, "height": h, "width": w}
        if labels and max(labels) >= k:
            r.problem(f"property says {k} identities, but a record has label {max(labels)}")
        other = [s for s in r.sizes if s != f"{h}x{w}"]
        if other:
            r.problem(f"property says {h}x{w} images, but images of size {', '.join(other)} were found")
    rf.close()


def _inspect_bin(path: str, r: Report) -> None:
    from dmfr.data.binpack import _image, load_pickle
    obj = load_pickle(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataError(f"{path}: expected a pickle of (bins, issame_list)")
    bins, issame = obj
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    r.data.update(images=len(bins), pairs=int(len(issame)), same_pairs=int(issame.sum()))
    if len(bins) != 2 * len(issame):
        r.problem(f"{path}: {len(bins)} images for {len(issame)} pairs (expected {2 * len(issame)})")
    for i, item in enumerate(bins):
        if not r.may_check():
            break
        r.checked += 1
        try:
            img = _image(item, f"{path}: image {i}")
            r.sizes[_size(img)] += 1
        except DataError as exc:
            r.problem(str(exc))


def _inspect_paths(root: str, entries: list[tuple[str, int]], r: Report) -> None:
    r.data["images"] = len(entries)
    r.identity_counts([lab for _, lab in entries])
    for rel, _ in entries:
        if not r.may_check():
            break
        r.check_path(os.path.join(root, rel))


def _inspect_folder(path: str, r: Report) -> None:
    from dmfr.data.folder import scan_folder
    names, samples, ignored = scan_folder(path)
    if not samples:
        r.problem(f"{path}: no images in root/identity/image layout")
    _inspect_paths(path, samples, r)
    if ignored:
        r.data["ignored_files"] = len(ignored)
        r.problem(f"{len(ignored)} files that are not images were ignored, e.g. {ignored[0]}")


def _inspect_list(path: str, r: Report) -> None:
    from dmfr.data.listfile import read_list
    entries = read_list(path)
    if not entries:
        r.problem(f"{path}: the list has no entries")
    _inspect_paths(os.path.dirname(os.path.abspath(path)), entries, r)


def _inspect_lfw(path: str, r: Report) -> None:
    from dmfr.data.lfw import find_lfw, read_pairs_file
    images_root, pairs_path = find_lfw(path)
    pairs = read_pairs_file(pairs_path)
    keys = sorted({k for a, b, _ in pairs.pairs for k in (a, b)})
    r.data.update(images_root=images_root, pairs_file=pairs_path, pairs=len(pairs.pairs),
                  folds=pairs.folds, same_pairs=sum(1 for p in pairs.pairs if p[2]),
                  images=len(keys))
    counts = Counter(k.split("/")[0] for k in keys)
    r.data["identities"] = len(counts)
    c = np.array(list(counts.values()) or [0])
    r.data["per_identity"] = {"min": int(c.min()), "median": float(np.median(c)),
                              "mean": round(float(c.mean()), 2), "max": int(c.max()),
                              "single_image": int((c == 1).sum())}
    for k in keys:
        full = os.path.join(images_root, k)
        if not os.path.isfile(full):
            r.problem(f"{full}: named by {pairs_path} but missing")
        elif r.may_check():
            r.check_path(full)


_INSPECTORS = {"rec": _inspect_rec, "bin": _inspect_bin, "folder": _inspect_folder,
               "list": _inspect_list, "lfw": _inspect_lfw}


def inspect_path(path: str, fmt: str | None = None, limit: int | None = None) -> dict:
    fmt = fmt or detect_format(path)
    r = Report(fmt, path, limit)
    _INSPECTORS[fmt](path, r)
    return r.finish()


def format_report(d: dict) -> str:
    lines = [f"format: {d['format']}" + (f" ({d['layout']} layout)" if "layout" in d else ""),
             f"path: {d['path']}"]
    for key in ("index", "images_root", "pairs_file", "records", "images", "identities",
                "identity_records", "pairs", "same_pairs", "folds", "ignored_files"):
        if key in d:
            lines.append(f"{key}: {d[key]}")
    if "property" in d:
        p = d["property"]
        lines.append(f"property: {p['num_classes']} identities, {p['height']}x{p['width']}")
    if "per_identity" in d:
        p = d["per_identity"]
        lines.append(f"images per identity: min {p['min']}, median {p['median']:g}, "
                     f"mean {p['mean']:g}, max {p['max']}; {p['single_image']} with one image")
    sizes = ", ".join(f"{s} x{n}" for s, n in d["image_sizes"].items()) or "none decoded"
    lines.append(f"image sizes ({d['decoded_images']} of {d['checked_images']} checked decoded): {sizes}")
    if d["problem_count"]:
        lines.append(f"problems: {d['problem_count']}")
        lines += [f"  - {p}" for p in d["problems"]]
        if d["problem_count"] > len(d["problems"]):
            lines.append(f"  … and {d['problem_count'] - len(d['problems'])} more")
    else:
        lines.append("problems: none")
    return "\n".join(lines)


def sniff_extension(data: bytes) -> str | None:
    """File extension for encoded image bytes by their signature (unpack names files with it)."""
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if data[:2] in (b"P2", b"P5"):
        return ".pgm"
    if data[:2] in (b"P3", b"P6"):
        return ".ppm"
    if data[:2] == b"BM":
        return ".bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return None
