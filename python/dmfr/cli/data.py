"""`dmfr data inspect|pack|unpack|synth|register`: look into, convert and generate face datasets.

inspect PATH [--json]   format, images, identities, pairs, image sizes, problems (exit 1 if any)
pack SRC OUT.rec        image folder or list file -> insightface .rec + .idx + property
unpack REC OUT_DIR      .rec -> OUT_DIR/<label>/<key>.<ext>, one folder per identity
synth …                 a generative domain from real images (dmfr.data.synth)
register …              an external generator's output: folder + manifest (dmfr.data.manifest)
select --from DIR --out DIR       the data.select identities as a folder of links (for synth)
align --from DIR --out DIR        detect + 5 landmarks + ArcFace alignment (dmfr.data.align_folder)
pairs --from DIR --out pairs.txt  an LFW View-2 pairs file, folds disjoint in identity
templates --from DIR --out DIR    media/pairs files for `eval templates` (dmfr.data.templates_builder)
cross-quality …                   held-out pairs with one side camera-degraded (dmfr.data.cross_quality)
"""
from __future__ import annotations

import json
import io
import os
import sys

from dmfr.cli._output import emit_json
from dmfr.errors import DataError


def _inspect(args) -> int:
    from dmfr.data.inspection import format_report, inspect_path
    report = inspect_path(args.path, limit=args.limit)
    select = _select_from_args(args)
    if select is not None:
        report["selection"] = _selection_report(args.path, report["format"], select)
    if args.json:
        emit_json(report)
    else:
        text = format_report(report)
        if select is not None:
            text += "\n" + _format_selection(report["selection"])
        print(text)
    return 1 if report["problem_count"] else 0


def _add_select_arguments(p, title: str) -> None:
    g = p.add_argument_group(title)
    g.add_argument("--min-images", type=int, metavar="N", help="data.select.min_images")
    g.add_argument("--include", metavar="NAMES", help="data.select.include, comma-separated")
    g.add_argument("--exclude", metavar="NAMES", help="data.select.exclude, comma-separated")
    g.add_argument("--exclude-pairs", metavar="PAIRS", help="data.select.exclude_pairs (an LFW pairs file)")
    g.add_argument("--exclude-folds", metavar="FOLDS", help="data.select.exclude_folds, e.g. 9,10 or 1-8")


def _select(args) -> int:
    from dmfr.data.selection import link_selection
    select = _select_from_args(args)
    if select is None:
        raise DataError("data select: give at least one of --min-images, --include, --exclude, --exclude-pairs")
    sel = link_selection(args.src, args.out, select)
    print(f"linked {len(sel.samples)} images of {len(sel.names)} identities (of {sel.images_before} / "
          f"{sel.identities_before}) from {args.src} into {args.out}")
    return 0


def _select_from_args(args) -> dict | None:
    """data.select from inspect's flags (the same fields as the config), None when none is given."""
    from dmfr.errors import ConfigError

    select = {}
    if args.min_images is not None:
        select["min_images"] = args.min_images
    if args.include:
        select["include"] = [n for n in args.include.split(",") if n]
    if args.exclude:
        select["exclude"] = [n for n in args.exclude.split(",") if n]
    if args.exclude_pairs:
        select["exclude_pairs"] = args.exclude_pairs
    if args.exclude_folds:
        try:
            select["exclude_folds"] = _fold_list(args.exclude_folds)
        except ValueError:
            raise ConfigError(f"--exclude-folds: expected folds like 1-8 or 9,10, got {args.exclude_folds!r}") from None
    return select or None


def _fold_list(text: str) -> list[int]:
    """'9,10' or '1-8' (or a mix) → sorted fold numbers."""
    out = set()
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out.update(range(int(a), int(b) + 1))
        elif part.strip():
            out.add(int(part))
    return sorted(out)


