"""insightface verification packs (.bin) through the restricted unpickler."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmfr.data.binpack import read_bin, write_bin
from dmfr.errors import DataError

FACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "faces"


def encoded(seed: int, fmt="PNG", size=(112, 112)) -> tuple[bytes, np.ndarray]:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue(), arr


def test_small_lfw_bin_reads_as_ten_pairs():
    path = FACES / "small_lfw.bin"
    if not path.exists():
        pytest.skip(f"{path} absent (real-face test data is not part of a fresh clone)")
    images, issame = read_bin(str(path))
    assert images.shape == (20, 112, 112, 3) and images.dtype == np.uint8
    assert issame.dtype == bool and issame.shape == (10,) and issame.all()
    assert images.std() > 10  # real pictures, not blank decodes


def test_bytes_and_array_images_round_trip(tmp_path):
    items = [encoded(i) for i in range(4)]
    bins = [items[0][0], np.frombuffer(items[1][0], np.uint8),
            np.frombuffer(items[2][0], np.uint8).reshape(-1, 1), items[3][1]]  # bytes, 1-D, [n,1], decoded
    path = tmp_path / "t.bin"
    with open(path, "wb") as f:
        pickle.dump((bins, [True, False]), f, protocol=4)
    images, issame = read_bin(str(path))
    assert issame.tolist() == [True, False]
    for i in range(4):
        assert np.array_equal(images[i], items[i][1])

    write_bin(str(tmp_path / "w.bin"), [it[0] for it in items], [False, True])
    images, issame = read_bin(str(tmp_path / "w.bin"))
    assert issame.tolist() == [False, True] and np.array_equal(images[3], items[3][1])


def test_protocol2_bytes_pickle_is_read(tmp_path):
    data, arr = encoded(7)
    path = tmp_path / "p2.bin"
    with open(path, "wb") as f:
        pickle.dump(([data, data], [True]), f, protocol=2)  # bytes via _codecs.encode
    assert b"_codecs" in path.read_bytes()
    images, _ = read_bin(str(path))
    assert np.array_equal(images[1], arr)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _EvalExploit:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload_kind", ["system", "eval", "nested"])
def test_pickle_constructing_anything_else_is_refused(tmp_path, payload_kind):
    target = tmp_path / "pwned"
    if payload_kind == "system":
        obj = ([_Exploit(target)], [True])
        name = f"{os.system.__module__}.system"
    elif payload_kind == "eval":
        obj = ([b"x", b"y"], _EvalExploit())
        name = "builtins.eval"
    else:  # hidden inside a numpy object array
        arr = np.empty(2, dtype=object)
        arr[0] = _Exploit(target)
        obj = (arr, [True])
        name = f"{os.system.__module__}.system"
    path = tmp_path / "evil.bin"
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=3)
    with pytest.raises(DataError, match=rf"evil.bin: refusing to load {name} from the pickle"):
        read_bin(str(path))
    assert not target.exists()


def test_malformed_packs_are_named(tmp_path):
    path = tmp_path / "odd.bin"
    with open(path, "wb") as f:
        pickle.dump(([encoded(1)[0]] * 3, [True]), f)
    with pytest.raises(DataError, match=r"odd.bin: 3 images for 1 pairs \(expected 2\)"):
        read_bin(str(path))
    with open(path, "wb") as f:
        pickle.dump(([encoded(1)[0], b"garbage"], [True]), f)
    with pytest.raises(DataError, match=r"odd.bin: image 1: cannot decode image"):
        read_bin(str(path))
    path.write_bytes(b"\x80\x03not a pickle")
    with pytest.raises(DataError, match=r"odd.bin: not a readable pickle"):
        read_bin(str(path))
    with open(path, "wb") as f:
        pickle.dump(([encoded(1)[0], encoded(2, size=(64, 80))[0]], [True]), f)
    with pytest.raises(DataError, match=r"image 1 is 80x64, image 0 is 112x112"):
        read_bin(str(path))
    images, _ = read_bin(str(path), image_size=112)
    assert images.shape == (2, 112, 112, 3)


# Hand-written pickles (protocol 3 opcodes) of allowed callables only, each a few dozen bytes,
# that would build far more than the file holds (issue #12, item 10).
_N = 64 << 20  # 64 MiB: far over the budget (the file's size, at least 1 MiB), cheap to survive
_INT = b"J" + struct.pack("<i", _N)  # BININT N
_EXPANSIONS = {
    "bytes(N)": b"\x80\x03cbuiltins\nbytes\n" + _INT + b"\x85R.",
    "list(range(N))": b"\x80\x03cbuiltins\nlist\ncbuiltins\nrange\n" + _INT + b"\x85R\x85R.",
    "ndarray of N objects": b"\x80\x03cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _INT
                            + b"\x85C\x01O\x87R.",
    "ndarray(N)": b"\x80\x03cnumpy\nndarray\n" + _INT + b"\x85R.",
}


class _LyingObjectArray:
    """Pickles as an object ndarray whose state says 8 items but carries 1: numpy's own
    __setstate__ reads past the list and crashes the process."""

    def __reduce__(self):
        reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, as numpy names it
        return reconstruct, (np.ndarray, (0,), b"b"), (1, (8,), np.dtype("O"), False, [1])


_EXPANSIONS["object array state"] = pickle.dumps(_LyingObjectArray(), protocol=3)
_PROBE = """
import json, resource, sys
from dmfr.data.binpack import load_pickle
from dmfr.errors import DataError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_pickle(sys.argv[1]); error = None
except DataError as exc:
    error = str(exc)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"error": error, "grown": grown}))
"""


@pytest.mark.parametrize("kind", list(_EXPANSIONS))
def test_a_tiny_pickle_cannot_expand_into_a_huge_object(tmp_path, kind):
    path = tmp_path / "bomb.bin"
    path.write_bytes(_EXPANSIONS[kind])
    assert path.stat().st_size < 300
    # In a child process: numpy's crash on the bad object-array state must not take pytest down,
    # and the child's peak memory is its own.
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "python"))
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, f"the loader died ({proc.returncode}): {proc.stderr[-500:]}"
    result = json.loads(proc.stdout)
    assert result["error"] and str(path) in result["error"]
    assert "refusing to build" in result["error"] or "carries 1 items of data, not 8" in result["error"]
    # Built, the object would take _N bytes at least; refused first, the peak grows by far less.
    assert result["grown"] < _N / 2, result
