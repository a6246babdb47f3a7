"""`dmfr analyze similarity|probe|fig5|curves`: the paper's analyses (Table 1, modality probe,
Fig. 5, Fig. 6). Tables go to DIR as Markdown and JSON, figures as PNG and SVG (+ JSON data).
Details: docs/evaluation.md."""
from __future__ import annotations

import json
import os

import numpy as np

from dmfr.cli._output import emit_json
from dmfr.errors import DataError, DmfrError


def register(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="the paper's analyses: Table 1, modality probe, Fig. 5, Fig. 6")
    verbs = p.add_subparsers(dest="analyze_verb", required=True)

    s = verbs.add_parser("similarity", help="Table 1: mean intra/inter-class cosine, real vs synthetic")
    _features(s)
    s.add_argument("--samples", required=True, help="lines 'key identity modality' (real|synthetic)")
    s.add_argument("--title", default="", help="the model's name in the table")
    s.add_argument("--apply-filter", action="store_true",
                   help="Table 1 'after filtering': pass synthetic samples' features through the filter "
                        "method's filter F (needs a filter-method --checkpoint with --images; no flip)")
    _outputs(s, required=False)
    s.set_defaults(func=run_similarity)

    pr = verbs.add_parser("probe", help="modality probe: cross-validated AUC of real vs synthetic")
    _features(pr)
    pr.add_argument("--samples", required=True, help="lines 'key identity modality' (real|synthetic)")
    pr.add_argument("--folds", type=int, default=5)
    pr.add_argument("--seed", type=int, default=0)
    _outputs(pr, required=False)
    pr.set_defaults(func=run_probe)

    f5 = verbs.add_parser("fig5", help="Fig. 5: per-dimension feature difference, real vs synthetic versions")
    _features(f5)
    f5.add_argument("--real", required=True, help="key of the real sample")
    f5.add_argument("--synthetic", required=True, nargs="+", metavar="[LABEL=]KEY",
                    help="keys of its synthetic versions, optionally labelled (e.g. 'dc=0.1=img_01.jpg')")
    _outputs(f5, required=True)
    f5.set_defaults(func=run_fig5)

    c = verbs.add_parser("curves", help="Fig. 6: loss curves by method and term; ROC curves")
    c.add_argument("run_dirs", nargs="*", default=[], metavar="[METHOD=]RUN_DIR",
                   help="run directories read directly (their dmfr.sqlite); named by the directory unless METHOD= is given")
    c.add_argument("--metrics", nargs="*", default=[], metavar="METHOD=PATH",
                   help="metrics records (JSON lines of `metrics` bodies, as `dmfr runs metrics` writes) per method")
    c.add_argument("--roc", nargs="*", default=[], metavar="NAME=RESULT.json",
                   help="`dmfr eval templates` results (their 'roc' field) per model")
    _outputs(c, required=True)
    c.set_defaults(func=run_curves)


def _features(p) -> None:
    p.add_argument("--features", help="float32 .npy features, one row per key")
    p.add_argument("--keys", help="one key per line, the row order of --features")
    p.add_argument("--checkpoint", help="embed images with this checkpoint (image + flip)")
    p.add_argument("--images", help="images root for --checkpoint; keys are paths relative to it")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)


def _outputs(p, required: bool) -> None:
    p.add_argument("--out", required=required, help="output directory")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _table(args, keys):
    from dmfr.cli.eval import _feature_table

    return _feature_table(args, keys)


def _write(out_dir: str, name: str, result: dict, markdown: str | None) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    if markdown is not None:
        with open(os.path.join(out_dir, f"{name}.md"), "w", encoding="utf-8") as fh:
            fh.write(markdown)


def _finish(args, name: str, result: dict, markdown: str | None) -> int:
    if args.out:
        _write(args.out, name, result, markdown)
    if args.json:
        emit_json(result)
    elif markdown:
        print(markdown, end="")
    return 0


def run_similarity(args) -> int:
    from dmfr.analysis.similarity import read_sample_labels, similarity_table, to_markdown

    keys, ids, mods = read_sample_labels(args.samples)
    if args.apply_filter:
        feats = _filtered_features(args, keys, mods == "synthetic")
    else:
        table = _table(args, keys)
        feats = np.asarray(table.features)[table.rows(keys, args.samples)]
    rows = similarity_table(feats, ids, mods)
    return _finish(args, "similarity", {"title": args.title, "rows": rows}, to_markdown(rows, args.title))


