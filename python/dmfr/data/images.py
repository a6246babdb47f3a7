"""Image decoding and arcface_torch preprocessing, shared by every real-image source.

arcface_torch's MXFaceDataset decodes each record to RGB uint8 HWC, then applies
`ToTensor()` + `Normalize(mean=[0.5]*3, std=[0.5]*3)`, i.e. (x / 255 - 0.5) / 0.5 on CHW
float32. We do the same with Pillow + NumPy. Grey (PGM, grey JPEG, grey GIF) and palette
images become 3-channel RGB so every source yields the same shape.
"""
from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from dmfr.errors import DataError

if TYPE_CHECKING:  # torch is imported where tensors are made, so `dmfr data` starts fast
    import torch

DEFAULT_IMAGE_SIZE = 112  # arcface_torch's input size

# What Pillow raises on bad bytes: unknown format, truncated stream, broken header,
# decompression-bomb guard.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
                  Image.DecompressionBombError)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit PGM / float images: scale the full range to 8 bits before conversion.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    return img.convert("RGB")  # L, LA, P (GIF palette), RGBA, CMYK, YCbCr -> RGB


def _decode(fp, where: str) -> np.ndarray:
    try:
        with Image.open(fp) as img:
            img.load()  # force the full decode here so truncation surfaces now
            rgb = _to_rgb(img)
            arr = np.asarray(rgb, dtype=np.uint8)
    except _DECODE_ERRORS as exc:
        raise DataError(f"{where}: cannot decode image: {exc}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{where}: decoded image has unexpected shape {arr.shape}")
    return arr


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode JPEG/PNG/PGM/GIF bytes to RGB uint8 [H, W, 3]; `where` names the source in errors
    (a path, or "file.rec offset 1234")."""
    if not data:
        raise DataError(f"{where}: empty image data")
    return _decode(io.BytesIO(data), where)


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """An image file's encoded bytes; DataError names the path when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DataError(f"{os.fspath(path)}: cannot read image: {exc.strerror or exc}") from None


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file to RGB uint8 [H, W, 3]; DataError names the path on failure."""
    return decode_image(read_image_bytes(path), os.fspath(path))


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize RGB uint8 [H, W, 3] to [size, size, 3] (bilinear); a no-op at the right size.

    arcface_torch expects already-aligned 112x112 crops and never resizes; other sources
    (ORL 92x112, LFW 250x250) are resized as a whole, aspect ratio not kept, like a plain
    `transforms.Resize((size, size))`.
    """
    if img.shape[0] == size and img.shape[1] == size:
        return img
    pil = Image.fromarray(img, mode="RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(pil, dtype=np.uint8)


def normalize(batch_hwc: np.ndarray) -> "torch.Tensor":
    """uint8 [B, H, W, 3] -> contiguous float32 [B, 3, H, W]: ToTensor (x / 255) then
    Normalize(mean 0.5, std 0.5), the same float32 ops as torchvision in arcface_torch, so the
    values are bit-identical to its pipeline."""
    import torch
    chw = torch.from_numpy(np.ascontiguousarray(batch_hwc)).permute(0, 3, 1, 2).contiguous()
    return chw.float().div_(255).sub_(0.5).div_(0.5)


def to_tensor_batch(images: Sequence[np.ndarray], image_size: int = DEFAULT_IMAGE_SIZE) -> "torch.Tensor":
    """A list of RGB uint8 HWC images (any sizes) -> normalised float32 [B, 3, S, S]."""
    if len(images) == 0:
        import torch
        return torch.empty((0, 3, image_size, image_size), dtype=torch.float32)
    batch = np.empty((len(images), image_size, image_size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image {i}: expected uint8 [H, W, 3], got {img.dtype} {img.shape}")
        batch[i] = resize_square(img, image_size)
    return normalize(batch)


def hflip(batch: "torch.Tensor") -> "torch.Tensor":
    """Horizontal flip of [B, C, H, W] (arcface_torch's RandomHorizontalFlip; flip-TTA)."""
    import torch
    return torch.flip(batch, dims=[3])
