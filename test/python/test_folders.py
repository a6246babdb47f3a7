"""Image folders, list files and LFW pairs on real files (tmp dirs and ../shared/data/faces)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmfr.data.folder import FolderDataset
from dmfr.data.images import to_tensor_batch
from dmfr.data.lfw import find_lfw, missing_images, read_pairs, read_pairs_file
from dmfr.data.listfile import ListDataset
from dmfr.errors import DataError

FACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "faces"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} absent (real-face test data is not part of a fresh clone)")
    return path


def make_tree(root: Path) -> dict[str, np.ndarray]:
    """bob: 2 PNGs; alice: a grey PGM and a GIF; a README that is not an image."""
    rng = np.random.default_rng(0)
    made = {}
    for rel, kind in (("bob/1.png", "RGB"), ("bob/2.png", "RGB"), ("alice/a.pgm", "L"), ("alice/b.gif", "L")):
        shape = (112, 112, 3) if kind == "RGB" else (112, 92)
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, mode=kind).save(root / rel)
        made[rel] = arr if arr.ndim == 3 else np.repeat(arr[:, :, None], 3, axis=2)
    (root / "bob" / "README.txt").write_text("not an image")
    return made


def test_folder_dataset_labels_and_exact_pixels(tmp_path):
    made = make_tree(tmp_path)
    ds = FolderDataset(str(tmp_path), image_size=112)
    assert ds.class_names == ["alice", "bob"] and ds.num_classes == 2
    assert ds.paths == ["alice/a.pgm", "alice/b.gif", "bob/1.png", "bob/2.png"]
    assert ds.labels.tolist() == [0, 0, 1, 1] and ds.ignored == ["bob/README.txt"]
    for i, rel in enumerate(ds.paths):
        assert np.array_equal(ds.read(i), made[rel])  # grey PGM/GIF -> 3 equal channels
    batch = ds.load([2, 0])
    assert tuple(batch.shape) == (2, 3, 112, 112)
    # (x/255 - 0.5)/0.5 on the exact pixels
    x = made["bob/1.png"].astype(np.float64)
    assert np.allclose(batch[0].numpy(), ((x / 255 - 0.5) / 0.5).transpose(2, 0, 1), atol=1e-6)
    assert np.array_equal(batch[1].numpy(), to_tensor_batch([made["alice/a.pgm"]], 112)[0].numpy())


def test_folder_corrupt_image_named_or_skipped(tmp_path):
    make_tree(tmp_path)
    bad = tmp_path / "bob" / "1.png"
    bad.write_bytes(bad.read_bytes()[:100])
    ds = FolderDataset(str(tmp_path))
    with pytest.raises(DataError, match=rf"{bad}: cannot decode image"):
        ds.load([2])
    ds = FolderDataset(str(tmp_path), skip_bad=True)
    out = ds.load([2, 3])
    assert ds.skipped == 1 and np.array_equal(out[0].numpy(), out[1].numpy())
    bad2 = tmp_path / "bob" / "2.png"
    bad2.write_bytes(b"")
    with pytest.raises(DataError, match=r"identity 'bob': no readable image left"):
        ds.load([3])
    with pytest.raises(DataError, match="no images found"):
        FolderDataset(str(tmp_path / "alice"))


def test_list_dataset_relative_paths_and_errors(tmp_path):
    made = make_tree(tmp_path)
    (tmp_path / "my pics").mkdir()
    Image.fromarray(made["bob/1.png"]).save(tmp_path / "my pics" / "x 1.png")
    lst = tmp_path / "train.txt"
    lst.write_text("# comment\nbob/2.png 3\n\nmy pics/x 1.png 0\nalice/a.pgm\t3\n")
    ds = ListDataset(str(lst))
    assert ds.labels.tolist() == [3, 0, 3] and ds.num_classes == 4
    assert np.array_equal(ds.read(1), made["bob/1.png"])
    assert ds.load([0, 1, 2]).shape == (3, 3, 112, 112)
    lst.write_text("bob/2.png 0\nbob/1.png x\n")
    with pytest.raises(DataError, match=r"train.txt:2: label 'x' is not an integer"):
        ListDataset(str(lst))
    lst.write_text("bob/2.png 0\nlonely\n")
    with pytest.raises(DataError, match=r"train.txt:2: expected 'path label'"):
        ListDataset(str(lst))
    lst.write_text("missing.png 0\n")
    with pytest.raises(DataError, match=r"missing.png: cannot read image"):
        ListDataset(str(lst)).load([0])


def test_lfw_pairs_parse_and_errors(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text("2 1\nAnn\t1\t2\nAnn\t1\tBo_B\t3\nBo_B 2 3\nAnn 2 Bo_B 1\n")
    parsed = read_pairs_file(str(p))
    assert (parsed.folds, parsed.pairs_per_fold) == (2, 1)
    assert read_pairs(str(p)) == [
        ("Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", True),
        ("Ann/Ann_0001.jpg", "Bo_B/Bo_B_0003.jpg", False),
        ("Bo_B/Bo_B_0002.jpg", "Bo_B/Bo_B_0003.jpg", True),
        ("Ann/Ann_0002.jpg", "Bo_B/Bo_B_0001.jpg", False)]
    assert [parsed.fold_of(i) for i in range(4)] == [0, 0, 1, 1]
    bad = [("2 1\nAnn 1 2\nAnn 1 Bo 3\nBo 2\nAnn 2 Bo 1\n", r"pairs.txt:4: a same-person line is 'name i j'"),
           ("1 1\nAnn 1 2\nAnn 1 Bo\n", r"pairs.txt:3: a different-person line is 'name1 i name2 j'"),
           ("1 1\nAnn one 2\nAnn 1 Bo 3\n", r"pairs.txt:2: expected an image number, got 'one'"),
           ("ten 300\n", r"pairs.txt:1: expected 'folds pairs'"),
           ("1 2\nAnn 1 2\nAnn 1 Bo 3\n", r"= 4 lines, found 2")]
    for text, error in bad:
        p.write_text(text)
        with pytest.raises(DataError, match=error):
            read_pairs(str(p))


def test_real_orl_folder():
    ds = FolderDataset(str(need(FACES / "orl")))
    assert len(ds) == 400 and ds.num_classes == 40 and np.bincount(ds.labels).tolist() == [10] * 40
    img = ds.read(0)
    assert img.shape == (112, 92, 3) and np.array_equal(img[..., 0], img[..., 2])
    batch = ds.load(np.arange(0, 400, 37))
    assert batch.shape == (11, 3, 112, 112) and -1.0 <= float(batch.min()) < float(batch.max()) <= 1.0


def test_real_lfw_pairs_and_layout():
    root = need(FACES / "lfw")
    images_root, pairs_path = find_lfw(str(root))
    parsed = read_pairs_file(pairs_path)
    assert (parsed.folds, parsed.pairs_per_fold, len(parsed.pairs)) == (10, 300, 6000)
    assert sum(p[2] for p in parsed.pairs) == 3000
    assert missing_images(images_root, parsed.pairs) == []
    lst = FolderDataset(str(need(FACES / "lfw10")))
    assert lst.num_classes == 10 and len(lst) == 100 and lst.read(0).shape == (250, 250, 3)
