"""Preprocessing that travels with the model: the `data.preprocess` config section.

One of (docs/data.md "Crop and alignment"):
  - `crop_center: [w, h]`: the w x h box at the centre of each image (LFW's 250x250 frames hold
    the face in the middle; the box starts at ((W - w) // 2, (H - h) // 2));
  - `crop_box: [x, y, w, h]`: a fixed box in source pixels;
  - `landmarks: FILE`: 5-point similarity alignment to insightface's ArcFace template at
    `data.image_size` (`dmfr.data.align.norm_crop`, insightface face_align.norm_crop) with each
    image's landmarks from FILE.
The cropped image is then resized to `data.image_size` as before (dmfr.data.images). The trainer
stores the whole config in every checkpoint (dmfr.checkpoint), so `eval`, `embed`, `export` and
the service rebuild the same Preprocessor from it (dmfr.embed.Embedder) without being told again.

Landmarks file: one image per line, `KEY x1 y1 x2 y2 x3 y3 x4 y4 x5 y5` — KEY the image path
relative to the images root (the dataset folder at training, `--images` at evaluation), then the
left eye, right eye, nose tip, left and right mouth corner (as they appear in the image) in
source pixels (insightface's 5-point order, what `dmfr data align` writes). Blank lines and `#`
comments are skipped.
"""
from __future__ import annotations

import os

import numpy as np

from dmfr.errors import ConfigError, DataError

DEFAULT_PREPROCESS = {"crop_center": [], "crop_box": [], "landmarks": ""}


def read_landmarks(path: str) -> dict[str, np.ndarray]:
    """{key: float64 [5, 2]}; a malformed or repeated row is an error naming the file and line."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read landmarks file: {exc}") from None
    table: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rstrip().rsplit(None, 10)
        if len(fields) != 11:
            raise DataError(f"{path}:{n}: expected 'image x1 y1 x2 y2 x3 y3 x4 y4 x5 y5' (an image and 10 "
                            f"numbers), got {len(fields)} fields")
        key = fields[0].strip()
        try:
            values = np.array([float(v) for v in fields[1:]], dtype=np.float64)
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_float(v))
            raise DataError(f"{path}:{n}: landmark value {bad!r} is not a number") from None
        if not np.isfinite(values).all():
            raise DataError(f"{path}:{n}: landmark values must be finite, got {' '.join(fields[1:])}")
        key = os.path.normpath(key)
        if key in first_line:
            raise DataError(f"{path}:{n}: image {key!r} already has landmarks on line {first_line[key]}")
        first_line[key] = n
        table[key] = values.reshape(5, 2)
    if not table:
        raise DataError(f"{path}: the landmarks file has no rows")
    return table


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _ints(value, n: int, field: str) -> list[int] | None:
    if value in (None, [], ()):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(isinstance(v, int) for v in value):
        raise ConfigError(f"data.preprocess.{field}: expected {n} integers, got {value!r}")
    return [int(v) for v in value]


class Preprocessor:
    """Crop or align one decoded RGB uint8 image; `key` (path relative to the images root) finds
    its landmarks, `where` (its path) names it in errors."""

    def __init__(self, config: dict | None, image_size: int, landmarks_override: str | None = None):
        cfg = {**DEFAULT_PREPROCESS, **(config or {})}
        unknown = set(cfg) - set(DEFAULT_PREPROCESS)
        if unknown:
            raise ConfigError(f"data.preprocess: unknown field(s) {', '.join(sorted(unknown))}")
        self.image_size = int(image_size)
        self.center = _ints(cfg["crop_center"], 2, "crop_center")
        self.box = _ints(cfg["crop_box"], 4, "crop_box")
        self.landmarks_path = cfg["landmarks"] or None
        if landmarks_override:
            if not self.landmarks_path:
                raise ConfigError("--landmarks: this model was trained without landmark alignment "
                                  "(its data.preprocess.landmarks is empty)")
            self.landmarks_path = landmarks_override
        chosen = [n for n, v in (("crop_center", self.center), ("crop_box", self.box),
                                 ("landmarks", self.landmarks_path)) if v]
        if len(chosen) > 1:
            raise ConfigError(f"data.preprocess: give one of crop_center, crop_box, landmarks, not "
                              f"{' and '.join(chosen)}")
        for name, vals, at in (("crop_center", self.center, 0), ("crop_box", self.box, 2)):
            if vals and any(v < 1 for v in vals[at:]):
                raise ConfigError(f"data.preprocess.{name}: width and height must be ≥ 1, got {vals}")
        if self.box and (self.box[0] < 0 or self.box[1] < 0):
            raise ConfigError(f"data.preprocess.crop_box: x and y must be ≥ 0, got {self.box}")
        self._landmarks: dict[str, np.ndarray] | None = None

    @classmethod
    def from_data_config(cls, data: dict, landmarks_override: str | None = None) -> "Preprocessor | None":
        """None when the config asks for no preprocessing (a checkpoint from before this section)."""
        pre = cls(data.get("preprocess"), data.get("image_size", 112), landmarks_override)
        return pre if pre.active else None

    @property
    def active(self) -> bool:
        return bool(self.center or self.box or self.landmarks_path)

    def describe(self) -> str:
        if self.center:
            return f"centre crop {self.center[0]}x{self.center[1]}"
        if self.box:
            x, y, w, h = self.box
            return f"crop box {w}x{h} at ({x}, {y})"
        if self.landmarks_path:
            return f"5-point alignment to the ArcFace template, landmarks from {self.landmarks_path}"
        return "none"

    @property
    def landmarks(self) -> dict[str, np.ndarray]:
        if self._landmarks is None:
            self._landmarks = read_landmarks(self.landmarks_path)
        return self._landmarks

    def check_keys(self, keys, where: str) -> None:
        """Fail before training/embedding when an image has no landmarks row."""
        if not self.landmarks_path:
            return
        missing = [k for k in keys if os.path.normpath(k) not in self.landmarks]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{self.landmarks_path}: no landmarks for image {missing[0]!r} of {where}{more}")

    def __call__(self, img: np.ndarray, key: str | None, where: str) -> np.ndarray:
        h, w = img.shape[:2]
        if self.landmarks_path:
            from dmfr.data.align import norm_crop

            if key is None:
                raise DataError(f"{where}: landmark alignment needs image paths (a folder or list file)")
            lm = self.landmarks.get(os.path.normpath(key))
            if lm is None:
                raise DataError(f"{self.landmarks_path}: no landmarks for image {key!r} ({where})")
            try:
                return norm_crop(img, lm, self.image_size)
            except DataError as exc:
                raise DataError(f"{self.landmarks_path}: image {key!r}: {exc}") from None
        if self.center:
            cw, ch = self.center
            if cw > w or ch > h:
                raise DataError(f"{where}: centre crop {cw}x{ch} is larger than the {w}x{h} image")
            x, y = (w - cw) // 2, (h - ch) // 2
        else:
            x, y, cw, ch = self.box
            if x + cw > w or y + ch > h:
                raise DataError(f"{where}: crop box [x={x}, y={y}, w={cw}, h={ch}] lies outside the "
                                f"{w}x{h} image")
        return np.ascontiguousarray(img[y:y + ch, x:x + cw])
