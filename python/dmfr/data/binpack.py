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


# A pickle spells out what it holds: every container element costs at least one opcode byte and
# every data byte is in the file, so nothing a genuine pack builds is larger than the file itself.
# An allowed callable asked to build more (`bytes(10**9)`, `list(range(10**9))`, an ndarray of a
# huge shape) is an expansion attack; the bound is the file's size, at least this floor.
MIN_BUILD_BUDGET = 1 << 20


class _CheckedArray(np.ndarray):
    """What `_reconstruct` builds here: an ndarray whose `__setstate__` (the pickle's BUILD) first
    checks that the state's data matches its shape and dtype and fits the budget; numpy's own
    takes a list of the wrong length for an object array and crashes the process."""

    budget = MIN_BUILD_BUDGET
    where = "pickle"

    def __new__(cls, shape, dtype=float, *args, **kwargs):  # `numpy.ndarray(shape, …)` called by a pickle
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(d, int) and d >= 0 for d in dims):
            raise DataError(f"{cls.where}: malformed ndarray shape {shape!r} in the pickle")
        _check_size(_product(dims) * max(np.dtype(dtype).itemsize, 1), cls.budget,
                    f"numpy.ndarray of shape {dims}", cls.where)
        return super().__new__(cls, shape, dtype, *args, **kwargs)

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise DataError(f"{self.where}: malformed ndarray state in the pickle")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        if (not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(dtype, np.dtype)):
            raise DataError(f"{self.where}: malformed ndarray shape or dtype in the pickle")
        count = _product(shape)
        _check_size(count * max(dtype.itemsize, 1), self.budget, f"a {dtype} array of shape {shape}", self.where)
        want, have = ((count, len(raw)) if dtype.hasobject and isinstance(raw, list)
                      else (count * dtype.itemsize, len(raw) if isinstance(raw, (bytes, bytearray, str)) else -1))
        if want != have:
            raise DataError(f"{self.where}: an ndarray of shape {shape} and dtype {dtype} in the pickle "
                            f"carries {have} {'items' if dtype.hasobject else 'bytes'} of data, not {want}")
        super().__setstate__(state)


def _product(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _check_size(size: int, budget: int, what: str, where: str) -> None:
    if size > budget:
        raise DataError(f"{where}: refusing to build {what} ({size} bytes or items) from a pickle "
                        f"that can genuinely hold at most {budget}: an expansion, not a pack")


def _sizes_in(name: str, args) -> int:
    """What a builtin constructor would build from these arguments: the count of `bytes(n)` /
    `bytearray(n)`, or the length of a lazy range it would expand; anything else is already built,
    so already paid for (and `range`, `slice` themselves stay lazy)."""
    size = 0
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and name in ("bytes", "bytearray"):
            size = max(size, a)
        elif isinstance(a, range):
            size = max(size, len(a))
    return size


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str, budget: int = MIN_BUILD_BUDGET, **kwargs):
        super().__init__(file, **kwargs)
        self.where = where
        self.budget = max(int(budget), MIN_BUILD_BUDGET)
        # this load's bounds, seen by the arrays' __setstate__
        self._checked_array = type("_CheckedArray", (_CheckedArray,), {"budget": self.budget, "where": where})

    def find_class(self, module: str, name: str):
        if ((module, name) in _NUMPY_ALLOWED or (module, name) in _CODECS_ALLOWED
                or (module in ("builtins", "__builtin__") and name in _BUILTINS_ALLOWED)):
            found = super().find_class("builtins" if module == "__builtin__" else module, name)
            return self._bounded(found, f"{module}.{name}")
        raise DataError(f"{self.where}: refusing to load {module}.{name} from the pickle: a "
                        f"verification pack may hold only numpy arrays and plain builtin values")

    def _bounded(self, fn, full_name: str):
        """`fn` behind a check of how much it would build (module comment above)."""
        budget, where, checked = self.budget, self.where, self._checked_array
        name = full_name.rsplit(".", 1)[1]

        def array_of(shape, dtype) -> None:
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise DataError(f"{where}: malformed ndarray shape {shape!r} in the pickle")
            _check_size(_product(shape) * max(np.dtype(dtype).itemsize, 1), budget,
                        f"{full_name} of shape {shape}", where)

        if name == "_reconstruct":
            def reconstruct(cls, shape, dtype):
                array_of(shape, dtype)
                return fn(checked if cls is np.ndarray else cls, shape, dtype)
            return reconstruct
        if name == "ndarray":
            return checked  # also the class argument of `_reconstruct`; its __new__ checks the size
        if name == "scalar":
            def scalar(dtype, *args):
                _check_size(np.dtype(dtype).itemsize, budget, f"a numpy scalar of {dtype}", where)
                return fn(dtype, *args)
            return scalar
        if full_name.split(".")[0] in ("builtins", "__builtin__"):
            def builtin(*args, **kwargs):
                _check_size(_sizes_in(name, args), budget, f"{name}{args!r:.60}", where)
                return fn(*args, **kwargs)
            return builtin
        return fn  # numpy.dtype, _frombuffer (a view of bytes already read), _codecs.encode


def load_pickle(path: str):
    """Load a pack's pickle with the restricted unpickler (bytes kept as bytes for py2 packs)."""
    with open(path, "rb") as f:
        budget = os.fstat(f.fileno()).st_size
        try:
            return RestrictedUnpickler(f, path, budget).load()
        except UnicodeDecodeError:
            f.seek(0)  # a Python-2 pickle whose str holds binary: read it as bytes (arcface_torch)
            return RestrictedUnpickler(f, path, budget, encoding="bytes").load()
        except DataError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                ImportError, IndexError, KeyError, MemoryError, OverflowError) as exc:
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
