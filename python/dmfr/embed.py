"""Face features from a trained model: `Embedder` (API) behind `dmfr embed`.

Preprocessing is arcface_torch's (RGB, (x/255 − 0.5)/0.5, resized to the model's input size),
after the crop or 5-point alignment the model was trained with (`data.preprocess` in the
checkpoint's config, dmfr.data.preprocess), so every consumer applies the training preprocessing.
Flip test-time augmentation sums the features of the image and its mirror, as insightface's
verification (`eval/verification.py`: embeddings of both flips added before normalising).
Features are returned unnormalised; cosine scoring normalises them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from dmfr.data.images import hflip, load_image, to_tensor_batch

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


class Embedder:
    """Wraps a feature function (images float [B, 3, S, S] → [B, D]) with preprocessing and batching."""

    def __init__(self, model: nn.Module, image_size: int, device: str = "cpu", preprocess=None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = image_size
        self.preprocess = preprocess  # dmfr.data.preprocess.Preprocessor or None
        self._embed = getattr(model, "embed", None) or model  # a Method's embed(), or a bare backbone

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu",
                        landmarks: str | None = None) -> "Embedder":
        """From a dmfr training checkpoint (its Method rebuilt with build_method, its preprocessing
        from its config) or a dmfr backbone file written by `dmfr model import`. `landmarks`
        replaces the landmarks file of a model trained with 5-point alignment (other images)."""
        from dmfr.backbone_io import BACKBONE_FORMAT, build_backbone_from_file
        from dmfr.checkpoint import load_checkpoint
        from dmfr.errors import DmfrError
        from dmfr.methods import build_method

        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise DmfrError(f"device {device!r} requested but no CUDA device is available")
        state = load_checkpoint(path)
        if state.get("format") == BACKBONE_FORMAT:
            if landmarks:
                raise DmfrError(f"--landmarks: {path} is a backbone file, which records no preprocessing")
            return cls(build_backbone_from_file(path), int(state["input_size"]), device)
        if "method" not in state or "config" not in state or "num_classes" not in state:
            raise DmfrError(f"{path}: neither a dmfr training checkpoint (method, config, num_classes) "
                            f"nor a dmfr backbone file; import arcface_torch weights with `dmfr model import`")
        method = build_method(state["config"], int(state["num_classes"]))
        try:
            method.load_state_dict(state["method"])
        except RuntimeError as exc:
            raise DmfrError(f"{path}: method state does not match its config: {str(exc).splitlines()[0]}") from None
        from dmfr.data.preprocess import Preprocessor

        data = state["config"]["data"]
        preprocess = Preprocessor.from_data_config(data, landmarks)
        if preprocess is None and landmarks:
            raise DmfrError(f"--landmarks: {path} was trained without landmark alignment")
        return cls(method, int(data["image_size"]), device, preprocess)

    @torch.no_grad()
    def embed_tensor(self, images: torch.Tensor, flip: bool = False) -> np.ndarray:
        images = images.to(self.device)
        feats = self._embed(images).float()
        if flip:
            feats = feats + self._embed(hflip(images)).float()
        return feats.cpu().numpy().astype(np.float32, copy=False)

    def embed_images(self, uint8_images: Sequence[np.ndarray], flip: bool = False,
                     keys: Sequence[str] | None = None, where: Sequence[str] | None = None) -> np.ndarray:
        """RGB uint8 HWC images (any size) → float32 [N, D], after the model's crop/alignment
        (`keys`: the images' paths relative to their root, for landmarks; `where`: names in errors)."""
        if len(uint8_images) == 0:
            return np.zeros((0, self.feature_dim()), np.float32)
        images = list(uint8_images)
        if self.preprocess is not None:
            images = [self.preprocess(img, keys[k] if keys is not None else None,
                                      where[k] if where is not None else f"image {k}")
                      for k, img in enumerate(images)]
        return self.embed_tensor(to_tensor_batch(images, self.image_size), flip)

    def embed_paths(self, paths: Sequence[str | os.PathLike], flip: bool = False, batch_size: int = 64,
                    keys: Sequence[str] | None = None) -> np.ndarray:
        """Image files → float32 [N, D], in `paths` order; a bad file raises DataError naming it.
        `keys` (paths relative to the images root) find the landmarks of an aligned model.
        Progress on stderr (dmfr/progress.py) when it takes more than one batch."""
        from dmfr.progress import Progress

        if keys is not None and self.preprocess is not None:
            self.preprocess.check_keys(keys, "the images to embed")
        out = []
        progress = Progress(len(paths), "embedding", unit="images") if len(paths) > batch_size else None
        try:
            for i in range(0, len(paths), batch_size):
                out.append(self.embed_images([load_image(p) for p in paths[i:i + batch_size]], flip,
                                             keys[i:i + batch_size] if keys is not None else None,
                                             [os.fspath(p) for p in paths[i:i + batch_size]]))
                if progress is not None:
                    progress.update(len(out[-1]))
        finally:
            if progress is not None:
                progress.close()
        return np.concatenate(out) if out else np.zeros((0, self.feature_dim()), np.float32)

    def feature_dim(self) -> int:
        with torch.no_grad():
            probe = torch.zeros(2, 3, self.image_size, self.image_size, device=self.device)
            return int(self._embed(probe).shape[1])


def list_images(images: str | os.PathLike) -> tuple[Path, list[str]]:
    """(root, keys) for `--images`: a directory (every image file below it, sorted) or a list file
    (`path [label]` per line, paths relative to the list's directory). Keys are relative to root."""
    from dmfr.errors import DataError

    images = Path(images)
    if images.is_dir():
        keys = sorted(str(p.relative_to(images)) for p in images.rglob("*")
                      if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not keys:
            raise DataError(f"{images}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found")
        return images, keys
    if not images.is_file():
        raise DataError(f"{images}: no such directory or list file")
    keys = []
    for lineno, line in enumerate(images.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        path = parts[0] if len(parts) == 2 and parts[1].lstrip("-").isdigit() else line
        keys.append(path)
    if not keys:
        raise DataError(f"{images}: list file names no images")
    return images.parent, keys
