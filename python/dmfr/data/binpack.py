"""insightface verification packs (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, …) without mxnet.

A pack is a pickle of `(bins, issame_list)`: 2N encoded images (bytes, or uint8 numpy arrays of
the encoded bytes, 1-D or cv2.imencode's [n, 1]; decoded uint8 HxWx3 / HxW arrays are accepted
too) and N booleans; pair i is images (2i, 2i+1) (arcface_torch eval/verification.py
`load_bin`). Pickles can run code, so the file is read by an Unpickler whose `find_class` admits
only the numpy callables an ndarray pickle needs and plain builtin containers/scalars; anything
else is refused by name.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from dmfr.data.images import decode_image, resize_square
from dmfr.errors import DataError

# What pickled ndarrays and numpy scalars reference (numpy 1.x `numpy.core`, 2.x `numpy._core`).
_NUMPY_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol-5 out-of-band array pickles
    ("numpy._core.numeric", "_frombuffer"),
}
# Plain data only: no callables that reach the interpreter (eval, getattr, __import__, …).
_BUILTINS_ALLOWED = {"bytes", "bytearray", "list", "tuple", "dict", "set", "frozenset", "int",
                     "float", "bool", "complex", "str", "slice", "range"}
# Protocol-2 pickles made on Python 2/3 store bytes as `_codecs.encode(text, "latin1")`.
_CODECS_ALLOWED = {("_codecs", "encode")}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str, **kwargs):
        super().__init__(file, **kwargs)
        self.where = where

    def find_class(self, module: str, name: str):
        if ((module, name) in _NUMPY_ALLOWED or (module, name) in _CODECS_ALLOWED
                or (module in ("builtins", "__builtin__") and name in _BUILTINS_ALLOWED)):
            return super().find_class("builtins" if module == "__builtin__" else module, name)
        raise DataError(f"{self.where}: refusing to load {module}.{name} from the pickle: a "
                        f"verification pack may hold only numpy arrays and plain builtin values")


def load_pickle(path: str):
    """Load a pack's pickle with the restricted unpickler (bytes kept as bytes for py2 packs)."""
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, path).load()
        except UnicodeDecodeError:
            f.seek(0)  # a Python-2 pickle whose str holds binary: read it as bytes (arcface_torch)
            return RestrictedUnpickler(f, path, encoding="bytes").load()
        except DataError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                ImportError, IndexError, KeyError, MemoryError) as exc:
            raise DataError(f"{path}: not a readable pickle: {exc}") from None


def _image(item, where: str) -> np.ndarray:
    if isinstance(item, (bytes, bytearray)):
        return decode_image(bytes(item), where)
    if isinstance(item, np.ndarray):
        # Encoded bytes: 1-D, or the [n, 1] column cv2.imencode returns.
        if item.dtype == np.uint8 and (item.ndim == 1 or (item.ndim == 2 and item.shape[1] == 1)):
            return decode_image(item.tobytes(), where)
        if item.dtype == np.uint8 and item.ndim == 2:
            return np.repeat(item[:, :, None], 3, axis=2)
        if item.dtype == np.uint8 and item.ndim == 3 and item.shape[2] == 3:
            return np.ascontiguousarray(item)
        raise DataError(f"{where}: unexpected image array {item.dtype} {item.shape}")
    raise DataError(f"{where}: expected encoded bytes or a uint8 array, got {type(item).__name__}")


def read_bin(path: str, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [2N, H, W, 3] RGB, issame bool [N]); pair i is images 2i and 2i+1.

    Images of another size are resized to `image_size` (default: the first image's, when all
    agree; otherwise an error naming the first image that differs).
    """
    path = os.fspath(path)
    obj = load_pickle(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataError(f"{path}: expected a pickle of (bins, issame_list), got {type(obj).__name__}")
    bins, issame = obj
    try:
        issame = np.asarray(issame, dtype=bool).reshape(-1)
        n_images = len(bins)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: issame_list or bins malformed: {exc}") from None
    if n_images != 2 * len(issame):
        raise DataError(f"{path}: {n_images} images for {len(issame)} pairs (expected {2 * len(issame)})")
    images = [_image(item, f"{path}: image {i}") for i, item in enumerate(bins)]
    if not images:
        return np.zeros((0, image_size or 0, image_size or 0, 3), np.uint8), issame
    if image_size is not None:
        images = [resize_square(im, image_size) for im in images]
    else:
        first = images[0].shape
        for i, im in enumerate(images):
            if im.shape != first:
                raise DataError(f"{path}: image {i} is {im.shape[1]}x{im.shape[0]}, image 0 is "
                                f"{first[1]}x{first[0]}; pass image_size to resize")
    return np.stack(images), issame


def write_bin(path: str, encoded: list[bytes], issame: list[bool]) -> None:
    """Write a pack as insightface does (protocol 3 by default here): (bins, issame_list)."""
    with open(path, "wb") as f:
        pickle.dump((list(encoded), [bool(x) for x in issame]), f, protocol=3)
