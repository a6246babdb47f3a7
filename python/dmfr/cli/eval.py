"""`dmfr eval verification|templates|identification`: the paper's evaluation protocols.

Every protocol runs from a checkpoint (with images) or from a features file (`--features F.npy
--keys K.txt`, any model). `--json` prints the result as JSON; `--out DIR` also writes it to
DIR/<protocol>.json (templates --rule R: DIR/templates-R.json). Protocol details: docs/evaluation.md.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from dmfr.cli._output import emit_json
from dmfr.errors import DataError, DmfrError
from dmfr.textfile import split_lines


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluation protocols (verification, templates, identification)")
    verbs = p.add_subparsers(dest="eval_verb", required=True)

    v = verbs.add_parser("verification", help="pair verification, insightface's 10-fold protocol")
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--bin", help="insightface .bin pack (pairs at images 2i, 2i+1)")
    src.add_argument("--pairs", help="LFW pairs.txt (keys Name/Name_0001.jpg)")
    v.add_argument("--images", help="images root for --pairs (needs --checkpoint)")
    v.add_argument("--pairs-folds", metavar="FOLDS",
                   help="only the pairs of these folds of --pairs, e.g. 9,10 (the folds held out of training)")
    _feature_args(v, "for --pairs: one row per key; for --bin: one row per pack image, in pack order")
    v.add_argument("--folds", type=int, default=None,
                   help="cross-validation folds (default 10; with --pairs-folds naming ≥ 2 folds, one per named "
                        "fold, so each is one balanced protocol fold, as the 10 folds of LFW's View 2 are)")
    v.add_argument("--pca", type=int, default=0,
                   help="insightface's pca mode: refit PCA with N components on each fold's training pairs")
    _common(v)
    v.set_defaults(func=run_verification)

    t = verbs.add_parser("templates", help="template 1:1 TAR@FAR (IJB-A/IJB-C), optional CP/CQ filter")
    t.add_argument("--media", required=True, help="lines 'image template media [detector_score]'")
    t.add_argument("--pairs", required=True, help="lines 'template1 template2 label'")
    t.add_argument("--images", help="images root (with --checkpoint); media image names are relative to it")
    _feature_args(t, "one row per key; media image names are looked up in --keys")
    t.add_argument("--no-norm-weight", action="store_true",
                   help="L2-normalise image features before pooling (insightface use_norm_score=False)")
    t.add_argument("--detector-weight", choices=("auto", "on", "off"), default="auto",
                   help="weight image features by detector score (auto: when the media file has scores)")
    t.add_argument("--fars", default="1e-6,1e-5,1e-4,1e-3,1e-2,1e-1", help="comma-separated target FARs")
    t.add_argument("--attributes", help="per-image attribute table (CSV/TSV with header: image, yaw, quality…)")
    t.add_argument("--rule", choices=("yaw", "quality"), help="cross-pose (yaw) or cross-quality rule")
    t.add_argument("--gallery-threshold", type=float, help="override the rule's gallery threshold")
    t.add_argument("--probe-threshold", type=float, help="override the rule's probe threshold")
    _common(t)
    t.set_defaults(func=run_templates)

    i = verbs.add_parser("identification", help="1:N search with distractors: rank-1, CMC, TPIR@FPIR")
    i.add_argument("--probes", required=True, help="lines 'key identity'")
    i.add_argument("--gallery", required=True, help="lines 'key identity'")
    i.add_argument("--distractors", help="lines 'key' (identities not in the probe set)")
    i.add_argument("--images", help="images root (with --checkpoint)")
    _feature_args(i, "one row per key of the three lists")
    i.add_argument("--max-rank", type=int, default=100)
    i.add_argument("--fpirs", default="1e-3,1e-2,1e-1")
    _common(i)
    i.set_defaults(func=run_identification)


def _feature_args(p, features_help: str) -> None:
    p.add_argument("--features", help=f"float32 .npy features, {features_help}")
    p.add_argument("--keys", help="one image key per line, the row order of --features")
    p.add_argument("--checkpoint", help="embed images with this checkpoint (image + flip)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--landmarks", help="landmarks file for --images (a checkpoint trained with 5-point "
                                       "alignment; default: the one its config names)")


def _common(p) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", help="directory to write <protocol>.json into (templates --rule R: templates-R.json)")


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DmfrError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (0 < v <= 1) for v in values):
        raise DmfrError(f"{flag}: rates must be in (0, 1], got {text!r}")
    return values


def _feature_table(args, keys: list[str]):
    """Features for `keys`: from --features/--keys, or embedded with --checkpoint from --images."""
    from dmfr.eval.features import embed_image_files, load_feature_file

    if args.features or args.keys:
        if not (args.features and args.keys):
            raise DmfrError("--features and --keys go together")
        if args.checkpoint:
            raise DmfrError("give either --features/--keys or --checkpoint, not both")
        return load_feature_file(args.features, args.keys)
    if not (args.checkpoint and args.images):
        raise DmfrError("features needed: --features F.npy --keys K.txt, or --checkpoint CKPT --images DIR")
    unique = list(dict.fromkeys(keys))
    return embed_image_files(args.checkpoint, args.images, unique, args.device, args.batch_size,
                             args.landmarks)


def _to_tensorboard(args, name: str, result: dict) -> None:
    """An evaluation of a run's checkpoint goes to that run's TensorBoard event files too, at the
    checkpoint's step (dmfr/tensorboard_log.py): its top-level numbers, as `eval/<name>/<key>`."""
    from dmfr.tensorboard_log import checkpoint_run, write_evaluation

    found = checkpoint_run(args.checkpoint) if getattr(args, "checkpoint", None) else None
    if found is None:
        return
    run_dir, step = found
    log_dir = write_evaluation(run_dir, step, name, result)
    print(f"dmfr eval: {name} at step {step} → {log_dir}", file=sys.stderr)


