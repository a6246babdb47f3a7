"""insightface RecordIO without mxnet: packer round trips, hand-built files, corrupt input."""
from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from dmfr.data import recordio as R
from dmfr.data.images import to_tensor_batch
from dmfr.errors import DataError

MAGIC = 0xCED7230A


def png(seed: int, size=(112, 112)) -> tuple[bytes, np.ndarray]:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue(), arr


def frame(cflag: int, data: bytes) -> bytes:
    """One dmlc frame, built by hand (independent of the writer under test)."""
    return struct.pack("<II", MAGIC, cflag << 29 | len(data)) + data + b"\0" * (-len(data) % 4)


def ir(label, payload=b"", id_=0, id2=0) -> bytes:
    if np.isscalar(label):
        return struct.pack("<IfQQ", 0, label, id_, id2) + payload
    arr = np.asarray(label, "<f4")
    return struct.pack("<IfQQ", len(arr), 0.0, id_, id2) + arr.tobytes() + payload


def write_file(tmp_path, name, records: list[tuple[int, bytes]]):
    """records: (key, already framed bytes); writes .rec and .idx, returns (rec path, offsets)."""
    rec = tmp_path / f"{name}.rec"
    offsets, blob = {}, b""
    for key, framed in records:
        offsets[key] = len(blob)
        blob += framed
    rec.write_bytes(blob)
    (tmp_path / f"{name}.idx").write_text("".join(f"{k}\t{o}\n" for k, o in offsets.items()))
    return str(rec), offsets


def test_packer_round_trip_insightface_layout(tmp_path):
    samples = [(lab, png(10 * lab + j)) for lab in (0, 1, 3) for j in range(lab + 1)]  # label 2 empty
    out = tmp_path / "ds" / "train.rec"
    out.parent.mkdir()
    summary = R.pack(str(out), [(lab, data) for lab, (data, _) in samples[::-1]], num_classes=4)
    assert summary["images"] == len(samples) and summary["identities"] == 4
    assert (tmp_path / "ds" / "property").read_text() == "4,112,112\n"

    ds = R.RecordDataset(str(out.parent))
    assert ds.layout.kind == "insightface"
    assert ds.layout.header == (len(samples) + 1, len(samples) + 5)
    assert ds.file.record(0)[0].id2 == 1
    assert ds.num_classes == 4 and len(ds) == len(samples)
    # pack groups by label (stable within a label); the reversed input order is kept per label
    expected = sorted(samples[::-1], key=lambda s: s[0])
    assert ds.labels.tolist() == [lab for lab, _ in expected]
    assert ds.layout.identity_ranges[2][0] == ds.layout.identity_ranges[2][1]  # empty identity
    for i, (lab, (data, arr)) in enumerate(expected):
        header, payload, _ = ds.read_raw(i)
        assert payload == data and header.label == lab and header.flag == 0
        assert np.array_equal(ds.read(i), arr)
    batch = ds.load([0, len(ds) - 1])
    ref = to_tensor_batch([expected[0][1][1], expected[-1][1][1]], 112)
    assert batch.dtype == torch.float32 and np.array_equal(batch.numpy(), ref.numpy())
    assert float(batch.min()) >= -1.0 and float(batch.max()) <= 1.0
    assert ds.domains.tolist() == [0] * len(ds) and ds.pair.tolist() == [-1] * len(ds)
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers under spawn reopen the mmap
    assert torch.equal(clone.load([0, len(ds) - 1]), batch)


