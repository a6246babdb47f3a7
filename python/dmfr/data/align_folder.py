"""`dmfr data align --from DIR --out DIR`: detect, landmark and align every image of a folder.

Each image is decoded (grey photographs become 3 equal channels, dmfr.data.images), its face and
5 landmarks are found (dmfr.data.detect: dlib, weights inside PyPI packages), and it is warped to
insightface's ArcFace template at --image-size (dmfr.data.align.norm_crop, insightface
face_align.norm_crop). The output keeps the input's layout and file names (so an LFW pairs.txt
reads on it unchanged) and holds:
  - the aligned images (the input's format by extension; JPEG at quality 95);
  - `landmarks.txt`: `KEY x1 y1 … x5 y5` in the *source* image's pixels (keys relative to --from),
    the file `data.preprocess.landmarks` reads, for training on the original images instead;
  - `align-report.txt`: one line per image where no face was found (also printed), and per image
    that could not be read.
An image without a face is, with `--fallback mean` (default), aligned with the mean landmarks of
the faces found in the folder (for a folder of like-framed photographs such as LFW, the usual
place of the face) and reported; with `--fallback none` it is left out and reported. The output
is built in a temporary folder beside --out and renamed into place at the end: an interrupted or
failed run leaves nothing half-written.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from dmfr.errors import DataError
from dmfr.data.staging import staged_folder

_detector = None


def _init(upsample: int) -> None:
    global _detector
    from dmfr.data.detect import FaceDetector

    _detector = FaceDetector(upsample)


def _landmarks_of(path: str):
    """(landmarks [5, 2] or None, error text or None) for one image."""
    from dmfr.data.images import load_image

    try:
        img = load_image(path)
    except DataError as exc:
        return None, str(exc)
    return _detector.detect(img), None


def _list_images(root: str) -> list[str]:
    from dmfr.data.folder import is_image_name

    keys = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and is_image_name(name):
                keys.append(os.path.relpath(os.path.join(dirpath, name), root))
    return keys


def _save(img: np.ndarray, path: str, grey: bool) -> None:
    from PIL import Image

    pil = Image.fromarray(img, mode="RGB")
    if grey:
        pil = pil.convert("L")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    pil.save(path, **({"quality": 95} if ext in (".jpg", ".jpeg") else {}))


def align_folder(src: str, out: str, image_size: int = 112, fallback: str = "mean", upsample: int = 1,
                 jobs: int = 1, report=sys.stderr) -> dict:
    from dmfr.data.align import norm_crop
    from dmfr.data.images import load_image

    if not os.path.isdir(src):
        raise DataError(f"{src}: not a folder")
    if os.path.abspath(src) == os.path.abspath(out):
        raise DataError(f"--out {out}: must differ from --from")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise DataError(f"{out}: already exists and is not an empty folder; give a new folder")
    if fallback not in ("mean", "none"):
        raise DataError(f"--fallback: expected mean or none, got {fallback!r}")
    keys = _list_images(src)
    if not keys:
        raise DataError(f"{src}: no images found")
    paths = [os.path.join(src, k) for k in keys]
    if jobs > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(jobs, initializer=_init, initargs=(upsample,)) as pool:
            found = pool.map(_landmarks_of, paths, chunksize=16)
    else:
        _init(upsample)
        found = [_landmarks_of(p) for p in paths]
    unreadable = [(k, err) for k, (_, err) in zip(keys, found) if err]
    missed = [k for k, (lm, err) in zip(keys, found) if lm is None and not err]
    good = [lm for lm, _ in found if lm is not None]
    mean = np.mean(good, axis=0) if good else None
    if fallback == "mean" and missed and mean is None:
        raise DataError(f"{src}: no face found in any of its {len(keys)} images")
    lines, report_lines, written = [], [], 0
    with staged_folder(out) as tmp:
        for key, (lm, err) in zip(keys, found):
            if err:
                report_lines.append(f"{os.path.join(src, key)}: unreadable, left out: {err}")
                continue
            if lm is None:
                if fallback == "none":
                    report_lines.append(f"{os.path.join(src, key)}: no face found, left out")
                    continue
                report_lines.append(f"{os.path.join(src, key)}: no face found, aligned with the folder's "
                                    f"mean landmarks")
                lm = mean
            else:
                lines.append(key + " " + " ".join(f"{v:.2f}" for v in lm.reshape(-1)))
            img = load_image(os.path.join(src, key))
            grey = bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())
            _save(norm_crop(img, lm, image_size), os.path.join(tmp, key), grey)
            written += 1
        with open(os.path.join(tmp, "landmarks.txt"), "w", encoding="utf-8") as fh:
            fh.write("# image x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 (source pixels; dmfr data align, dlib 68→5)\n")
            fh.write("".join(ln + "\n" for ln in lines))
        with open(os.path.join(tmp, "align-report.txt"), "w", encoding="utf-8") as fh:
            fh.write("".join(ln + "\n" for ln in report_lines))
    for ln in report_lines:
        print(ln, file=report)
    return {"images": len(keys), "aligned": written, "faces_found": len(good), "no_face": len(missed),
            "unreadable": len(unreadable), "out": out, "image_size": image_size}