def _emit(args, name: str, result: dict, summary: str) -> int:
    _to_tensorboard(args, name, result)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    if args.json:
        emit_json(result)
    else:
        print(summary)
        for note in result.get("notes", []):
            print(f"note: {note}")
    return 0


def run_verification(args) -> int:
    from dmfr.eval.verification import evaluate_embeddings

    if args.bin:
        from dmfr.data.binpack import read_bin

        if args.pairs_folds:
            raise DmfrError("--pairs-folds goes with --pairs, not --bin")
        if args.keys or args.images:
            raise DmfrError("--bin takes --checkpoint or --features (rows in pack order), not --keys/--images")
        images, issame = read_bin(args.bin)
        if args.features:
            if args.checkpoint:
                raise DmfrError("give either --features or --checkpoint, not both")
            feats = _load_npy(args.features)
            if feats.shape[0] != images.shape[0]:
                raise DataError(f"{args.features} has {feats.shape[0]} rows but {args.bin} has "
                                f"{images.shape[0]} images")
        elif args.checkpoint:
            from dmfr.eval.features import embed_uint8_images

            feats = embed_uint8_images(args.checkpoint, images, args.device, args.batch_size)
        else:
            raise DmfrError("--bin needs --checkpoint CKPT or --features F.npy")
        source = args.bin
    else:
        from dmfr.data.lfw import read_pairs_file

        pf = read_pairs_file(args.pairs)
        pairs = pf.pairs
        if args.pairs_folds:
            from dmfr.cli.data import _fold_list

            try:
                wanted = _fold_list(args.pairs_folds)
            except ValueError:
                raise DmfrError(f"--pairs-folds: expected folds like 9,10 or 1-8, got {args.pairs_folds!r}") from None
            bad = [f for f in wanted if not 1 <= f <= pf.folds]
            if bad:
                raise DmfrError(f"--pairs-folds: {args.pairs} has folds 1..{pf.folds}, not {bad[0]}")
            pairs = [p for i, p in enumerate(pf.pairs) if pf.fold_of(i) + 1 in wanted]
            if args.folds is None and len(wanted) >= 2:
                args.folds = len(wanted)  # one CV fold per protocol fold (a single fold: the default 10)
        elif args.pairs_folds is not None:
            raise DmfrError("--pairs-folds: name at least one fold")
        if not pairs:
            raise DataError(f"{args.pairs}: no pairs")
        keys = [k for a, b, _ in pairs for k in (a, b)]
        table = _feature_table(args, keys)
        rows = table.rows(keys, args.pairs, [f"pair {i // 2 + 1}" for i in range(len(keys))])
        feats = np.asarray(table.features)[rows]
        issame = np.array([s for _, _, s in pairs], dtype=bool)
        source = args.pairs
    n_folds = 10 if args.folds is None else args.folds
    result = evaluate_embeddings(feats, issame, n_folds=n_folds, pca=args.pca).to_json()
    result["source"] = source
    summary = (f"{source}: accuracy {result['accuracy']:.5f} ± {result['std']:.5f} "
               f"(stderr {result['stderr']:.5f}) over {result['n_pairs']} pairs; "
               f"VAL@FAR=1e-3 {_num(result['val_at_far_1e-3'])} (FAR {_num(result['far_at_val'])})")
    return _emit(args, "verification", result, summary)


