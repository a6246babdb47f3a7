"""Real photographs (../shared/data/faces): identity selection, crop/alignment recorded in and
applied from the checkpoint, the pairs builder, the cross-quality protocol, `data align`.

Every test skips, saying why, where the shared faces are absent (a fresh clone has none).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dmfr.cli.__main__ import main
from dmfr.data.images import load_image, to_tensor_batch
from dmfr.data.registry import build_dataset
from dmfr.errors import ConfigError, DataError

from tiny_data import one_thread, tiny_config  # noqa: F401 - one_thread: autouse fixture

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces"
LFW_IMAGES, LFW_PAIRS = FACES / "lfw" / "images", FACES / "lfw" / "pairs.txt"
ORL, LFW10 = FACES / "orl", FACES / "lfw10"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the real-face tests need ../shared/data/faces beside the repo")
    return path


def folder_config(path, image_size=32, **data) -> dict:
    return tiny_config(data={"kind": "folder", "path": str(path), "image_size": image_size, **data})


# ---------------------------------------------------------------- identity selection (data.select)

def test_lfw_selection_keeps_people_of_folds_1_to_8_with_two_images():
    need(LFW_PAIRS)
    from dmfr.data.lfw import read_pairs_file

    ds = build_dataset(folder_config(LFW_IMAGES, select={
        "min_images": 2, "exclude_pairs": str(LFW_PAIRS), "exclude_folds": [9, 10]}))
    pairs = read_pairs_file(LFW_PAIRS)
    held_out = {k.split("/")[0] for i, (a, b, _) in enumerate(pairs.pairs) if pairs.fold_of(i) >= 8 for k in (a, b)}
    kept = set(ds.class_names)
    assert kept and not kept & held_out
    counts = np.bincount(ds.labels, minlength=ds.num_classes)
    assert counts.min() >= 2 and len(ds) == counts.sum()
    # every LFW person with ≥ 2 images outside folds 9–10 is kept (the 1,334 people)
    everyone = {e.name: len(os.listdir(e.path)) for e in os.scandir(LFW_IMAGES) if e.is_dir()}
    assert kept == {n for n, c in everyone.items() if c >= 2 and n not in held_out}
    assert ds.num_classes == 1334
    assert ds.selection.report()["dropped_identities"]["exclude_pairs"] == len(held_out & set(everyone))


def test_include_exclude_and_relabelling_on_orl():
    need(ORL)
    ds = build_dataset(folder_config(ORL, select={"include": ["s3", "s1", "s10"], "exclude": ["s10"]}))
    assert ds.class_names == ["s1", "s3"] and ds.num_classes == 2
    assert sorted(set(ds.labels.tolist())) == [0, 1] and len(ds) == 20
    assert all(p.split("/")[0] == ds.class_names[lab] for p, lab in zip(ds.paths, ds.labels))


@pytest.mark.parametrize("select, message", [
    ({"include": ["s1", "s99"]}, r"data\.select\.include\[1\]: unknown identity 's99'"),
    ({"exclude": ["nobody"]}, r"data\.select\.exclude\[0\]: unknown identity 'nobody'"),
    ({"min_images": 11}, r"no identity of .*orl is left"),
    ({"exclude_folds": [1]}, r"exclude_folds needs data\.select\.exclude_pairs"),
])
def test_selection_errors_name_the_field(select, message):
    need(ORL)
    with pytest.raises(ConfigError, match=message):
        build_dataset(folder_config(ORL, select=select))


def test_a_pairs_file_whose_folds_overlap_is_refused(tmp_path):
    need(ORL)
    bad = tmp_path / "pairs.txt"
    # fold 1: s1 and s2; fold 2 names s2 again (line 7) — its pairs would leak into training
    bad.write_text("2\t1\ns1\t1.pgm\t2.pgm\ns1\t1.pgm\ts2\t1.pgm\ns3\t1.pgm\t2.pgm\ns3\t1.pgm\ts2\t3.pgm\n")
    with pytest.raises(DataError, match=r"pairs\.txt:5: identity 's2' in fold 2 also appears in fold 1 \(line 3\)"):
        build_dataset(folder_config(ORL, select={"exclude_pairs": str(bad), "exclude_folds": [2]}))


def test_inspect_reports_what_the_selection_keeps(capsys):
    need(ORL)
    assert main(["data", "inspect", str(ORL), "--limit", "1", "--exclude", "s1,s2", "--json"]) == 0
    sel = json.loads(capsys.readouterr().out)["selection"]
    assert (sel["identities"], sel["images"], sel["identities_before"]) == (38, 380, 40)
    assert sel["dropped_identities"] == {"exclude": 2}


# ---------------------------------------------------------------- crop and alignment (data.preprocess)

def test_crop_box_is_applied_at_training_time():
    need(ORL)
    box = [10, 20, 60, 70]  # ORL images are 92x112
    ds = build_dataset(folder_config(ORL, preprocess={"crop_box": box}))
    img = load_image(ORL / ds.paths[3])
    expected = to_tensor_batch([img[20:90, 10:70]], 32)
    assert torch.equal(ds.load(np.array([3])), expected)
    assert not torch.equal(expected, to_tensor_batch([img], 32))


@pytest.mark.parametrize("preprocess, message", [
    ({"crop_box": [40, 50, 60, 70]}, r"s1/1\.pgm: crop box \[x=40, y=50, w=60, h=70\] lies outside the 92x112 image"),
    ({"crop_center": [100, 100]}, r"s1/1\.pgm: centre crop 100x100 is larger than the 92x112 image"),
])
def test_a_crop_outside_the_image_names_it(preprocess, message):
    need(ORL)
    ds = build_dataset(folder_config(ORL, preprocess=preprocess))
    with pytest.raises(DataError, match=message):
        ds.load(np.array([0]))


# Plausible eye / nose / mouth positions of LFW's 250x250 frames (the face is centred there).
LFW_LANDMARKS = [106.0, 112.0, 145.0, 112.0, 126.0, 136.0, 109.0, 156.0, 142.0, 156.0]


def write_landmarks(path: Path, keys, jitter=0.0) -> Path:
    rng = np.random.default_rng(0)
    lines = [k + " " + " ".join(f"{v + rng.uniform(-jitter, jitter):.2f}" for v in LFW_LANDMARKS) for k in keys]
    path.write_text("# image x1 y1 … x5 y5\n" + "\n".join(lines) + "\n")
    return path


def lfw10_keys():
    return sorted(f"{d}/{f}" for d in os.listdir(LFW10) for f in os.listdir(LFW10 / d))


@pytest.mark.parametrize("body, message", [
    ("Ariel_Sharon/Ariel_Sharon_0001.jpg 1 2 3 4 5 6 7 8 9\n", r"landmarks\.txt:1: expected 'image x1 y1 .*got 10 fields"),
    ("Ariel_Sharon/Ariel_Sharon_0001.jpg 1 2 3 4 5 6 7 8 9 x\n", r"landmarks\.txt:1: landmark value 'x' is not a number"),
    ("a.jpg 1 2 3 4 5 6 7 8 9 10\na.jpg 1 2 3 4 5 6 7 8 9 10\n", r"landmarks\.txt:2: image 'a\.jpg' already has landmarks on line 1"),
    ("Ariel_Sharon/Ariel_Sharon_0001.jpg 1 2 3 4 5 6 7 8 9 10\n",
     r"landmarks\.txt: no landmarks for image 'Ariel_Sharon/Ariel_Sharon_0002\.jpg' of .*lfw10 \(and 98 more\)"),
])
def test_a_bad_landmarks_file_names_file_line_and_image(tmp_path, body, message):
    need(LFW10)
    (tmp_path / "landmarks.txt").write_text(body)
    with pytest.raises(DataError, match=message):
        build_dataset(folder_config(LFW10, preprocess={"landmarks": str(tmp_path / "landmarks.txt")}))


def train_checkpoint(config, out: Path) -> Path:
    from dmfr.checkpoint import latest_checkpoint
    from dmfr.trainer import Trainer, local_plans

    ds = build_dataset(config)
    Trainer(config, ds, checkpoint_dir=out).run(local_plans(config, ds.labels, 0, 1))
    return latest_checkpoint(out)


@pytest.mark.parametrize("kind", ["crop_center", "landmarks"])
def test_preprocessing_is_recorded_in_the_checkpoint_and_applied_by_embed_eval_export(tmp_path, kind, capsys):
    need(LFW10)
    from dmfr.checkpoint import load_checkpoint
    from dmfr.data.align import norm_crop
    from dmfr.embed import Embedder

    keys = lfw10_keys()
    landmarks = write_landmarks(tmp_path / "landmarks.txt", keys, jitter=3.0)
    preprocess = {"crop_center": [110, 110]} if kind == "crop_center" else {"landmarks": str(landmarks)}
    config = folder_config(LFW10, image_size=32, preprocess=preprocess)
    config["train"].update(steps=2, batch_size=8)
    ckpt = train_checkpoint(config, tmp_path / "ckpt")
    assert load_checkpoint(ckpt)["config"]["data"]["preprocess"][kind] == preprocess[kind]

    key = keys[7]
    img = load_image(LFW10 / key)
    if kind == "crop_center":
        prepared = img[70:180, 70:180]  # the 110x110 box at (70, 70) of a 250x250 frame
    else:
        lm = np.loadtxt(str(landmarks), usecols=range(1, 11), dtype=np.float64)[7].reshape(5, 2)  # keys[7]'s row
        prepared = norm_crop(img, lm, 32)
    embedder = Embedder.from_checkpoint(ckpt)
    want = embedder.embed_tensor(to_tensor_batch([prepared], 32), flip=False)[0]
    raw = embedder.embed_tensor(to_tensor_batch([img], 32), flip=False)[0]
    assert not np.allclose(want, raw, atol=1e-3)

    # dmfr embed: told nothing about the preprocessing
    out = tmp_path / "f.npy"
    assert main(["embed", str(ckpt), "--images", str(LFW10), "--out", str(out)]) == 0
    rows = (tmp_path / "f.keys.txt").read_text().splitlines()
    # the same float32 arithmetic on the same input, batched differently: equal up to summation
    # order inside the BLAS kernels (~1e-6 relative of |feature| ~ 1); 1e-5 leaves 10x headroom
    np.testing.assert_allclose(np.load(out)[rows.index(key)], want, rtol=1e-5, atol=1e-5)

    # dmfr eval verification (the service runs the same CLI): same features, flip-summed
    pairs = tmp_path / "pairs.txt"
    assert main(["data", "pairs", "--from", str(LFW10), "--folds", "2", "--pairs-per-fold", "3", "--out", str(pairs)]) == 0
    from dmfr.eval.features import embed_image_files

    table = embed_image_files(str(ckpt), str(LFW10), [key], batch_size=4)
    flip_want = embedder.embed_tensor(to_tensor_batch([prepared], 32), flip=True)[0]
    np.testing.assert_allclose(table.features[0], flip_want, rtol=1e-5, atol=1e-5)
    assert main(["eval", "verification", "--pairs", str(pairs), "--images", str(LFW10),
                 "--checkpoint", str(ckpt), "--folds", "2", "--json"]) == 0
    capsys.readouterr()

    # dmfr export: the ONNX file says what to do before its input
    import onnx

    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]) == 0
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    recorded = json.loads(meta["dmfr.preprocess"])
    assert recorded["image_size"] == 32 and recorded[kind] == preprocess[kind]


def test_landmarks_override_for_other_images(tmp_path):
    need(LFW10)
    from dmfr.embed import Embedder

    keys = lfw10_keys()
    config = folder_config(LFW10, image_size=32, preprocess={"landmarks": str(write_landmarks(tmp_path / "a.txt", keys))})
    config["train"].update(steps=1, batch_size=8)
    ckpt = train_checkpoint(config, tmp_path / "ckpt")
    other = write_landmarks(tmp_path / "b.txt", keys[:1])
    emb = Embedder.from_checkpoint(ckpt, landmarks=str(other))
    assert emb.preprocess.landmarks_path == str(other)
    with pytest.raises(DataError, match=r"b\.txt: no landmarks for image '.*_0002\.jpg' of the images to embed"):
        emb.embed_paths([LFW10 / k for k in keys[:2]], keys=keys[:2])


# ---------------------------------------------------------------- protocol builders

def test_pairs_builder_on_lfw_disjoint_balanced_deterministic(tmp_path):
    need(LFW_IMAGES)
    from dmfr.data.lfw import read_pairs_file
    from dmfr.data.selection import pairs_identities_by_fold

    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    args = ["data", "pairs", "--from", str(LFW_IMAGES), "--folds", "10", "--pairs-per-fold", "300"]
    assert main(args + ["--out", str(a)]) == 0
    assert main(args + ["--out", str(b)]) == 0
    assert main(args + ["--seed", "1", "--out", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    pairs = read_pairs_file(a)
    assert (pairs.folds, pairs.pairs_per_fold, len(pairs.pairs)) == (10, 300, 6000)
    by_fold = pairs_identities_by_fold(str(a))  # raises if two folds share an identity
    assert sum(len(v) for v in by_fold.values()) == len(set().union(*by_fold.values()))
    seen = set()
    for i, (k1, k2, same) in enumerate(pairs.pairs):
        assert same == (i % 600 < 300)  # 300 same, then 300 different, in every fold
        assert (k1.split("/")[0] == k2.split("/")[0]) == same and k1 != k2
        assert (LFW_IMAGES / k1).is_file() and (LFW_IMAGES / k2).is_file()
        assert frozenset((k1, k2)) not in seen
        seen.add(frozenset((k1, k2)))


def test_pairs_builder_writes_file_names_where_lfw_numbers_do_not_fit(tmp_path, capsys):
    need(ORL)
    from dmfr.data.lfw import read_pairs_file

    out = tmp_path / "orl.txt"
    assert main(["data", "pairs", "--from", str(ORL), "--folds", "4", "--pairs-per-fold", "20", "--out", str(out)]) == 0
    assert out.read_text().splitlines()[1].split("\t")[1].endswith(".pgm")
    pairs = read_pairs_file(out)
    assert all((ORL / k).is_file() for a, b, _ in pairs.pairs for k in (a, b))
    # a fold of 10 ORL people holds 10 x C(10, 2) = 450 same-person pairs, no more
    assert main(["data", "pairs", "--from", str(ORL), "--folds", "4", "--pairs-per-fold", "451",
                 "--out", str(tmp_path / "x.txt")]) == 2
    assert "fold 1 of 4 has 10 identities with ≥ 2 images, 450 distinct same-person pairs" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


def test_cross_quality_protocol_degrades_one_side_of_each_pair(tmp_path, capsys):
    need(LFW10)
    from dmfr.data.lfw import read_pairs_file

    pairs = tmp_path / "pairs.txt"
    assert main(["data", "pairs", "--from", str(LFW10), "--folds", "2", "--pairs-per-fold", "4", "--out", str(pairs)]) == 0
    out1, out2 = tmp_path / "xq1", tmp_path / "xq2"
    for out in (out1, out2):
        assert main(["data", "cross-quality", "--images", str(LFW10), "--pairs", str(pairs), "--folds", "2",
                     "--out", str(out)]) == 0
    xq = read_pairs_file(out1 / "pairs.txt")
    assert (xq.folds, len(xq.pairs)) == (1, 8)
    held = read_pairs_file(pairs).pairs[8:]
    for (a, b, same), (sa, sb, ssame) in zip(xq.pairs, held):
        assert same == ssame and [a.endswith("_xq.jpg"), b.endswith("_xq.jpg")].count(True) == 1
        for k, src in ((a, sa), (b, sb)):
            assert (out1 / "images" / k).is_file()
            if k.endswith("_xq.jpg"):
                assert k == src[:-4] + "_xq.jpg"
                clean, bad = load_image(LFW10 / src).astype(float), load_image(out1 / "images" / k).astype(float)
                assert bad.shape == clean.shape and not np.array_equal(bad, clean)
    assert sorted(p.name for p in out1.rglob("*")) == sorted(p.name for p in out2.rglob("*"))
    assert all(p.read_bytes() == (out2 / p.relative_to(out1)).read_bytes() for p in out1.rglob("*") if p.is_file())
    import csv

    from dmfr.data import cross_quality as cq

    rows = list(csv.DictReader((out1 / "degradations.csv").open()))
    assert len(rows) == 8 and {r["image"] for r in rows} == {k for a, b, _ in xq.pairs for k in (a, b) if "_xq" in k}
    for r in rows:  # every draw inside the documented camera ranges
        assert cq.EXPOSURE[0] <= float(r["exposure"]) <= cq.EXPOSURE[1]
        assert cq.SHAKE_PX[0] <= int(r["shake_px"]) <= cq.SHAKE_PX[1] and int(r["binning"]) in cq.BINNING
        assert cq.JPEG_QUALITY[0] <= int(r["jpeg_quality"]) <= cq.JPEG_QUALITY[1]
    before = sorted(out1.rglob("*"))
    assert main(["data", "cross-quality", "--images", str(LFW10), "--pairs", str(pairs), "--folds", "1",
                 "--out", str(out1)]) == 2
    assert "xq1: already exists and is not empty" in capsys.readouterr().err and sorted(out1.rglob("*")) == before


# ---------------------------------------------------------------- data align (dlib)

def test_align_detects_aligns_and_reports_faceless_images(tmp_path, capsys, monkeypatch):
    need(LFW10)
    pytest.importorskip("dlib", reason="data align needs dlib (dlib-bin in requirements.txt)")
    from PIL import Image

    src = tmp_path / "src"
    shutil.copytree(LFW10 / "Tony_Blair", src / "Tony_Blair")
    for f in sorted(os.listdir(src / "Tony_Blair"))[4:]:
        os.unlink(src / "Tony_Blair" / f)
    Image.fromarray(np.full((120, 100), 128, np.uint8)).save(src / "Tony_Blair" / "wall.png")
    (src / "Tony_Blair" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "aligned"
    assert main(["data", "align", "--from", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{src / 'Tony_Blair' / 'wall.png'}: no face found" in err
    assert f"{src / 'Tony_Blair' / 'broken.jpg'}: unreadable" in err
    rows = [ln.split() for ln in (out / "landmarks.txt").read_text().splitlines() if not ln.startswith("#")]
    assert len(rows) == 4
    for row in rows:
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = np.array(row[1:], float).reshape(5, 2)
        # image-left eye left of the other, eyes above the nose tip above the mouth corners
        assert lx < rx and mlx < mrx and max(ly, ry) < ny < min(mly, mry)
        assert Image.open(out / row[0]).size == (112, 112)
    assert (out / "Tony_Blair" / "wall.png").is_file()  # aligned with the mean landmarks, reported
    assert not (out / "Tony_Blair" / "broken.jpg").exists()

    # landmarks.txt is a data.preprocess.landmarks file for the source images
    from dmfr.data.preprocess import read_landmarks

    assert len(read_landmarks(str(out / "landmarks.txt"))) == 4

    # nothing half-written: an existing output is refused, and a failure mid-way leaves no folder
    assert main(["data", "align", "--from", str(src), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    import dmfr.data.align as align

    calls = []

    def failing(img, lm, size=112):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(img, lm, size)

    real = align.norm_crop
    monkeypatch.setattr(align, "norm_crop", failing)  # a fault a real disk does not give on demand
    with pytest.raises(OSError):
        main(["data", "align", "--from", str(src), "--out", str(tmp_path / "half")])
    assert not (tmp_path / "half").exists() and not any(p.name.startswith(".half") for p in tmp_path.iterdir())


def test_templates_builder_files_read_by_eval_templates(tmp_path, capsys):
    need(ORL)
    from dmfr.eval.templates import read_media, read_template_pairs

    out = tmp_path / "tpl"
    assert main(["data", "templates", "--from", str(ORL), "--out", str(out), "--impostors", "5"]) == 0
    media, pairs = read_media(str(out / "media.txt")), read_template_pairs(str(out / "pairs.txt"))
    assert len(media.images) == 400 and sorted(media.images) == sorted(f"s{i}/{m}.pgm" for i in range(1, 41) for m in range(1, 11))
    owner = {}
    for img, t in zip(media.images, media.templates.tolist()):
        assert owner.setdefault(t, img.split("/")[0]) == img.split("/")[0]  # a template holds one identity
    assert len(owner) == 80 and np.bincount(media.templates)[1:].tolist() == [5] * 80
    t1, t2, y = pairs.t1.tolist(), pairs.t2.tolist(), pairs.labels.astype(int)
    assert len(y) == 40 * 6 and int(y.sum()) == 40
    assert all((owner[a] == owner[b]) == bool(lab) for a, b, lab in zip(t1, t2, y))
    assert not (out / "attributes.csv").exists()  # plain photographs carry no attributes
    # the files run through `eval templates` (features: any model's, one row per image)
    np.save(tmp_path / "f.npy", np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32))
    (tmp_path / "k.txt").write_text("\n".join(media.images) + "\n")
    capsys.readouterr()
    assert main(["eval", "templates", "--media", str(out / "media.txt"), "--pairs", str(out / "pairs.txt"),
                 "--features", str(tmp_path / "f.npy"), "--keys", str(tmp_path / "k.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_pairs"] == 240


def test_templates_builder_writes_attributes_of_a_generative_domain(tmp_path, capsys):
    need(LFW10)
    from dmfr.eval.attributes import read_attribute_table

    real = tmp_path / "real"
    for name in sorted(os.listdir(LFW10))[:3]:
        shutil.copytree(LFW10 / name, real / name)
    dom = tmp_path / "quality"
    assert main(["data", "synth", "--from", str(real), "--generator", "quality", "--delta", "0.1", "0.6",
                 "--out", str(dom), "--image-size", "32"]) == 0
    out = tmp_path / "tpl"
    assert main(["data", "templates", "--from", str(dom), "--out", str(out)]) == 0
    table = read_attribute_table(str(out / "attributes.csv"), "quality")
    assert len(table) == 60 and sorted(set(np.round(list(table.values()), 6))) == [0.4, 0.9]  # 1 − Δc


def test_data_select_links_the_selected_identities(tmp_path):
    need(ORL)
    from dmfr.data.folder import scan_folder

    out = tmp_path / "train"
    assert main(["data", "select", "--from", str(ORL), "--out", str(out), "--exclude", "s1,s2", "--min-images", "2"]) == 0
    names, samples, _ = scan_folder(str(out))
    assert names == sorted(f"s{i}" for i in range(3, 41)) and len(samples) == 380
    rel = samples[0][0]
    assert (out / rel).is_symlink() and (out / rel).read_bytes() == (ORL / rel).read_bytes()


def test_eval_verification_on_the_held_out_folds_only(tmp_path, capsys):
    need(LFW10)
    pairs = tmp_path / "pairs.txt"
    assert main(["data", "pairs", "--from", str(LFW10), "--folds", "2", "--pairs-per-fold", "5", "--out", str(pairs)]) == 0
    from dmfr.data.lfw import read_pairs_file

    keys = sorted({k for a, b, _ in read_pairs_file(pairs).pairs for k in (a, b)})
    np.save(tmp_path / "f.npy", np.random.default_rng(0).normal(size=(len(keys), 4)).astype(np.float32))
    (tmp_path / "k.txt").write_text("\n".join(keys) + "\n")
    capsys.readouterr()
    base = ["eval", "verification", "--pairs", str(pairs), "--features", str(tmp_path / "f.npy"),
            "--keys", str(tmp_path / "k.txt"), "--folds", "2", "--json"]
    assert main(base + ["--pairs-folds", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["n_pairs"] == 10
    assert main(base + ["--pairs-folds", "3"]) == 2
    assert "has folds 1..2, not 3" in capsys.readouterr().err
    # without --folds, each named protocol fold is one cross-validation fold (balanced, as LFW's)
    pairs3 = tmp_path / "pairs3.txt"
    assert main(["data", "pairs", "--from", str(LFW10), "--folds", "3", "--pairs-per-fold", "4", "--out", str(pairs3)]) == 0
    keys3 = sorted({k for a, b, _ in read_pairs_file(pairs3).pairs for k in (a, b)})
    np.save(tmp_path / "g.npy", np.random.default_rng(1).normal(size=(len(keys3), 4)).astype(np.float32))
    (tmp_path / "g.txt").write_text("\n".join(keys3) + "\n")
    capsys.readouterr()
    assert main(["eval", "verification", "--pairs", str(pairs3), "--features", str(tmp_path / "g.npy"),
                 "--keys", str(tmp_path / "g.txt"), "--pairs-folds", "2,3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_pairs"] == 16 and len(result["folds"]) == 2