def test_hand_built_split_records_and_array_labels_im2rec_layout(tmp_path):
    img_a, arr_a = png(1)
    img_b, arr_b = png(2)
    rec_a = ir([5.0, 0.25, 7.5], img_a, id_=7)  # array label: identity is label[0]
    mb = struct.pack("<I", MAGIC)
    # split by hand at the 4-aligned cut after the IRHeader+labels (36 bytes)
    cut1, cut2 = 36, 36 + 4 * (len(img_a) // 8)
    joined = rec_a[:cut1] + mb + rec_a[cut1:cut2] + mb + rec_a[cut2:]
    split = frame(1, rec_a[:cut1]) + frame(2, rec_a[cut1:cut2]) + frame(3, rec_a[cut2:])
    rec_b = ir(2.0, img_b, id_=42)
    rec, offsets = write_file(tmp_path, "im2rec", [(7, split), (42, frame(0, rec_b))])

    rf = R.RecordFile(rec)
    assert rf.read(7) == joined  # parts re-joined with the magic word between them
    assert rf.read(42) == rec_b
    h, payload = R.unpack_record(rec_b, "x")
    assert (h.flag, h.label, h.id, payload) == (0, 2.0, 42, img_b)
    h, _ = R.unpack_record(rec_a, "x")
    assert h.flag == 3 and h.label.dtype == np.float32 and h.label.tolist() == [5.0, 0.25, 7.5]

    # a split record whose image bytes hold the magic word: dataset reads the image exactly
    ds_rec, _ = write_file(tmp_path, "plain", [(7, frame(0, rec_a)), (42, frame(0, rec_b))])
    ds = R.RecordDataset(ds_rec)
    assert ds.layout.kind == "im2rec"
    assert ds.keys.tolist() == [7, 42] and ds.labels.tolist() == [5, 2] and ds.num_classes == 6
    assert np.array_equal(ds.read(0), arr_a) and np.array_equal(ds.read(1), arr_b)

    # .idx order is the sample order; keys need not be sorted or dense
    idx = tmp_path / "plain.idx"
    idx.write_text("".join(reversed(idx.read_text().splitlines(keepends=True))))
    ds = R.RecordDataset(ds_rec)
    assert ds.keys.tolist() == [42, 7] and ds.labels.tolist() == [2, 5]
    assert np.array_equal(ds.read(1), arr_a) and 8 not in ds.file and 42 in ds.file
    with pytest.raises(DataError, match=r"plain.idx: no record with key 8"):
        ds.file.read(8)
    idx.write_text(idx.read_text() + "7\t0\n")
    with pytest.raises(DataError, match=r"plain.idx: key 7 appears twice"):
        R.RecordFile(ds_rec)


def test_issue_framing_30_bit_length_is_read_too(tmp_path):
    """The engine issue described magic 0x3ED7230A with a 2-bit flag above a 30-bit length;
    files hand-built that way read exactly like dmlc's, split records included."""
    alt = 0x3ED7230A
    mb = struct.pack("<I", alt)

    def alt_frame(cflag, data):
        return struct.pack("<II", alt, cflag << 30 | len(data)) + data + b"\0" * (-len(data) % 4)

    imgs = [png(40 + i) for i in range(3)]
    img0 = ir(0.0, imgs[0][0], 1)
    cut = 24  # split after the IRHeader, as a writer meeting the magic word there would
    records = [(0, alt_frame(0, ir([4.0, 6.0], b"", 0, 1))),
               (1, alt_frame(1, img0[:cut]) + alt_frame(3, img0[cut:])),
               (2, alt_frame(0, ir(0.0, imgs[1][0], 2))), (3, alt_frame(0, ir([1.0], imgs[2][0], 3))),
               (4, alt_frame(0, ir([1.0, 3.0], b"", 4))), (5, alt_frame(0, ir([3.0, 4.0], b"", 5)))]
    rec, offsets = write_file(tmp_path, "alt", records)
    assert R.RecordFile(rec).read(1) == img0[:cut] + mb + img0[cut:]
    os.remove(tmp_path / "alt.idx")
    rf = R.RecordFile(rec)  # scanning without .idx uses the 30-bit lengths to find each next record
    assert rf.offsets.tolist() == [offsets[k] for k in range(6)]
    ds = R.RecordDataset(rec)
    assert ds.layout.kind == "insightface" and ds.labels.tolist() == [0, 0, 1]
    assert np.array_equal(ds.read(1), imgs[1][1]) and np.array_equal(ds.read(2), imgs[2][1])

    # one record may not mix the two framings
    mixed = struct.pack("<II", MAGIC, 1 << 29 | 24) + img0[:24] + alt_frame(3, img0[24:])
    rec, _ = write_file(tmp_path, "mixed", [(0, mixed)])
    with pytest.raises(DataError, match=r"mixed.rec: frame at byte offset 32 has magic 0x3ed7230a, "
                                        r"but the record it continues \(byte offset 0\) began with 0xced7230a"):
        R.RecordFile(rec).read(0)


def test_writer_splits_at_aligned_magic_and_reader_rejoins():
    mb = struct.pack("<I", MAGIC)
    payload = mb + b"abcd" + mb + mb + b"xyzq" + mb + b"tail!"  # magic at 0, 8, 12, 20
    framed = R.frame_record(payload)
    flags, pos = [], 0
    while pos < len(framed):
        magic, lrec = struct.unpack_from("<II", framed, pos)
        assert magic == MAGIC
        flags.append(lrec >> 29)
        pos += 8 + ((lrec & (2**29 - 1)) + 3) // 4 * 4
    assert flags == [1, 2, 2, 2, 3]  # cuts at 0, 8, 12, 20 (all 4-aligned)
    assert R.read_frames(framed, 0, "f")[0] == payload
    unaligned = b"ab" + mb + b"cd"
    assert struct.unpack_from("<I", R.frame_record(unaligned), 4)[0] >> 29 == 0
    assert R.read_frames(R.frame_record(unaligned), 0, "f")[0] == unaligned
    assert len(R.frame_record(b"abcde")) == 8 + 8  # padded to 4 bytes


def test_hand_built_insightface_layout_and_no_idx_scan(tmp_path):
    imgs = [png(20 + i) for i in range(3)]
    records = [(0, frame(0, ir([4.0, 6.0], b"", 0, 1)))]
    records += [(k, frame(0, ir(float(lab), imgs[k - 1][0], k))) for k, lab in ((1, 0), (2, 0), (3, 1))]
    records += [(4, frame(0, ir([1.0, 3.0], b"", 4))), (5, frame(0, ir([3.0, 4.0], b"", 5)))]
    rec, _ = write_file(tmp_path, "train", records)
    ds = R.RecordDataset(rec)
    assert ds.layout.kind == "insightface" and ds.labels.tolist() == [0, 0, 1]
    assert ds._checked_labels is not None
    assert np.array_equal(ds.read(2), imgs[2][1])

    os.remove(tmp_path / "train.idx")  # keys are then positions in the file
    rf = R.RecordFile(rec)
    assert rf.idx_path is None and rf.keys.tolist() == [0, 1, 2, 3, 4, 5]
    assert R.RecordDataset(rec).labels.tolist() == [0, 0, 1]


def test_label_disagreeing_with_range_record_is_named(tmp_path):
    img = png(3)[0]
    records = [(0, frame(0, ir([3.0, 4.0], b"", 0, 1))), (1, frame(0, ir(0.0, img, 1))),
               (2, frame(0, ir(1.0, img, 2))), (3, frame(0, ir([1.0, 3.0], b"", 3)))]
    rec, offsets = write_file(tmp_path, "mix", records)
    ds = R.RecordDataset(rec)
    with pytest.raises(DataError, match=rf"record 2 at byte offset {offsets[2]}: label 1.0 disagrees"):
        ds.read(1)


def _good_file(tmp_path):
    imgs = [png(30 + i) for i in range(4)]
    out = tmp_path / "train.rec"
    R.pack(str(out), [(i // 2, imgs[i][0]) for i in range(4)])
    _, offsets = R.read_idx(str(tmp_path / "train.idx"))
    return out, offsets.tolist(), imgs


def test_corrupt_magic_names_file_and_offset(tmp_path):
    out, offsets, _ = _good_file(tmp_path)
    blob = bytearray(out.read_bytes())
    blob[offsets[2]] ^= 0xFF  # key 2
    out.write_bytes(bytes(blob))
    ds = R.RecordDataset(str(out))
    with pytest.raises(DataError, match=rf"train.rec: bad RecordIO magic .* at byte offset {offsets[2]}"):
        ds.load([1])
    ds.load([0, 2, 3])


def test_truncated_file_names_offset(tmp_path):
    out, offsets, _ = _good_file(tmp_path)
    blob = out.read_bytes()
    # cut inside the last image record (key 4); the .idx still lists the range records after it
    out.write_bytes(blob[:offsets[4] + 100])
    with pytest.raises(DataError, match=rf"train.idx: key 5 points at byte offset {offsets[5]}, past the end"):
        R.RecordFile(str(out))
    os.remove(tmp_path / "train.idx")
    with pytest.raises(DataError, match=rf"train.rec: truncated record at byte offset {offsets[4]}: frame of \d+ bytes"):
        R.RecordFile(str(out))
    out.write_bytes(blob[:offsets[4] + 5])
    with pytest.raises(DataError, match=rf"truncated record at byte offset {offsets[4]}: 5 bytes left"):
        R.RecordFile(str(out))


def test_bad_structures_are_named(tmp_path):
    img = png(5)[0]
    with pytest.raises(DataError, match=r"f: continuation flag 2 out of sequence at byte offset 0"):
        R.read_frames(frame(2, b"abcd"), 0, "f")
    with pytest.raises(DataError, match=r"continuation flag 0 out of sequence at byte offset 12"):
        R.read_frames(frame(1, b"abcd") + frame(0, b"efgh"), 0, "f")
    with pytest.raises(DataError, match=r"here: record of 10 bytes is shorter than the 24-byte IRHeader"):
        R.unpack_record(b"x" * 10, "here")
    with pytest.raises(DataError, match=r"here: IRHeader flag 9 announces 9 float32 labels"):
        R.unpack_record(struct.pack("<IfQQ", 9, 0, 0, 0) + b"\0" * 8, "here")
    (tmp_path / "bad.rec").write_bytes(frame(0, ir(0.0, img)))
    (tmp_path / "bad.idx").write_text("0\t0\nzero one\n")
    with pytest.raises(DataError, match=r"bad.idx:2: expected 'key<TAB>offset'"):
        R.RecordFile(str(tmp_path / "bad.rec"))


def test_corrupt_image_stops_or_is_skipped_and_counted(tmp_path):
    imgs = [png(40 + i) for i in range(3)]
    broken = imgs[1][0][:200]  # truncated PNG
    records = [(k, frame(0, ir(0.0, data, k))) for k, data in ((10, imgs[0][0]), (11, broken), (12, imgs[2][0]))]
    rec, offsets = write_file(tmp_path, "img", records)
    ds = R.RecordDataset(rec)
    with pytest.raises(DataError, match=rf"img.rec: record 11 at byte offset {offsets[11]}: cannot decode image"):
        ds.load([1])
    ds = R.RecordDataset(rec, skip_bad=True)
    batch = ds.load([0, 1, 1, 2])
    assert ds.skipped == 1 and ds.bad == {1}
    # the bad sample is replaced by the next readable image of the same identity
    assert np.array_equal(batch[1].numpy(), to_tensor_batch([imgs[2][1]], 112)[0].numpy())
    assert np.array_equal(batch[1].numpy(), batch[2].numpy())


def test_pack_refuses_bad_input(tmp_path):
    with pytest.raises(DataError, match="nothing to pack"):
        R.pack(str(tmp_path / "e.rec"), [])
    with pytest.raises(DataError, match=r"sample 0 \(label 0\): cannot read image header"):
        R.pack(str(tmp_path / "g.rec"), [(0, b"not an image")])


def test_bad_framing_is_skipped_with_skip_bad_in_an_im2rec_pack(tmp_path, capfd):
    """Issue #12, item 10: an im2rec pack's labels are in each record's own header, read at load;
    a record with bad framing there stopped the load even with skip_bad."""
    imgs = [png(50 + i) for i in range(4)]
    records = [(k, frame(0, ir(float(k % 2), imgs[i][0], k))) for i, k in enumerate((10, 11, 12, 13))]
    rec, offsets = write_file(tmp_path, "img", records)
    blob = bytearray(open(rec, "rb").read())
    blob[offsets[11] + 1] ^= 0x5A  # the magic word of key 11
    struct.pack_into("<I", blob, offsets[12] + 4, (1 << 29) - 1)  # key 12: a length past the end
    open(rec, "wb").write(bytes(blob))
    with pytest.raises(DataError, match=rf"img.rec: bad RecordIO magic .* at byte offset {offsets[11]}"):
        R.RecordDataset(rec)
    ds = R.RecordDataset(rec, skip_bad=True)
    assert len(ds) == 2 and ds.keys.tolist() == [10, 13] and ds.labels.tolist() == [0, 1]
    assert ds.skipped_records == 2
    err = capfd.readouterr().err
    assert f"skipping record 11: {rec}: bad RecordIO magic" in err
    assert f"skipping record 12: {rec}: truncated record at byte offset {offsets[12]}" in err
    batch = ds.load([0, 1])
    assert np.array_equal(batch.numpy(), to_tensor_batch([imgs[0][1], imgs[3][1]], 112).numpy())


def test_bad_framing_of_an_image_is_skipped_in_an_insightface_pack(tmp_path):
    out, offsets, imgs = _good_file(tmp_path)
    blob = bytearray(out.read_bytes())
    blob[offsets[2]] ^= 0xFF  # the magic word of key 2 (sample 1, identity 0)
    out.write_bytes(bytes(blob))
    ds = R.RecordDataset(str(out), skip_bad=True)
    batch = ds.load([1])
    assert ds.skipped == 1 and ds.bad == {1}
    assert np.array_equal(batch[0].numpy(), to_tensor_batch([imgs[0][1]], 112)[0].numpy())  # same identity
