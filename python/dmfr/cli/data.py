"""`dmfr data inspect|pack|unpack|synth|register`: look into, convert and generate face datasets.

inspect PATH [--json]   format, images, identities, pairs, image sizes, problems (exit 1 if any)
pack SRC OUT.rec        image folder or list file -> insightface .rec + .idx + property
unpack REC OUT_DIR      .rec -> OUT_DIR/<label>/<key>.<ext>, one folder per identity
synth …                 a generative domain from real images (dmfr.data.synth)
register …              an external generator's output: folder + manifest (dmfr.data.manifest)
"""
from __future__ import annotations

import io
import os
import sys

from dmfr.cli._output import emit_json
from dmfr.errors import DataError


def _inspect(args) -> int:
    from dmfr.data.inspection import format_report, inspect_path
    report = inspect_path(args.path, limit=args.limit)
    if args.json:
        emit_json(report)
    else:
        print(format_report(report))
    return 1 if report["problem_count"] else 0


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
