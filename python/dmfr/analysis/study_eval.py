"""One finished study cell, evaluated once: TAR at each FAR on the procedural protocols, on
pairs files (with LFW-style accuracy) and on template files; the paper's Table 1 similarities on
the training samples; the final loss terms and their curves (Fig. 6) from the run's store.

Features are cached next to the run (`<run_dir>/eval/features-<set>-<checkpoint>.npy`), so a
re-evaluation (e.g. a new FAR) does not embed again. TAR is the PFE threshold read-off the DMFR
authors' evaluator uses (dmfr.eval.roc); verification accuracy is insightface's 10-fold protocol
(dmfr.eval.verification). docs/studies.md lists the metric names.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np

from dmfr.errors import DataError
from dmfr.eval.features import image_paths
from dmfr.eval.roc import far_label, tar_at_far

LOSS_WINDOW = 20  # the final loss terms: mean of the last 20 logged steps
ROC_POINTS = 30
CURVE_POINTS = 200


class _Features:
    """Embeds with the checkpoint's model on first use; caches each set's features as .npy."""

    def __init__(self, checkpoint: Path, cache_dir: Path):
        self.checkpoint = checkpoint
        self.cache_dir = cache_dir
        self._embedder = None

    @property
    def embedder(self):
        if self._embedder is None:
            from dmfr.embed import Embedder

            self._embedder = Embedder.from_checkpoint(self.checkpoint)
        return self._embedder

    def get(self, name: str, compute) -> np.ndarray:
        path = self.cache_dir / f"features-{name}-{self.checkpoint.stem}.npy"
        if path.exists():
            return np.load(path, allow_pickle=False)
        from dmfr.checkpoint import atomic_write

        feats = np.asarray(compute(), dtype=np.float32)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.save(f, feats, allow_pickle=False))
        return feats


TAR_PREFIX = "tar_at_far_"
TOO_FEW_IMPOSTORS = "too_few_impostors"


def tar_metric(protocol: str, far: float) -> str:
    """The report's name of TAR at one FAR on one protocol: `cross_pose/tar_at_far_1e-3`."""
    return f"{protocol}/{TAR_PREFIX}{far_label(far)}"


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _tars(scores: np.ndarray, issame: np.ndarray, fars, prefix: str, metrics: dict, rocs: dict, flags: dict) -> None:
    """TAR at each FAR; a FAR the set cannot measure (FAR · impostors < 1, the read-off's
    `too_few_impostors`) is flagged, and the report makes no claim on it."""
    res = tar_at_far(scores, issame, fars, roc_points=ROC_POINTS)
    for far in fars:
        point = res["tar_at_far"]["threshold"][far_label(far)]
        metrics[tar_metric(prefix, far)] = float(point["tar"])
        if point.get("too_few_impostors"):
            flags[tar_metric(prefix, far)] = TOO_FEW_IMPOSTORS
    if "roc" in res:
        rocs[prefix] = res["roc"]


def _procedural(config: dict, protocols, fars, feats: _Features, metrics: dict, rocs: dict, flags: dict, cache_dir) -> None:
    from dmfr.data import procedural

    for protocol in protocols:
        ts = procedural.build_test_set(config, protocol, cache_dir=cache_dir)
        f = _unit(feats.get(protocol, lambda: feats.embedder.embed_images(list(ts.images), flip=True)))
        scores = np.einsum("pd,pd->p", f[ts.pairs[:, 0]], f[ts.pairs[:, 1]])
        _tars(scores, ts.issame, fars, protocol, metrics, rocs, flags)


def _verification(entry: dict, fars, feats: _Features, metrics: dict, rocs: dict, flags: dict) -> None:
    """`folds`: only those folds of the pairs file (as `dmfr eval verification --pairs-folds`), with
    one cross-validation fold per named fold when ≥ 2 are named, else insightface's 10."""
    from dmfr.data.lfw import read_pairs_file
    from dmfr.eval.verification import evaluate_embeddings

    pf = read_pairs_file(entry["pairs"])
    pairs, n_folds = pf.pairs, 10
    if entry.get("folds"):
        wanted = [int(f) for f in entry["folds"]]
        bad = [f for f in wanted if not 1 <= f <= pf.folds]
        if bad:
            raise DataError(f"eval.verification {entry['name']}: {entry['pairs']} has folds 1..{pf.folds}, not {bad[0]}")
        pairs = [p for i, p in enumerate(pf.pairs) if pf.fold_of(i) + 1 in wanted]
        n_folds = len(wanted) if len(wanted) >= 2 else 10
    if not pairs:
        raise DataError(f"{entry['pairs']}: no pairs")
    keys = list(dict.fromkeys(k for a, b, _ in pairs for k in (a, b)))
    table = feats.get(entry["name"], lambda: feats.embedder.embed_paths(image_paths(entry["images"], keys), flip=True, keys=keys))
    row = {k: i for i, k in enumerate(keys)}
    emb = table[[row[k] for a, b, _ in pairs for k in (a, b)]]
    issame = np.array([s for _, _, s in pairs], dtype=bool)
    metrics[f"{entry['name']}/accuracy"] = float(evaluate_embeddings(emb, issame, n_folds=n_folds).to_json()["accuracy"])
    u = _unit(emb)
    _tars(np.einsum("pd,pd->p", u[0::2], u[1::2]), issame, fars, entry["name"], metrics, rocs, flags)