def _filtered_features(args, keys: list[str], synthetic: np.ndarray) -> np.ndarray:
    """Backbone features of every sample, with the filter method's F applied to the synthetic
    ones (paper, "Filter-based DMFR": F maps a synthetic sample's feature to a modality-free one)."""
    from dmfr.embed import Embedder

    if not (args.checkpoint and args.images) or args.features:
        raise DmfrError("--apply-filter needs --checkpoint CKPT --images DIR (the filter lives in the checkpoint)")
    from dmfr.analysis.table1 import apply_filter, has_filter

    embedder = Embedder.from_checkpoint(args.checkpoint, args.device)
    if not has_filter(embedder.model):
        raise DmfrError(f"{args.checkpoint}: --apply-filter needs a checkpoint of the filter method (no filter F in it)")
    paths = []
    for key in keys:
        path = os.path.join(args.images, key)
        if not os.path.isfile(path):
            raise DataError(f"{args.images}: image {key!r} not found")
        paths.append(path)
    feats = embedder.embed_paths(paths, flip=False, batch_size=args.batch_size)
    return apply_filter(embedder.model, feats, synthetic, embedder.device)


def run_probe(args) -> int:
    from dmfr.analysis.probe import modality_probe
    from dmfr.analysis.similarity import read_sample_labels

    keys, ids, mods = read_sample_labels(args.samples)
    table = _table(args, keys)
    feats = np.asarray(table.features)[table.rows(keys, args.samples)]
    result = modality_probe(feats, mods, ids, folds=args.folds, seed=args.seed)
    md = ("| probe | AUC | ± | folds | grouped by |\n|---|---|---|---|---|\n"
          f"| logistic regression, real vs synthetic | {result['auc']:.3f} | {result['auc_std']:.3f} | "
          f"{len(result['folds'])} | {result['grouped_by']} |\n")
    return _finish(args, "probe", result, md)


def _named(items: list[str], flag: str, default_name=None) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep:
            if default_name is None:
                raise DmfrError(f"{flag}: expected NAME=PATH, got {item!r}")
            name, value = default_name(value), value
        out.append((name, value))
    return out


def run_fig5(args) -> int:
    from dmfr.analysis.figures import plot_fig5

    versions = _named(args.synthetic, "--synthetic", default_name=lambda key: key)
    keys = [args.real] + [k for _, k in versions]
    table = _table(args, keys)
    rows = table.rows(keys, "--real/--synthetic", ["--real"] + [f"--synthetic {k}" for _, k in versions])
    feats = np.asarray(table.features)[rows]
    paths = plot_fig5(feats[0], {label: feats[i + 1] for i, (label, _) in enumerate(versions)},
                      os.path.join(args.out, "fig5"))
    print("\n".join(paths))
    return 0


def run_curves(args) -> int:
    from dmfr.analysis.figures import plot_loss_curves, plot_roc_curves, read_metrics

    from dmfr.run_metrics import read_run_metrics

    if not args.run_dirs and not args.metrics and not args.roc:
        raise DmfrError("curves: give RUN_DIR…, --metrics METHOD=PATH and/or --roc NAME=RESULT.json")
    written = []
    if args.run_dirs or args.metrics:
        name_of = lambda d: os.path.basename(os.path.normpath(d))  # noqa: E731
        runs = {name: read_run_metrics(d) for name, d in _named(args.run_dirs, "RUN_DIR", default_name=name_of)}
        runs.update({name: read_metrics(path) for name, path in _named(args.metrics, "--metrics")})
        written += plot_loss_curves(runs, os.path.join(args.out, "fig6_losses"))
    if args.roc:
        curves = {}
        for name, path in _named(args.roc, "--roc"):
            try:
                result = json.load(open(path, encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}: cannot read a templates result: {exc}") from None
            roc = result.get("roc") if isinstance(result, dict) else None
            if not (isinstance(roc, dict) and isinstance(roc.get("far"), list) and isinstance(roc.get("tar"), list)):
                raise DataError(f"{path}: no 'roc' field with 'far' and 'tar' lists (a `dmfr eval templates` result?)")
            curves[name] = roc
        written += plot_roc_curves(curves, os.path.join(args.out, "fig6_roc"))
    print("\n".join(written))
    return 0