def _selection_report(path: str, fmt: str, select: dict) -> dict:
    from collections import Counter

    from dmfr.data.selection import select_samples
    if fmt == "folder":
        from dmfr.data.folder import scan_folder
        names, samples, _ = scan_folder(path)
    elif fmt == "list":
        from dmfr.data.listfile import read_list
        samples = read_list(path)
        names = list(range(max((lab for _, lab in samples), default=-1) + 1))
    else:
        raise DataError(f"{path}: identity selection needs an image folder or a list file, not {fmt}")
    sel = select_samples(names, samples, select, path)
    counts = sorted(Counter(lab for _, lab in sel.samples).values())
    return {**sel.report(), "select": select,
            "per_identity": {"min": counts[0], "median": float(counts[len(counts) // 2]) if len(counts) % 2
                             else (counts[len(counts) // 2 - 1] + counts[len(counts) // 2]) / 2,
                             "max": counts[-1]}}


def _format_selection(s: dict) -> str:
    dropped = ", ".join(f"{n} by {k}" for k, n in s["dropped_identities"].items()) or "none"
    p = s["per_identity"]
    return (f"selection {json.dumps(s['select'])}: keeps {s['identities']} of {s['identities_before']} "
            f"identities, {s['images']} of {s['images_before']} images (dropped identities: {dropped}); "
            f"images per kept identity: min {p['min']}, median {p['median']:g}, max {p['max']}")


def _source_samples(src: str) -> tuple[list[tuple[str, int]], str, int]:
    """[(absolute path, label)], a description, num_classes for a folder or list file."""
    if os.path.isdir(src):
        from dmfr.data.folder import scan_folder
        names, samples, _ = scan_folder(src)
        return [(os.path.join(src, p), lab) for p, lab in samples], f"folder ({len(names)} identities)", len(names)
    if os.path.isfile(src):
        from dmfr.data.listfile import read_list
        root = os.path.dirname(os.path.abspath(src))
        entries = read_list(src)
        k = max((lab for _, lab in entries), default=-1) + 1
        return [(os.path.join(root, p), lab) for p, lab in entries], "list file", k
    raise DataError(f"{src}: no such folder or list file")


def _encoded(path: str, image_size: int | None) -> bytes:
    """The bytes to store: JPEG/PNG as they are (mxnet's imdecode reads them, as face2rec keeps
    the original file); other formats, or a resize, re-encoded (PNG lossless, JPEG q95)."""
    from PIL import Image

    from dmfr.data.images import decode_image, read_image_bytes, resize_square
    from dmfr.data.inspection import sniff_extension
    data = read_image_bytes(path)
    ext = sniff_extension(data)
    img = decode_image(data, path)  # validate every image before it goes into the pack
    if image_size is None and ext in (".jpg", ".png"):
        return data
    if image_size is not None:
        img = resize_square(img, image_size)
    out = io.BytesIO()
    if ext == ".jpg":
        Image.fromarray(img).save(out, format="JPEG", quality=95)
    else:
        Image.fromarray(img).save(out, format="PNG")
    return out.getvalue()


def _pack(args) -> int:
    from dmfr.data.recordio import pack
    samples, what, k = _source_samples(args.src)
    if not samples:
        raise DataError(f"{args.src}: no images to pack")
    if not args.out.endswith(".rec"):
        raise DataError(f"{args.out}: the output must end in .rec (its .idx goes beside it)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    skipped = []

    def loader(path):
        def load():
            return _encoded(path, args.image_size)
        return load

    if args.skip_bad:  # find bad images first so the identity ranges stay exact
        good = []
        for path, lab in samples:
            try:
                _encoded(path, args.image_size)
            except DataError as exc:
                skipped.append(str(exc))
                continue
            good.append((lab, loader(path)))  # encoded again while writing: memory stays flat
        todo = good
    else:
        todo = [(lab, loader(path)) for path, lab in samples]
    summary = pack(args.out, todo, num_classes=k)
    sizes = ", ".join(f"{s} x{n}" for s, n in summary["sizes"].items())
    print(f"packed {summary['images']} images of {summary['identities']} identities from {what} "
          f"into {args.out} (+ .idx, property); sizes {sizes}")
    for msg in skipped:
        print(f"skipped: {msg}", file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} bad images", file=sys.stderr)
    return 0


def _unpack(args) -> int:
    from dmfr.data.inspection import sniff_extension
    from dmfr.data.recordio import RecordFile, detect_layout, unpack_record
    rec = os.path.join(args.rec, "train.rec") if os.path.isdir(args.rec) else args.rec
    rf = RecordFile(rec)
    layout = detect_layout(rf)
    items, skipped = [], 0
    for key in layout.image_keys.tolist():
        off = rf.offset(key)
        where = f"{rec}: record {key} at byte offset {off}"
        try:
            header, payload = unpack_record(rf.read_at(off), where)
            label = header.identity
            if label < 0 or not float(label).is_integer():
                raise DataError(f"{where}: identity label {label} is not a non-negative integer")
            ext = sniff_extension(payload)
            if ext is None:
                raise DataError(f"{where}: payload is not a known image format")
        except DataError as exc:
            if not args.skip_bad:
                raise
            print(f"skipped: {exc}", file=sys.stderr)
            skipped += 1
            continue
        items.append((int(label), key, off))
    # Zero-padded names sort in label / key order, so `pack` of OUT_DIR gives the same labels
    # and image order back.
    width = len(str(max((lab for lab, _, _ in items), default=0)))
    key_width = len(str(max((key for _, key, _ in items), default=0)))
    for label, key, off in items:  # re-read: keeps memory flat for big packs
        _, payload = unpack_record(rf.read_at(off), f"{rec}: record {key}")
        folder = os.path.join(args.out_dir, f"{label:0{width}d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{key:0{key_width}d}{sniff_extension(payload)}"), "wb") as f:
            f.write(payload)
    ids = len({lab for lab, _, _ in items})
    print(f"unpacked {len(items)} images of {ids} identities ({layout.kind} layout) into {args.out_dir}"
          + (f"; skipped {skipped} bad records" if skipped else ""))
    return 0


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="inspect, pack, unpack and synthesise face datasets")
    sub = data.add_subparsers(dest="data_verb", required=True)

    p = sub.add_parser("inspect", help="report format, counts, image sizes and problems")
    p.add_argument("path", help=".rec (or its folder), .bin, image folder, list file or LFW folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="decode at most N images (default: all)")
    _add_select_arguments(p, "identity selection (the data.select config fields): report what it keeps")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("pack", help="folder or list file -> insightface .rec/.idx/property")
    p.add_argument("src", help="image folder root/identity/image, or a 'path label' list file")
    p.add_argument("out", metavar="OUT.rec")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="resize to SxS while packing (default: keep the images as they are)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images instead of stopping")
    p.set_defaults(func=_pack)

    p = sub.add_parser("unpack", help=".rec -> one folder per identity")
    p.add_argument("rec", metavar="REC")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--skip-bad", action="store_true", help="skip bad records instead of stopping")
    p.set_defaults(func=_unpack)

    from dmfr.data import manifest, synth  # imported here: they pull in the renderer

    p = sub.add_parser("synth", help="generate a generative domain from real images (built-in generators)")
    synth.add_arguments(p)
    p.set_defaults(func=synth.run)

    p = sub.add_parser("register", help="register an external generator's output: folder + manifest")
    manifest.add_register_arguments(p)
    p.set_defaults(func=manifest.run_register)

    register_builders(sub)


def _align(args) -> int:
    from dmfr.data.align_folder import align_folder
    summary = align_folder(args.src, args.out, image_size=args.image_size, fallback=args.fallback,
                           upsample=args.upsample, jobs=args.jobs)
    print(f"aligned {summary['aligned']} of {summary['images']} images from {args.src} into {args.out} "
          f"({args.image_size}x{args.image_size}, ArcFace template); face found in {summary['faces_found']}, "
          f"no face in {summary['no_face']}, unreadable {summary['unreadable']} "
          f"(listed in {os.path.join(args.out, 'align-report.txt')}); source landmarks in "
          f"{os.path.join(args.out, 'landmarks.txt')}")
    return 0


def _pairs(args) -> int:
    from dmfr.data.pairs_builder import build_pairs, write_pairs
    lines, summary = build_pairs(args.src, args.folds, args.pairs_per_fold, args.seed)
    write_pairs(args.out, args.folds, args.pairs_per_fold, lines)
    print(f"wrote {args.out}: {args.folds} folds x ({args.pairs_per_fold} same + {args.pairs_per_fold} "
          f"different) pairs, folds disjoint in identity (identities per fold "
          f"{min(summary['identities_per_fold'])}..{max(summary['identities_per_fold'])}), seed {args.seed}")
    return 0


def _cross_quality(args) -> int:
    from dmfr.data.cross_quality import build_cross_quality
    summary = build_cross_quality(args.images, args.pairs, _fold_list(args.folds), args.out, args.seed)
    print(f"wrote {args.out}: {summary['pairs']} pairs of folds {args.folds} with one side degraded "
          f"({summary['degraded_images']} degraded images; images/, pairs.txt, degradations.csv)")
    return 0


def _templates(args) -> int:
    from dmfr.data.templates_builder import build_templates
    s = build_templates(args.src, args.out, impostors=args.impostors, seed=args.seed)
    extra = f"; attributes.csv ({', '.join(s['attributes'])})" if s["attributes"] else ""
    print(f"wrote {args.out}: media.txt ({s['images']} images in {s['templates']} templates of {s['identities']} "
          f"identities), pairs.txt ({s['pairs']} pairs, {s['genuine']} genuine){extra}")
    return 0


def register_builders(sub) -> None:
    """The real-face verbs: align, pairs, cross-quality (and templates)."""
    p = sub.add_parser("align", help="detect faces + 5 landmarks (dlib) and align to the ArcFace template")
    p.add_argument("--from", dest="src", required=True, metavar="DIR", help="folder of photographs (any layout)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new): same layout and names")
    p.add_argument("--image-size", type=int, default=112, help="aligned size (default 112, the ArcFace template)")
    p.add_argument("--fallback", choices=("mean", "none"), default="mean",
                   help="no face found: align with the folder's mean landmarks (default) or leave it out")
    p.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling (finds faces < 80 px)")
    p.add_argument("--jobs", type=int, default=1, help="detector processes")
    p.set_defaults(func=_align)

    p = sub.add_parser("select", help="the selected identities of a folder as a folder of symbolic links")
    p.add_argument("--from", dest="src", required=True, metavar="DIR", help="labelled folder root/identity/image")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder of links")
    _add_select_arguments(p, "identity selection (the data.select config fields)")
    p.set_defaults(func=_select)

    p = sub.add_parser("pairs", help="an LFW View-2 pairs file from a labelled folder (folds disjoint in identity)")
    p.add_argument("--from", dest="src", required=True, metavar="DIR", help="labelled folder root/identity/image")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--pairs-per-fold", type=int, default=300, help="same-person pairs per fold (as many different)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="PAIRS.txt")
    p.set_defaults(func=_pairs)

    p = sub.add_parser("templates", help="media/pairs files for `eval templates` from a labelled folder")
    p.add_argument("--from", dest="src", required=True, metavar="DIR", help="labelled folder root/identity/image")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder: media.txt, pairs.txt (attributes.csv)")
    p.add_argument("--impostors", type=int, default=10, help="impostor pairs per identity (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_templates)

    p = sub.add_parser("cross-quality", help="held-out pairs with one side degraded by a low-light camera (XQLFW-like)")
    p.add_argument("--images", required=True, help="images root of the pairs file")
    p.add_argument("--pairs", required=True, help="LFW pairs file (folds disjoint in identity)")
    p.add_argument("--folds", required=True, help="the held-out folds, e.g. 9,10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="new folder: images/, pairs.txt, degradations.csv")
    p.set_defaults(func=_cross_quality)