def _templates(entry: dict, fars, feats: _Features, metrics: dict, flags: dict) -> None:
    from dmfr.eval.templates import evaluate_templates, read_media, read_template_pairs

    media = read_media(entry["media"])
    pairs = read_template_pairs(entry["pairs"])
    keys = list(dict.fromkeys(media.images))
    table = feats.get(entry["name"], lambda: feats.embedder.embed_paths(image_paths(entry["images"], keys), flip=True, keys=keys))
    row = {k: i for i, k in enumerate(keys)}
    result = evaluate_templates(media, pairs, table[[row[k] for k in media.images]], fars,
                                detector_weight=media.scores is not None)
    for far in fars:
        point = result["tar_at_far"]["threshold"][far_label(far)]
        metrics[tar_metric(entry["name"], far)] = float(point["tar"])
        if point.get("too_few_impostors"):
            flags[tar_metric(entry["name"], far)] = TOO_FEW_IMPOSTORS


def _similarity(config: dict, feats: _Features, metrics: dict) -> dict:
    """Table 1 (paper, § Analysis): intra/inter-class cosine by modality on the training samples,
    in the space the paper reads each model in (dmfr.analysis.table1.model_features): H(x), and for
    a filter model F(H(x)) on the synthetic samples ("After filtering")."""
    from dmfr.analysis.similarity import similarity_table
    from dmfr.analysis.table1 import FILTERED, PLAIN, has_filter, model_features
    from dmfr.data import procedural

    train_set = procedural.build_train_set(config)
    modality = np.where(train_set.domains == 0, "real", "synthetic")
    space = FILTERED if has_filter(feats.embedder.model) else PLAIN
    name = "train-filtered" if space == FILTERED else "train"
    f = feats.get(name, lambda: model_features(feats.embedder, train_set.images, modality == "synthetic")[0])
    table = similarity_table(f, train_set.labels, modality)
    table["feature_space"] = space
    for mod, row in table.items():
        if not isinstance(row, dict):
            continue
        for kind, key in (("intra", "intraclass"), ("inter", "interclass")):
            if row.get(key) is not None:
                metrics[f"table1/{mod}/{kind}"] = float(row[key])
    return table


def loss_curves(run_dir: Path) -> dict:
    """{term: {"step": [...], "value": [...]}} of `loss` and each method term (stored as terms.<name>),
    the latest run's value winning where a resumed run repeated a step."""
    db_path = run_dir / "dmfr.sqlite"
    if not db_path.exists():
        raise DataError(f"{run_dir}: no run store (dmfr.sqlite)")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT m.name, m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
                          "WHERE m.name = 'loss' OR m.name LIKE 'terms.%' ORDER BY r.created_at, r.rowid").fetchall()
    finally:
        db.close()
    series: dict[str, dict[int, float]] = {}
    for name, step, value in rows:
        if value is not None:
            series.setdefault(name.removeprefix("terms."), {})[int(step)] = float(value)
    return {term: {"step": sorted(v), "value": [v[s] for s in sorted(v)]} for term, v in series.items()}


def _thin(curve: dict) -> dict:
    n = len(curve["step"])
    if n <= CURVE_POINTS:
        return curve
    idx = np.unique(np.linspace(0, n - 1, CURVE_POINTS).round().astype(int))
    return {"step": [curve["step"][i] for i in idx], "value": [curve["value"][i] for i in idx]}


def evaluate_cell(run_dir: str | os.PathLike, checkpoint: str | os.PathLike, spec: dict,
                  cache_dir: str | os.PathLike | None = None) -> dict:
    """`spec`: the study's eval section (protocols, fars, verification, templates, similarity);
    `cache_dir`: where the procedural test sets are kept on disk, shared by the study's cells."""
    from dmfr.checkpoint import load_checkpoint

    run_dir, checkpoint = Path(run_dir), Path(checkpoint)
    config = load_checkpoint(checkpoint)["config"]
    feats = _Features(checkpoint, run_dir / "eval")
    metrics: dict[str, float] = {}
    rocs: dict[str, dict] = {}
    flags: dict[str, str] = {}
    fars = [float(f) for f in spec.get("fars", [1e-3, 1e-2])]
    procedural = config["data"]["kind"] == "procedural"
    if spec.get("protocols"):
        if not procedural:
            raise DataError(f"eval.protocols {spec['protocols']} need data.kind procedural, the cell trains on "
                            f"{config['data']['kind']} data: evaluate it with eval.verification or eval.templates")
        _procedural(config, spec["protocols"], fars, feats, metrics, rocs, flags, cache_dir)
    for entry in spec.get("verification", []):
        _verification(entry, fars, feats, metrics, rocs, flags)
    for entry in spec.get("templates", []):
        _templates(entry, fars, feats, metrics, flags)
    table1 = _similarity(config, feats, metrics) if spec.get("similarity", True) and procedural else None
    curves = loss_curves(run_dir)
    for term, c in curves.items():
        tail = c["value"][-LOSS_WINDOW:]
        if tail:
            metrics[f"loss/{term}"] = float(np.mean(tail))
    return {"checkpoint": str(checkpoint), "metrics": metrics, "flags": flags, "roc": rocs, "table1": table1,
            "loss_curves": {t: _thin(c) for t, c in curves.items()}}


def write_json(path: str | os.PathLike, value) -> None:
    """Strict JSON (no NaN), written to a temp file, fsynced and renamed over `path`; no torch
    import, so the report stays quick to start."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=1, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