def _num(value) -> str:
    return "undefined" if value is None else f"{value:.5f}"


def _load_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot load features (.npy expected): {exc}") from None
    if arr.ndim != 2:
        raise DataError(f"{path}: features must be 2-D [images, dims], got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def run_templates(args) -> int:
    from dmfr.eval.templates import evaluate_templates, read_media, read_template_pairs

    fars = _floats(args.fars, "--fars")
    media = read_media(args.media)
    pairs = read_template_pairs(args.pairs)
    table = _feature_table(args, media.images)
    feats = np.asarray(table.features)[table.rows(media.images, args.media, [f"line {n}" for n in media.lines])]
    detector = {"on": True, "off": False, "auto": media.scores is not None}[args.detector_weight]
    opts = dict(norm_weight=not args.no_norm_weight, detector_weight=detector)
    if args.attributes or args.rule:
        if not (args.attributes and args.rule):
            raise DmfrError("--attributes and --rule go together")
        from dmfr.eval.attributes import (attribute_values, evaluate_attribute_protocol, make_rule,
                                          read_attribute_table)

        rule = make_rule(args.rule, args.gallery_threshold, args.probe_threshold)
        values = attribute_values(media, read_attribute_table(args.attributes, rule.column), args.attributes)
        result = evaluate_attribute_protocol(media, pairs, feats, values, rule, fars, **opts)
        name = f"templates-{args.rule}"
    else:
        result = evaluate_templates(media, pairs, feats, fars, **opts)
        name = "templates"
    return _emit(args, name, result, _templates_summary(result))


def _templates_summary(result: dict) -> str:
    lines = []
    if "filter" in result:
        f = result["filter"]
        lines.append(f"{f['rule']['column']} filter: gallery templates {f['gallery_templates']['kept']}/"
                     f"{f['gallery_templates']['total']}, probe templates {f['probe_templates']['kept']}/"
                     f"{f['probe_templates']['total']}, pairs {f['pairs']['kept']}/{f['pairs']['total']} "
                     f"({f['pairs']['genuine_kept']} genuine)")
    if "tar_at_far" in result:
        lines.append(f"{result['n_pairs']} pairs ({result['n_genuine']} genuine, {result['n_impostor']} impostor)")
        lines.append(f"{'FAR':>6}  {'TAR nearest':>11} {'(FAR)':>10}  {'TAR threshold':>13} {'(FAR)':>10}")
        near, thr = result["tar_at_far"]["nearest"], result["tar_at_far"]["threshold"]
        for key in near:
            flag = "  *too few impostors" if near[key]["too_few_impostors"] else ""
            lines.append(f"{key:>6}  {near[key]['tar']:>11.5f} {near[key]['far']:>10.3g}  "
                         f"{thr[key]['tar']:>13.5f} {thr[key]['far']:>10.3g}{flag}")
    return "\n".join(lines)


def _read_list(path: str, with_identity: bool):
    keys, ids = [], []
    for n, parts in split_lines(path, "list"):
        want = 2 if with_identity else 1
        if len(parts) != want:
            raise DataError(f"{path}, line {n}: expected {'key identity' if with_identity else 'key'}, "
                            f"got {len(parts)} fields")
        keys.append(parts[0])
        if with_identity:
            ids.append(parts[1])
    if not keys:
        raise DataError(f"{path}: empty list")
    return keys, np.array(ids)


def run_identification(args) -> int:
    from dmfr.eval.identification import identify

    fpirs = _floats(args.fpirs, "--fpirs")
    pk, pid = _read_list(args.probes, True)
    gk, gid = _read_list(args.gallery, True)
    dk = _read_list(args.distractors, False)[0] if args.distractors else []
    table = _feature_table(args, pk + gk + list(dk))
    f = np.asarray(table.features)
    dist = f[table.rows(dk, args.distractors)] if dk else None
    result = identify(f[table.rows(pk, args.probes)], pid, f[table.rows(gk, args.gallery)], gid, dist,
                      max_rank=args.max_rank, fpirs=fpirs)
    summary = f"{result['n_probes']} probes ({result['n_mated']} mated), gallery {result['n_gallery']} + " \
              f"{result['n_distractors']} distractors"
    if "rank1" in result:
        summary += f"; rank-1 {result['rank1']:.5f}"
    for key, v in result.get("tpir_at_fpir", {}).items():
        summary += f"\nTPIR@FPIR={key}: {v['tpir']:.5f} (FPIR {v['fpir']:.3g})"
    return _emit(args, "identification", result, summary)
