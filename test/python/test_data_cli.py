"""`python -m dmfr.cli data inspect|pack|unpack` round trips on real files."""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmfr.data.recordio import RecordDataset, read_idx

REPO = Path(__file__).resolve().parents[2]


def dmfr(*args, ok=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    proc = subprocess.run([sys.executable, "-m", "dmfr.cli", "data", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture()
def tree(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "src"
    for name, files in (("ann", ["1.jpg", "2.png"]), ("bo", ["1.pgm"]), ("cy", ["a.png", "b.jpg", "c.png"])):
        (root / name).mkdir(parents=True)
        for f in files:
            arr = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            img = Image.fromarray(arr).convert("L") if f.endswith(".pgm") else Image.fromarray(arr)
            img.save(root / name / f)
    return root


def test_pack_and_inspect_both_print_sizes_height_first(tmp_path):
    # Images 48 high and 40 wide: `pack` and `inspect` must both say 48x40 (HxW, docs/data.md).
    root = tmp_path / "tall"
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(root / name / "1.png")
    rec = tmp_path / "pack" / "train.rec"
    assert "sizes 48x40 x2" in dmfr("pack", root, rec).stdout
    report = json.loads(dmfr("inspect", rec, "--json").stdout)
    assert report["image_sizes"] == {"48x40": 2} and report["problems"] == []
    assert report["property"] == {"num_classes": 2, "height": 48, "width": 40}
    text = dmfr("inspect", rec).stdout
    assert "property: 2 identities, 48x40" in text and "48x40 x2" in text
    assert "48x40 x2" in dmfr("inspect", root).stdout  # an image folder too


def test_pack_inspect_unpack_repack_round_trip(tree, tmp_path):
    rec = tmp_path / "pack" / "train.rec"
    out = dmfr("pack", tree, rec).stdout
    assert "packed 6 images of 3 identities" in out
    report = json.loads(dmfr("inspect", rec, "--json").stdout)
    assert report["format"] == "rec" and report["layout"] == "insightface"
    assert (report["images"], report["identities"], report["records"]) == (6, 3, 10)
    assert report["image_sizes"] == {"112x112": 6} and report["problems"] == []
    assert report["property"] == {"num_classes": 3, "height": 112, "width": 112}
    assert report["per_identity"] == {"min": 1, "median": 2.0, "mean": 2.0, "max": 3, "single_image": 1}
    text = dmfr("inspect", rec.parent).stdout
    assert "format: rec (insightface layout)" in text and "problems: none" in text

    dmfr("unpack", rec, tmp_path / "un")
    un = tmp_path / "un"
    assert sorted(os.listdir(un)) == ["0", "1", "2"]
    assert sorted(os.listdir(un / "2")) == ["4.png", "5.jpg", "6.png"]
    assert (un / "0" / "1.jpg").read_bytes() == (tree / "ann" / "1.jpg").read_bytes()  # bytes kept
    assert (un / "2" / "6.png").read_bytes() == (tree / "cy" / "c.png").read_bytes()
    pgm = np.asarray(Image.open(tree / "bo" / "1.pgm").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(un / "1" / "3.png").convert("RGB")), pgm)  # lossless

    rec2 = tmp_path / "pack2" / "train.rec"
    dmfr("pack", un, rec2)
    a, b = RecordDataset(str(rec)), RecordDataset(str(rec2))
    assert a.labels.tolist() == b.labels.tolist() == [0, 0, 1, 2, 2, 2]
    assert all(a.read_raw(i)[1] == b.read_raw(i)[1] for i in range(len(a)))
    assert (rec.parent / "train.rec").read_bytes() == rec2.read_bytes()


def test_list_pack_and_resize(tree, tmp_path):
    lst = tree / "list.txt"
    lst.write_text("cy/a.png 4\nann/1.jpg 1\n")
    rec = tmp_path / "l" / "train.rec"
    dmfr("pack", lst, rec, "--image-size", 64)
    ds = RecordDataset(str(rec), image_size=64)
    assert ds.labels.tolist() == [1, 4] and ds.num_classes == 5 and ds.read(1).shape == (64, 64, 3)
    report = json.loads(dmfr("inspect", lst, "--json").stdout)
    assert report["format"] == "list" and report["images"] == 2 and report["identities"] == 2


def test_corrupt_rec_is_reported_with_offset(tree, tmp_path):
    rec = tmp_path / "c" / "train.rec"
    dmfr("pack", tree, rec)
    _, offsets = read_idx(str(rec.with_suffix(".idx")))
    blob = bytearray(rec.read_bytes())
    blob[int(offsets[3]) + 2] ^= 0x55  # magic of key 3
    png = int(offsets[4]) + 8 + 24  # image 4 (cy/a.png): wipe its PNG header chunk
    blob[png + 8:png + 60] = bytes(52)
    rec.write_bytes(bytes(blob))
    proc = dmfr("inspect", rec, "--json", ok=False)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert any(f"bad RecordIO magic" in p and f"byte offset {offsets[3]}" in p for p in problems)
    assert any(f"record 4 at byte offset {offsets[4]}: cannot decode image" in p for p in problems)
    proc = dmfr("unpack", rec, tmp_path / "u", ok=False)
    assert proc.returncode == 2 and f"dmfr: error: {rec}: bad RecordIO magic" in proc.stderr
    assert f"byte offset {offsets[3]}" in proc.stderr
    proc = dmfr("unpack", rec, tmp_path / "u2", "--skip-bad")
    assert "skipped 1 bad records" in proc.stdout  # key 4 is an intact record of a broken image


def test_inspect_says_how_many_images_decoded(tree):
    """Issue #12, item 10: "(N decoded)" counted every image it tried, the broken ones too."""
    (tree / "cy" / "b.jpg").write_bytes(b"\xff\xd8\xff not the rest of a JPEG")
    proc = dmfr("inspect", tree, ok=False)
    assert proc.returncode == 1
    assert "image sizes (5 of 6 checked decoded): 112x112 x5" in proc.stdout
    report = json.loads(dmfr("inspect", tree, "--json", ok=False).stdout)
    assert report["checked_images"] == 6 and report["decoded_images"] == 5 and report["problem_count"] == 1


def test_inspect_detects_formats_and_bad_paths(tree, tmp_path):
    assert json.loads(dmfr("inspect", tree, "--json").stdout)["format"] == "folder"
    (tree / "junk.txt").write_text("x")  # files at the root are not identities
    (tree / "ann" / "notes.txt").write_text("x")
    proc = dmfr("inspect", tree, "--json", ok=False)
    assert proc.returncode == 1 and "1 files that are not images were ignored" in proc.stdout

    lfw = tmp_path / "lfw"
    (lfw / "images" / "Ann").mkdir(parents=True)
    Image.new("L", (250, 250), 77).save(lfw / "images" / "Ann" / "Ann_0001.jpg")
    (lfw / "pairs.txt").write_text("1 1\nAnn\t1\t2\nAnn\t1\tBo\t1\n")
    proc = dmfr("inspect", lfw, "--json", ok=False)
    report = json.loads(proc.stdout)
    assert report["format"] == "lfw" and report["pairs"] == 2 and report["images"] == 3
    assert report["problem_count"] == 2 and "Ann/Ann_0002.jpg: named by" in report["problems"][0]
    assert report["image_sizes"] == {"250x250": 1}

    buf = io.BytesIO()
    Image.new("RGB", (112, 112)).save(buf, format="JPEG")
    with open(tmp_path / "v.bin", "wb") as f:
        pickle.dump(([buf.getvalue()] * 4, [True, False]), f)
    report = json.loads(dmfr("inspect", tmp_path / "v.bin", "--json").stdout)
    assert (report["format"], report["images"], report["pairs"], report["same_pairs"]) == ("bin", 4, 2, 1)

    proc = dmfr("inspect", tmp_path / "missing", ok=False)
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr
    proc = dmfr("pack", tree, tmp_path / "x.zip", ok=False)
    assert proc.returncode == 2 and "must end in .rec" in proc.stderr


def test_synth_and_register_are_wired():
    import argparse

    from dmfr.cli import data as data_cli
    from dmfr.data import manifest, synth

    parser = argparse.ArgumentParser(prog="dmfr")
    data_cli.register(parser.add_subparsers(dest="verb"))
    assert parser.parse_args(["data", "synth", "--from", "x", "--generator", "pose", "--delta", "30", "--out", "y"]).func is synth.run
    assert parser.parse_args(["data", "register", "--folder", "x", "--manifest", "m.jsonl"]).func is manifest.run_register
