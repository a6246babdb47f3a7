"""insightface RecordIO (`.rec` + `.idx` + `property`) without mxnet: reader, writer, dataset.

Framing is dmlc-core's RecordIO (include/dmlc/recordio.h, src/recordio.cc), the format mxnet's
`MXIndexedRecordIO` and insightface's packs use. Every frame is

    uint32 magic 0xCED7230A | uint32 lrec | data | zero padding to a multiple of 4 bytes

with lrec = cflag << 29 | length (dmlc's EncodeLRec; 29-bit length). A record whose bytes
contain the magic word at a 4-aligned position is written in parts: cflag 1 (first), 2
(middle), 3 (last), the magic word itself dropped at each cut; a reader re-joins the parts with
the magic word between them. cflag 0 is a whole record. All integers are little-endian.

The reader also accepts a second framing, told apart by its magic word: 0x3ED7230A with
lrec = cflag << 30 | length (2-bit flag, 30-bit length), as dmfr's engine issue (#3) specified
the format. No mxnet build writes it, but files hand-built to that description read the same
way; one record's frames must all use one framing. The writer always writes dmlc's framing,
which is what mxnet and insightface read.

A record's data is mxnet's IRHeader `<IfQQ` (flag, label, id, id2; 24 bytes) then the payload;
flag > 0 means `flag` float32 labels lead the payload and the header's own label is 0
(mxnet.recordio.pack/unpack). Two layouts:

- insightface (arcface_torch MXFaceDataset, face2rec2): record 0 holds label [a, b] (flag 2,
  id2 1, empty payload); images are keys 1..a-1, each with its identity as the scalar label;
  keys a..b-1 are one range record per identity, label [first image key, end key).
- im2rec: no header record; any keys; each record is an image (label scalar or array; the
  identity is label[0], as arcface_torch takes it).

`.idx` is text, one `key\\toffset` per record. `property` is `num_classes,height,width`.
"""
from __future__ import annotations

import io
import mmap
import os
import struct
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from dmfr.data.images import DEFAULT_IMAGE_SIZE, decode_image
from dmfr.data.real import RealImageDataset
from dmfr.errors import DataError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_BITS = 29
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
MAX_FRAME = _LENGTH_MASK  # dmlc refuses records of 2^29 bytes or more
ALT_MAGIC = 0x3ED7230A  # the framing: 30-bit length (read only)
# magic word -> bits of lrec that hold the length
_FRAMINGS = {MAGIC: _LENGTH_BITS, ALT_MAGIC: 30}
IR_FORMAT = "<IfQQ"
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24
FLOAT32_EXACT = 1 << 24  # record 0's keys are float32: exact only up to 2^24


@dataclass(frozen=True)
class IRHeader:
    flag: int
    label: float | np.ndarray  # scalar when flag == 0, else float32 [flag]
    id: int
    id2: int

    @property
    def identity(self) -> float:
        """arcface_torch: a non-scalar label's identity is its first element."""
        return float(self.label) if self.flag == 0 else float(self.label[0])


# ---------------------------------------------------------------- framing

def frame_record(data: bytes) -> bytes:
    """Encode one record as dmlc frames (dmlc RecordIOWriter::WriteRecord)."""
    if len(data) > MAX_FRAME:
        raise DataError(f"record of {len(data)} bytes exceeds RecordIO's 2^29-byte limit")
    out = io.BytesIO()
    n = len(data)
    lower_align = n & ~3
    dptr = 0
    pos = data.find(MAGIC_BYTES)
    while 0 <= pos and pos + 4 <= lower_align:
        if pos % 4 == 0:  # only aligned occurrences are ambiguous to a reader resyncing on 4 bytes
            out.write(MAGIC_BYTES)
            out.write(struct.pack("<I", (1 if dptr == 0 else 2) << _LENGTH_BITS | (pos - dptr)))
            out.write(data[dptr:pos])  # pos - dptr is a multiple of 4: no padding
            dptr = pos + 4
            pos = data.find(MAGIC_BYTES, dptr)
        else:
            pos = data.find(MAGIC_BYTES, pos + 1)
    out.write(MAGIC_BYTES)
    out.write(struct.pack("<I", (3 if dptr else 0) << _LENGTH_BITS | (n - dptr)))
    out.write(data[dptr:])
    out.write(b"\0" * ((-n) % 4))
    return out.getvalue()


