"""Template 1:1 verification (IJB-A / IJB-C style), insightface's `eval_ijbc.py` conventions.

- Meta formats (insightface's IJB files): MEDIA lines `image template media [detector_score]`
  (their `ijbc_face_tid_mid.txt`, with the detector score of `ijbc_name_5pts_score.txt` as an
  optional 4th column); PAIRS lines `template1 template2 label` (`ijbc_template_pair_label.txt`).
- Image features: image + flip embeddings summed (`use_flip_test`). With norm weighting
  (`use_norm_score`, insightface's default) they are pooled unnormalised so larger norms weigh
  more; without it each is L2-normalised first. With detector weighting (`use_detector_score`)
  each image feature is multiplied by its detector score.
- Pooling (`image2template_feature`): the images of one media (frames of a video) are averaged;
  a template is the sum of its media, L2-normalised. Written as one sparse product W @ F with
  W[t, i] = weight_i / |media(i)|, so the image features are never copied.
- Score: cosine, the dot product of the normalised templates (`verification`), in bounded memory
  at IJB-C scale (15.6 M pairs): blocks of the template score matrix by BLAS products when the
  pairs are dense enough, else chunked row gathers (`score_pairs`).
- TAR@FAR by both read-offs of `dmfr.eval.roc`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmfr.errors import DataError
from dmfr.textfile import split_lines
from dmfr.eval.roc import FAR_TARGETS, tar_at_far

ROC_POINTS = 60  # the thinned ROC stored with every template result (Fig. 6)
SCORE_CHUNK = 8192  # pairs per gather: 2 × 8192 × 512 × 4 B = 32 MB of gathered rows


@dataclass
class MediaTable:
    images: list
    templates: np.ndarray   # int64 per image
    medias: np.ndarray      # int64 per image
    scores: np.ndarray | None  # detector score per image, when the file has a 4th column
    path: str
    lines: np.ndarray | None = None  # line number of each image in the file


@dataclass
class TemplatePairs:
    t1: np.ndarray
    t2: np.ndarray
    labels: np.ndarray  # bool
    path: str


def read_media(path: str) -> MediaTable:
    images, templates, medias, scores, line_numbers = [], [], [], [], []
    for n, parts in split_lines(path, "media file"):
        if len(parts) not in (3, 4):
            raise DataError(f"{path}, line {n}: expected 'image template media [detector_score]', "
                            f"got {len(parts)} fields")
        try:
            templates.append(int(parts[1]))
            medias.append(int(parts[2]))
            if len(parts) == 4:
                scores.append(float(parts[3]))
        except ValueError:
            raise DataError(f"{path}, line {n}: template and media must be integers"
                            f"{' and the detector score a number' if len(parts) == 4 else ''}: "
                            f"{' '.join(parts)!r}") from None
        if len(parts) == 4 and len(scores) != len(templates):
            raise DataError(f"{path}, line {n}: detector score present here but missing on earlier lines")
        if len(parts) == 3 and scores:
            raise DataError(f"{path}, line {n}: detector score missing (earlier lines have one)")
        images.append(parts[0])
        line_numbers.append(n)
    if not images:
        raise DataError(f"{path}: no media lines")
    return MediaTable(images, np.array(templates, np.int64), np.array(medias, np.int64),
                      np.array(scores, np.float64) if scores else None, path, np.array(line_numbers))


def read_template_pairs(path: str) -> TemplatePairs:
    try:
        arr = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except OSError as exc:
        raise DataError(f"{path}: cannot read pairs file: {exc}") from None
    except ValueError as exc:  # the fast parser failed: find the line again, with its number
        raise DataError(_first_bad_pairs_line(path) or f"{path}: malformed pairs file: {exc}") from None
    if arr.size == 0:
        raise DataError(f"{path}: no pairs")
    if arr.shape[1] != 3:
        raise DataError(f"{path}: expected 3 fields 'template1 template2 label' per line, got {arr.shape[1]}")
    bad = np.flatnonzero((arr[:, 2] != 0) & (arr[:, 2] != 1))
    if bad.size:
        raise DataError(f"{path}, pair {bad[0] + 1}: label must be 0 or 1, got {arr[bad[0], 2]}")
    ids = arr[:, :2]
    narrow = ids.min() >= np.iinfo(np.int32).min and ids.max() <= np.iinfo(np.int32).max
    dtype = np.int32 if narrow else np.int64  # IJB-C: 15.6 M pairs, 62 MB per column as int32
    return TemplatePairs(arr[:, 0].astype(dtype), arr[:, 1].astype(dtype), arr[:, 2] == 1, path)


def _first_bad_pairs_line(path: str) -> str | None:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 3 or not all(p.lstrip("+-").isdigit() for p in parts):
                return f"{path}, line {n}: expected 'template1 template2 label' (integers), got {' '.join(parts)!r}"
    return None


def pooling_weights(media: MediaTable, features: np.ndarray, *, norm_weight: bool = True,
                    detector_weight: bool = False, image_mask: np.ndarray | None = None):
    """Sparse W [templates × images] so that W @ features is every template's unnormalised sum.

    Returns (template_ids sorted, W as scipy CSR, images kept per template)."""
    from scipy import sparse

    n = len(media.images)
    weight = np.ones(n, dtype=np.float64)
    if image_mask is not None:
        weight[~image_mask] = 0.0
    if detector_weight:
        if media.scores is None:
            raise DataError(f"{media.path}: detector-score weighting needs a 4th column (detector_score)")
        weight *= media.scores
    if not norm_weight:
        norms = np.linalg.norm(features, axis=1).astype(np.float64)
        weight = np.divide(weight, norms, out=np.zeros_like(weight), where=norms > 0)
    kept = np.ones(n, dtype=bool) if image_mask is None else np.asarray(image_mask, dtype=bool)
    template_ids, t_row = np.unique(media.templates, return_inverse=True)
    # media groups: (template, media) pairs; each image's weight is divided by its group's kept size
    _, group = np.unique(np.stack([t_row, media.medias]), axis=1, return_inverse=True)
    group = group.ravel()
    group_size = np.bincount(group, weights=kept.astype(np.float64))
    per_image = np.divide(weight, group_size[group], out=np.zeros_like(weight), where=group_size[group] > 0)
    per_image[~kept] = 0.0
    W = sparse.csr_matrix((per_image, (t_row, np.arange(n))), shape=(template_ids.size, n))
    kept_per_template = np.bincount(t_row, weights=kept.astype(np.float64), minlength=template_ids.size)
    return template_ids, W, kept_per_template.astype(np.int64)


def template_features(media: MediaTable, features: np.ndarray, **options):
    """(template ids, L2-normalised template features float32, bool: template has kept images)."""
    template_ids, W, kept = pooling_weights(media, features, **options)
    pooled = np.asarray(W @ np.asarray(features, dtype=np.float32), dtype=np.float64)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    valid = (kept > 0) & (norms[:, 0] > 0)
    pooled = np.divide(pooled, norms, out=np.zeros_like(pooled), where=norms > 0)
    return template_ids, pooled.astype(np.float32), valid


def template_rows(template_ids: np.ndarray, wanted: np.ndarray, where: str) -> np.ndarray:
    rows = np.searchsorted(template_ids, wanted)
    rows = np.minimum(rows, template_ids.size - 1)
    missing = np.flatnonzero(template_ids[rows] != wanted)
    if missing.size:
        raise DataError(f"{where}, pair {missing[0] + 1}: template {wanted[missing[0]]} is not in the media file")
    return rows


def score_pairs(feats_a: np.ndarray, rows_a: np.ndarray, feats_b: np.ndarray, rows_b: np.ndarray,
                chunk: int = SCORE_CHUNK) -> np.ndarray:
    """scores[i] = feats_a[rows_a[i]] · feats_b[rows_b[i]], in bounded memory.

    When the pairs cover a good share of all (row_a, row_b) combinations — IJB-C pairs each
    enrolment template with a large part of the probe templates — blocks of the score matrix are
    computed by matrix products (BLAS) and the wanted entries picked out; otherwise (sparse pairs)
    the two rows of every pair are gathered and multiplied, chunk by chunk."""
    rows_a = np.asarray(rows_a)
    rows_b = np.asarray(rows_b)
    feats_a = np.asarray(feats_a, dtype=np.float32)
    feats_b = np.asarray(feats_b, dtype=np.float32)
    used_a = np.bincount(rows_a, minlength=feats_a.shape[0]) > 0
    used_b = np.bincount(rows_b, minlength=feats_b.shape[0]) > 0
    n_a, n_b = int(used_a.sum()), int(used_b.sum())
    if rows_a.size and rows_a.size >= DENSE_SHARE * n_a * n_b:
        if n_a > n_b:  # block over the side with fewer distinct templates
            return _score_dense(feats_b, rows_b, used_b, feats_a, rows_a, used_a)
        return _score_dense(feats_a, rows_a, used_a, feats_b, rows_b, used_b)
    return _score_gather(feats_a, rows_a, feats_b, rows_b, chunk)


DENSE_SHARE = 0.03        # pairs / (distinct a × distinct b) above which block products win
DENSE_BLOCK_BYTES = 64 << 20  # one block of the score matrix
DENSE_MAX_BLOCKS = 64     # each block costs one pass over the pairs' block ids


def _score_dense(feats_a, rows_a, used_a, feats_b, rows_b, used_b) -> np.ndarray:
    ids_a = np.flatnonzero(used_a)
    ids_b = np.flatnonzero(used_b)
    local_a = (np.cumsum(used_a, dtype=np.int64) - 1).astype(np.int32)  # feats row -> used position
    local_b = (np.cumsum(used_b, dtype=np.int64) - 1).astype(np.int32)
    block = max(-(-ids_a.size // DENSE_MAX_BLOCKS), 1)
    block = min(block, max(DENSE_BLOCK_BYTES // (4 * ids_b.size), 1))
    n_blocks = -(-ids_a.size // block)
    block_of = np.empty(rows_a.size, dtype=np.uint16 if n_blocks < 65536 else np.int32)
    for start in range(0, rows_a.size, 1 << 20):  # in slices: no full-length int64 temporaries
        block_of[start:start + (1 << 20)] = local_a[rows_a[start:start + (1 << 20)]] // block
    fb = np.ascontiguousarray(feats_b[ids_b], dtype=np.float32).T  # [d, distinct b]
    out = np.empty(rows_a.size, dtype=np.float32)
    for k in range(n_blocks):
        idx = np.flatnonzero(block_of == k)
        if idx.size == 0:
            continue
        rows = ids_a[k * block:(k + 1) * block]
        scores = np.asarray(feats_a[rows], dtype=np.float32) @ fb  # [block, distinct b]
        out[idx] = scores[local_a[rows_a[idx]] - k * block, local_b[rows_b[idx]]]
    return out


def _score_gather(feats_a, rows_a, feats_b, rows_b, chunk) -> np.ndarray:
    n = rows_a.size
    d = feats_a.shape[1]
    out = np.empty(n, dtype=np.float32)
    buf_a = np.empty((chunk, d), dtype=feats_a.dtype)
    buf_b = np.empty((chunk, d), dtype=feats_b.dtype)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        m = stop - start
        np.take(feats_a, rows_a[start:stop], axis=0, out=buf_a[:m])
        np.take(feats_b, rows_b[start:stop], axis=0, out=buf_b[:m])
        np.einsum("ij,ij->i", buf_a[:m], buf_b[:m], out=out[start:stop])
    return out


def evaluate_templates(media: MediaTable, pairs: TemplatePairs, features: np.ndarray,
                       fars=FAR_TARGETS, *, norm_weight: bool = True, detector_weight: bool = False) -> dict:
    """features: one row per line of the media file."""
    if features.shape[0] != len(media.images):
        raise DataError(f"{media.path}: {len(media.images)} images but {features.shape[0]} feature rows")
    ids, tf, valid = template_features(media, features, norm_weight=norm_weight,
                                       detector_weight=detector_weight)
    r1 = template_rows(ids, pairs.t1, pairs.path)
    r2 = template_rows(ids, pairs.t2, pairs.path)
    bad = np.flatnonzero(~valid[r1] | ~valid[r2])
    if bad.size:
        t = pairs.t1[bad[0]] if not valid[r1[bad[0]]] else pairs.t2[bad[0]]
        raise DataError(f"{pairs.path}, pair {bad[0] + 1}: template {t} has no usable feature (all zero)")
    scores = score_pairs(tf, r1, tf, r2)
    result = tar_at_far(scores, pairs.labels, fars, roc_points=ROC_POINTS)
    result.update({"n_pairs": int(scores.size), "n_templates": int(ids.size),
                   "options": {"norm_weight": norm_weight, "detector_weight": detector_weight}})
    return result