def read_frames(buf, offset: int, file: str) -> tuple[bytes, int]:
    """Read the record starting at `offset` of `buf`; returns (data, offset of the next record)."""
    end = len(buf)
    parts = []
    pos = offset
    record_magic = None
    while True:
        if pos + 8 > end:
            raise DataError(f"{file}: truncated record at byte offset {pos}: "
                            f"{max(end - pos, 0)} bytes left, a frame header needs 8")
        magic, lrec = struct.unpack_from("<II", buf, pos)
        if magic not in _FRAMINGS:
            raise DataError(f"{file}: bad RecordIO magic 0x{magic:08x} at byte offset {pos} "
                            f"(expected 0x{MAGIC:08x}); the file is corrupt or its .idx is wrong")
        if record_magic is not None and magic != record_magic:
            raise DataError(f"{file}: frame at byte offset {pos} has magic 0x{magic:08x}, but the "
                            f"record it continues (byte offset {offset}) began with 0x{record_magic:08x}")
        record_magic = magic
        bits = _FRAMINGS[magic]
        cflag, length = lrec >> bits, lrec & ((1 << bits) - 1)
        expected = (0, 1) if not parts else (2, 3)
        if cflag not in expected:
            raise DataError(f"{file}: continuation flag {cflag} out of sequence at byte offset "
                            f"{pos} (expected {' or '.join(map(str, expected))})")
        start = pos + 8
        if start + length > end:
            raise DataError(f"{file}: truncated record at byte offset {pos}: frame of {length} "
                            f"bytes, but the file ends at byte {end}")
        parts.append(bytes(buf[start:start + length]))
        pos = start + ((length + 3) & ~3)
        if cflag in (0, 3):
            # the writer cut the record at each occurrence of its magic word: put them back
            return struct.pack("<I", magic).join(parts), pos


def scan_offsets(buf, file: str) -> list[int]:
    """Offsets of every record, in file order (a .rec without .idx)."""
    offsets, pos = [], 0
    while pos < len(buf):
        offsets.append(pos)
        _, pos = read_frames(buf, pos, file)
    return offsets


# ---------------------------------------------------------------- IRHeader

def pack_record(label: float | Sequence[float], payload: bytes = b"", id: int = 0, id2: int = 0) -> bytes:
    """mxnet.recordio.pack: a scalar label goes in the header; an array makes flag = its length."""
    if np.isscalar(label):
        return struct.pack(IR_FORMAT, 0, float(label), id, id2) + payload
    arr = np.asarray(label, dtype="<f4").reshape(-1)
    return struct.pack(IR_FORMAT, len(arr), 0.0, id, id2) + arr.tobytes() + payload


def unpack_record(data: bytes, where: str) -> tuple[IRHeader, bytes]:
    """mxnet.recordio.unpack; `where` names the file and offset in errors."""
    if len(data) < IR_SIZE:
        raise DataError(f"{where}: record of {len(data)} bytes is shorter than the "
                        f"{IR_SIZE}-byte IRHeader")
    flag, label, id_, id2 = struct.unpack_from(IR_FORMAT, data)
    if flag == 0:
        return IRHeader(0, label, id_, id2), data[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if end > len(data):
        raise DataError(f"{where}: IRHeader flag {flag} announces {flag} float32 labels, "
                        f"but the record has only {len(data) - IR_SIZE} bytes after its header")
    labels = np.frombuffer(data, dtype="<f4", count=flag, offset=IR_SIZE).astype(np.float32)
    return IRHeader(flag, labels, id_, id2), data[end:]


# ---------------------------------------------------------------- .idx and property

def idx_path_for(rec_path: str) -> str:
    return os.path.splitext(rec_path)[0] + ".idx"


def read_idx(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys int64, offsets int64) in file order; a malformed line is an error naming it."""
    keys, offsets = [], []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 2:
                    raise ValueError
                key, off = int(fields[0]), int(fields[1])
                if key < 0 or off < 0:
                    raise ValueError
            except ValueError:
                raise DataError(f"{path}:{lineno}: expected 'key<TAB>offset' with non-negative "
                                f"integers, got {line.rstrip()[:80]!r}") from None
            keys.append(key)
            offsets.append(off)
    return np.asarray(keys, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def read_property(folder: str) -> tuple[int, int, int] | None:
    """insightface's `property` file: `num_classes,height,width`; None when absent."""
    path = os.path.join(folder, "property")
    if not os.path.exists(path):
        return None
    text = open(path, "r", encoding="utf-8", errors="replace").read().strip()
    try:
        k, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"{path}: expected 'num_classes,height,width', got {text[:80]!r}") from None
    return k, h, w


# ---------------------------------------------------------------- reader

class RecordFile:
    """Random access to a .rec by key through its .idx (or a scan when there is none)."""

    def __init__(self, rec_path: str, idx_path: str | None = None):
        self.path = os.fspath(rec_path)
        if not os.path.isfile(self.path):
            raise DataError(f"{self.path}: no such RecordIO file")
        self.size = os.path.getsize(self.path)
        self._file = None
        self._buf = None
        idx = idx_path or idx_path_for(self.path)
        if os.path.exists(idx):
            self.idx_path: str | None = idx
            self.keys, self.offsets = read_idx(idx)
            bad = np.nonzero(self.offsets >= max(self.size, 1))[0]
            if len(bad) and self.size:
                k = int(bad[0])
                raise DataError(f"{idx}: key {self.keys[k]} points at byte offset "
                                f"{self.offsets[k]}, past the end of {self.path} ({self.size} bytes): "
                                f"the .rec is truncated or the .idx belongs to another file")
        else:
            self.idx_path = None
            self.offsets = np.asarray(scan_offsets(self.buf, self.path), dtype=np.int64)
            self.keys = np.arange(len(self.offsets), dtype=np.int64)
        # Key lookup without a per-key Python dict (5.8M keys would cost ~0.5 GB): direct
        # indexing when keys are 0..n-1 in order (insightface, im2rec), else a sorted search.
        self._dense = bool(np.array_equal(self.keys, np.arange(len(self.keys))))
        if not self._dense:
            order = np.argsort(self.keys, kind="stable")
            self._sorted_keys, self._sorted_offsets = self.keys[order], self.offsets[order]
            dup = np.nonzero(np.diff(self._sorted_keys) == 0)[0]
            if len(dup):
                raise DataError(f"{self.idx_path}: key {self._sorted_keys[dup[0]]} appears twice")

    @property
    def buf(self):
        if self._buf is None:
            if self.size == 0:
                self._buf = b""
            else:
                self._file = open(self.path, "rb")
                self._buf = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._buf

    def __getstate__(self):  # mmaps do not pickle; reopen in the receiving process
        state = self.__dict__.copy()
        state["_file"] = state["_buf"] = None
        return state

    def close(self) -> None:
        if self._buf is not None and not isinstance(self._buf, bytes):
            self._buf.close()
        if self._file is not None:
            self._file.close()
        self._buf = self._file = None

    def offsets_of(self, keys) -> np.ndarray:
        """Offsets of many keys at once (int64); -1 where a key is absent."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(self.offsets) == 0:
            return np.full(keys.shape, -1, dtype=np.int64)
        if self._dense:
            ok = (keys >= 0) & (keys < len(self.offsets))
            return np.where(ok, self.offsets[np.clip(keys, 0, len(self.offsets) - 1)], -1)
        pos = np.clip(np.searchsorted(self._sorted_keys, keys), 0, len(self._sorted_keys) - 1)
        return np.where(self._sorted_keys[pos] == keys, self._sorted_offsets[pos], -1)

    def __contains__(self, key: int) -> bool:
        return int(self.offsets_of([key])[0]) >= 0

    def offset(self, key: int) -> int:
        off = int(self.offsets_of([key])[0])
        if off < 0:
            raise DataError(f"{self.idx_path or self.path}: no record with key {key}")
        return off

    def read_at(self, offset: int) -> bytes:
        return read_frames(self.buf, offset, self.path)[0]

    def read(self, key: int) -> bytes:
        return self.read_at(self.offset(key))

    def record(self, key: int) -> tuple[IRHeader, bytes]:
        off = self.offset(key)
        return unpack_record(self.read_at(off), f"{self.path}: record {key} at byte offset {off}")


@dataclass
class Layout:
    kind: str  # "insightface" | "im2rec"
    image_keys: np.ndarray  # int64
    identity_ranges: list[tuple[int, int]] | None  # insightface: [start, end) image keys per identity
    header: tuple[int, int] | None  # insightface record 0: (a, b)


def detect_layout(rf: RecordFile) -> Layout:
    """insightface when record 0 is a range header ([a, b], flag > 0, integral, keys present)."""
    if 0 in rf:
        h, payload = rf.record(0)
        if h.flag >= 2 and (h.id2 == 1 or not payload):
            a, b = float(h.label[0]), float(h.label[1])
            if a.is_integer() and b.is_integer() and 1 <= a <= b:
                a, b = int(a), int(b)
                missing = np.nonzero(rf.offsets_of(np.arange(1, b)) < 0)[0]
                if len(missing):
                    raise DataError(f"{rf.path}: record 0 says images are keys 1..{a - 1} and "
                                    f"identities {a}..{b - 1}, but key {missing[0] + 1} is not in "
                                    f"{rf.idx_path or 'the file'}")
                ranges = []
                for k in range(a, b):
                    rh, _ = rf.record(k)
                    if rh.flag < 2:
                        raise DataError(f"{rf.path}: identity record {k} at byte offset "
                                        f"{rf.offset(k)} has no [start, end) label (flag {rh.flag})")
                    ranges.append((int(rh.label[0]), int(rh.label[1])))
                return Layout("insightface", np.arange(1, a, dtype=np.int64), ranges, (a, b))
    return Layout("im2rec", rf.keys.copy(), None, None)


def _ranges_tile(ranges: list[tuple[int, int]], a: int) -> bool:
    pos = 1
    for s, e in ranges:
        if s != pos or e < s:
            return False
        pos = e
    return pos == a


class RecordDataset(RealImageDataset):
    """A `.rec` as a FaceDataset: one real domain, labels from the pack (arcface_torch order).

    `path` is a .rec file or a folder holding `train.rec` (arcface_torch's `rec` setting).
    """

    def __init__(self, path: str, image_size: int = DEFAULT_IMAGE_SIZE, skip_bad: bool = False):
        rec = os.fspath(path)
        if os.path.isdir(rec):
            rec = os.path.join(rec, "train.rec")
        self.file = RecordFile(rec)
        self.layout = detect_layout(self.file)
        self.property = read_property(os.path.dirname(os.path.abspath(rec)))
        keys = self.layout.image_keys
        ranges = self.layout.identity_ranges
        self._checked_labels = None
        self.skipped_records = 0  # records left out at load (skip_bad): their label is unreadable
        if ranges is not None and _ranges_tile(ranges, self.layout.header[0]):
            # One header read per identity; every image's own label is checked when it loads.
            raw = np.empty(len(keys), dtype=np.float64)
            for s, e in ranges:
                if e > s:
                    raw[s - 1:e - 1] = self.file.record(s)[0].identity
            self._checked_labels = raw
        else:
            keys, raw = self._read_labels(keys, skip_bad)
        bad = np.nonzero(raw != np.round(raw))[0]
        if len(bad):
            k = int(keys[bad[0]])
            raise DataError(f"{rec}: record {k} at byte offset {self.file.offset(k)} has "
                            f"non-integer identity label {raw[bad[0]]}")
        neg = np.nonzero(raw < 0)[0]
        if len(neg):
            k = int(keys[neg[0]])
            raise DataError(f"{rec}: record {k} at byte offset {self.file.offset(k)} has "
                            f"negative identity label {raw[neg[0]]}")
        # Labels are class indices as in arcface_torch (no remapping); `property` may declare
        # identities without images.
        num_classes = int(raw.max()) + 1 if len(raw) else 0
        if self.property is not None:
            num_classes = max(num_classes, self.property[0])
        super().__init__(raw.astype(np.int32), list(range(num_classes)), image_size, skip_bad)
        self.keys = keys
        self.sample_offsets = self.file.offsets_of(keys)

    def _read_labels(self, keys: np.ndarray, skip_bad: bool) -> tuple[np.ndarray, np.ndarray]:
        """Every image record's identity, read from its header (no range records to take it from).
        A record whose framing or header is corrupt has no label to plan it by: with `skip_bad`
        it is left out of the dataset (counted in `skipped_records`, a warning names it), else its
        DataError stops the load."""
        kept, raw = [], []
        self.skipped_records = 0
        for k in keys.tolist():
            try:
                raw.append(self.file.record(k)[0].identity)
            except DataError as exc:
                if not skip_bad:
                    raise
                self.skipped_records += 1
                print(f"dmfr: warning: skipping record {k}: {exc}", file=sys.stderr)
                continue
            kept.append(k)
        return np.asarray(kept, dtype=np.int64), np.asarray(raw, dtype=np.float64)

    def read_raw(self, i: int) -> tuple[IRHeader, bytes, str]:
        key, off = int(self.keys[i]), int(self.sample_offsets[i])
        where = f"{self.file.path}: record {key} at byte offset {off}"
        header, payload = unpack_record(self.file.read_at(off), where)
        return header, payload, where

    def read(self, i: int) -> np.ndarray:
        header, payload, where = self.read_raw(i)
        if self._checked_labels is not None and header.identity != self._checked_labels[i]:
            raise DataError(f"{where}: label {header.identity} disagrees with its identity "
                            f"range record ({self._checked_labels[i]})")
        return decode_image(payload, where)


# ---------------------------------------------------------------- writer

class RecordWriter:
    """Writes a .rec and its .idx (mxnet MXIndexedRecordIO 'w')."""

    def __init__(self, rec_path: str):
        self.path = os.fspath(rec_path)
        self._rec = open(self.path, "wb")
        self._idx = open(idx_path_for(self.path), "w", encoding="utf-8")

    def write(self, key: int, data: bytes) -> int:
        offset = self._rec.tell()
        self._rec.write(frame_record(data))
        self._idx.write(f"{key}\t{offset}\n")
        return offset

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def image_bytes_size(data: bytes, where: str) -> tuple[int, int]:
    """(height, width) from the image header only."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size[1], img.size[0]
    except Exception as exc:  # Pillow raises many types for garbage
        raise DataError(f"{where}: cannot read image header: {exc}") from None


def pack(out_rec: str, samples: Sequence[tuple[int, bytes | Callable[[], bytes]]],
         num_classes: int | None = None) -> dict:
    """Write samples (label, encoded image or a callable returning it) in the insightface layout,
    with the .idx and the `property` file beside the .rec.

    Labels are class indices 0..K-1; samples are grouped by label (stable), as insightface
    requires each identity's images to be consecutive keys. A callable is called once, while
    writing, so a large folder is never held in memory.
    """
    order = sorted(range(len(samples)), key=lambda i: int(samples[i][0]))
    if not order:
        raise DataError(f"{out_rec}: nothing to pack")
    labels = [int(samples[i][0]) for i in order]
    if labels[0] < 0:
        raise DataError(f"{out_rec}: negative label {labels[0]}")
    k = num_classes if num_classes is not None else labels[-1] + 1
    if labels[-1] >= k:
        raise DataError(f"{out_rec}: label {labels[-1]} >= num_classes {k}")
    n = len(order)
    a, b = n + 1, n + 1 + k
    if b > FLOAT32_EXACT:
        raise DataError(f"{out_rec}: {n} images + {k} identities exceed the 2^24 keys that "
                        f"record 0's float32 labels hold exactly")
    starts = np.searchsorted(labels, np.arange(k + 1)) + 1  # image keys start at 1
    sizes: dict[tuple[int, int], int] = {}
    from dmfr.progress import Progress

    with RecordWriter(out_rec) as w, Progress(n, f"data pack {os.path.basename(out_rec)}", unit="images") as progress:
        w.write(0, pack_record([a, b], b"", 0, 1))
        for key, i in enumerate(order, 1):
            label, data = samples[i]
            data = data() if callable(data) else data
            hw = image_bytes_size(data, f"sample {i} (label {label})")
            sizes[hw] = sizes.get(hw, 0) + 1
            w.write(key, pack_record(float(label), data, key, 0))
            progress.update()
        for label in range(k):  # identities without images get an empty range
            w.write(a + label, pack_record([int(starts[label]), int(starts[label + 1])], b"", a + label, 0))
    h, wd = max(sizes, key=sizes.get)
    with open(os.path.join(os.path.dirname(os.path.abspath(out_rec)), "property"), "w") as f:
        f.write(f"{k},{h},{wd}\n")
    return {"images": n, "identities": k, "sizes": {f"{hh}x{ww}": c for (hh, ww), c in sizes.items()}}
