"""Verification protocol vs an independent plain-loop reference of insightface's calculate_roc /
calculate_val; the .bin pack and the LFW protocol end to end through the CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import interpolate
from sklearn.model_selection import KFold

from dmfr.cli.__main__ import main
from dmfr.errors import DataError
from dmfr.eval.verification import evaluate_distances, evaluate_embeddings

FACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "faces"


def reference(dist, issame, n_folds=10):
    """insightface's loops, written out: KFold(shuffle=False), np.less, argmax over the grid."""
    thresholds = np.arange(0, 4, 0.01)
    accs, vals = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(np.arange(dist.size)):
        def acc(t, idx):
            pred = dist[idx] < t
            return (np.sum(pred & issame[idx]) + np.sum(~pred & ~issame[idx])) / idx.size
        best = thresholds[int(np.argmax([acc(t, train) for t in thresholds]))]
        accs.append(acc(best, test))
        # calculate_val, with the repeated FAR knots removed (first threshold of each FAR)
        vthr = np.arange(0, 4, 0.001)
        n_diff = np.sum(~issame[train])
        far_train = np.array([np.sum((dist[train] < t) & ~issame[train]) / n_diff for t in vthr])
        if far_train.max() >= 1e-3:
            u, first = np.unique(far_train, return_index=True)
            t = float(interpolate.interp1d(u, vthr[first], kind="slinear")(1e-3)) if u.size > 1 else vthr[first[0]]
        else:
            t = 0.0
        with np.errstate(invalid="ignore"):  # a fold without same pairs: NaN, as insightface
            vals.append(np.sum((dist[test] < t) & issame[test]) / np.sum(issame[test]))
    return np.array(accs), float(np.mean(vals))


CASES = {
    "random": lambda rng: (rng.uniform(0, 4, 600), rng.random(600) < 0.5),
    "on_grid_ties": lambda rng: (np.round(rng.uniform(0, 4, 607), 2), rng.random(607) < 0.5),
    "all_equal": lambda rng: (np.full(300, 1.23), rng.random(300) < 0.5),
    "separable": lambda rng: (np.where(np.arange(300) % 2 == 0, rng.uniform(0, 1, 300), rng.uniform(2, 4, 300)),
                              np.arange(300) % 2 == 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference_loop(case):
    rng = np.random.default_rng(len(case))
    dist, issame = CASES[case](rng)
    # every fold needs a same and a different pair for the reference's VAL division
    issame[::10] = True
    issame[1::10] = False
    res = evaluate_distances(dist, issame)
    accs, val = reference(dist, issame)
    assert res.folds == pytest.approx(list(accs), abs=0)
    assert res.accuracy == pytest.approx(accs.mean())
    assert res.std == pytest.approx(accs.std())
    assert res.stderr == pytest.approx(accs.std(ddof=1) / np.sqrt(10))
    assert res.val == pytest.approx(val)
    if case == "separable":
        assert res.accuracy == 1.0


def test_uneven_folds_follow_kfold():
    rng = np.random.default_rng(3)
    dist, issame = rng.uniform(0, 4, 23), rng.random(23) < 0.5
    issame[:2] = [True, False]
    res = evaluate_distances(dist, issame)
    accs, _ = reference(dist, issame)
    assert res.folds == pytest.approx(list(accs), abs=0)


def test_single_genuine_pair():
    dist = np.linspace(0.5, 3.5, 100)
    issame = np.zeros(100, bool)
    issame[0] = True  # the closest pair is the only positive
    res = evaluate_distances(dist, issame)
    # in fold 0 the positive is held out; the other folds' best threshold keeps all negatives out
    assert res.folds[0] == pytest.approx(0.9)
    assert res.folds[1:] == [1.0] * 9


def test_flip_fusion_and_pair_order():
    rng = np.random.default_rng(0)
    emb, flip = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    issame = rng.random(20) < 0.5
    fused = (emb + flip) / np.linalg.norm(emb + flip, axis=1, keepdims=True)
    dist = np.sum((fused[0::2] - fused[1::2]) ** 2, axis=1)
    assert evaluate_embeddings(emb, issame, flip).folds == evaluate_distances(dist, issame).folds


def test_bad_shapes():
    with pytest.raises(DataError, match="embeddings for 5 pairs"):
        evaluate_embeddings(np.zeros((9, 4)), np.ones(5, bool))
    with pytest.raises(DataError, match="at least 10 pairs"):
        evaluate_distances(np.zeros(5), np.ones(5, bool))


def test_pairs_features_cli_and_errors(tmp_path, capsys):
    rng = np.random.default_rng(1)
    names = [f"P{i}" for i in range(20)]
    keys = [f"{n}/{n}_{j:04d}.jpg" for n in names for j in (1, 2)]
    centers = {n: rng.normal(size=64) for n in names}
    feats = np.stack([centers[k.split("/")[0]] + 0.1 * rng.normal(size=64) for k in keys]).astype(np.float32)
    lines = ["10\t3"]
    for f in range(10):
        a, b = names[2 * f], names[2 * f + 1]
        lines += [f"{a}\t1\t2", f"{b}\t1\t2", f"{a}\t1\t2", f"{a}\t1\t{b}\t1", f"{b}\t2\t{a}\t2", f"{a}\t2\t{b}\t1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    np.save(tmp_path / "f.npy", feats)
    (tmp_path / "k.txt").write_text("\n".join(keys) + "\n")
    argv = ["eval", "verification", "--pairs", str(tmp_path / "pairs.txt"), "--features", str(tmp_path / "f.npy"),
            "--keys", str(tmp_path / "k.txt"), "--json", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"accuracy", "std", "stderr", "folds", "val_at_far_1e-3"}
    index = {k: i for i, k in enumerate(keys)}
    from dmfr.data.lfw import read_pairs
    pairs = read_pairs(str(tmp_path / "pairs.txt"))
    direct = evaluate_embeddings(feats[[index[k] for a, b, _ in pairs for k in (a, b)]],
                                 np.array([s for _, _, s in pairs]))
    # the grid's first best threshold (0.03) sits just under fold 0's same-pair distances
    assert out["folds"] == direct.folds and out["folds"][1:] == [1.0] * 9
    assert json.loads((tmp_path / "out" / "verification.json").read_text())["folds"] == direct.folds
    # mismatched rows: the error names both files
    (tmp_path / "k2.txt").write_text("\n".join(keys[:-1]) + "\n")
    argv[7] = str(tmp_path / "k2.txt")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "k2.txt has 39 keys" in err and "f.npy has 40 rows" in err
    # a key the pairs need but the features lack
    np.save(tmp_path / "f3.npy", feats[1:])
    (tmp_path / "k3.txt").write_text("\n".join(keys[1:]) + "\n")
    argv[5], argv[7] = str(tmp_path / "f3.npy"), str(tmp_path / "k3.txt")
    assert main(argv) == 2
    assert "pair 1: image 'P0/P0_0001.jpg' has no feature" in capsys.readouterr().err


def _small_bin():
    path = FACES / "small_lfw.bin"
    if not path.exists():
        pytest.skip(f"{path} absent (real faces are not part of the repository)")
    return path


def test_small_lfw_bin_with_raw_features(tmp_path, capsys):
    from dmfr.data.binpack import read_bin

    path = _small_bin()
    images, issame = read_bin(str(path))
    feats = images.reshape(len(images), -1).astype(np.float32) / 255.0  # raw pixels as features
    np.save(tmp_path / "raw.npy", feats)
    assert main(["eval", "verification", "--bin", str(path), "--features", str(tmp_path / "raw.npy"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = evaluate_embeddings(feats, issame)
    assert out["n_pairs"] == 10 and out["n_same"] == 10
    assert out["folds"] == expected.folds
    assert out["far_at_val"] is None and out["val_at_far_1e-3"] is None  # no different-person pair


def test_small_lfw_bin_with_checkpoint(tmp_path, capsys):
    from engine_helpers import save_training_checkpoint

    from dmfr.data.binpack import read_bin
    from dmfr.embed import Embedder

    path = _small_bin()
    ckpt, _ = save_training_checkpoint(tmp_path / "ck")
    assert main(["eval", "verification", "--bin", str(path), "--checkpoint", str(ckpt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    images, issame = read_bin(str(path))
    feats = Embedder.from_checkpoint(ckpt).embed_images(images, flip=True)
    assert out["folds"] == evaluate_embeddings(feats, issame).folds


def lfw_raw_pixel_features(root: Path, keys: list[str]) -> np.ndarray:
    """Raw-pixel baseline features: the central 120×120 of the 250×250 LFW crop, 30×30 grey."""
    from PIL import Image

    out = np.empty((len(keys), 900), np.float32)
    for i, key in enumerate(keys):
        with Image.open(root / key) as im:
            g = im.convert("L").crop((65, 65, 185, 185)).resize((30, 30), Image.BILINEAR)
        v = np.asarray(g, np.float32).ravel()
        out[i] = (v - v.mean()) / (v.std() + 1e-6)  # per-image contrast normalisation
    return out


def test_lfw_protocol_raw_pixel_pca(tmp_path, capsys):
    """The full LFW View 2 protocol (6,000 pairs) with a raw-pixel PCA baseline; PCA is refit on
    each fold's 9 training folds (insightface's pca mode), so no test image shapes it."""
    from dmfr.data.lfw import read_pairs

    root = FACES / "lfw"
    if not (root / "pairs.txt").exists() or not (root / "images").is_dir():
        pytest.skip(f"{root} absent (real faces are not part of the repository)")
    pairs = read_pairs(str(root / "pairs.txt"))
    assert len(pairs) == 6000
    keys = sorted({k for a, b, _ in pairs for k in (a, b)})
    assert len(keys) == 7701
    np.save(tmp_path / "raw.npy", lfw_raw_pixel_features(root / "images", keys))
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    assert main(["eval", "verification", "--pairs", str(root / "pairs.txt"), "--features", str(tmp_path / "raw.npy"),
                 "--keys", str(tmp_path / "keys.txt"), "--pca", "64", "--json", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    print(f"LFW raw-pixel PCA-64 baseline: accuracy {out['accuracy']:.4f} ± {out['std']:.4f}")
    assert out["n_pairs"] == 6000 and out["n_same"] == 3000
    # raw pixels carry some identity signal but far from a face model: well above chance, far below 0.9
    assert 0.55 < out["accuracy"] < 0.9


def test_pairs_with_images_and_checkpoint(tmp_path, capsys):
    """LFW layout + pairs.txt + checkpoint, end to end on real photographs (lfw10)."""
    from engine_helpers import save_training_checkpoint

    from dmfr.embed import Embedder

    root = FACES / "lfw10"
    if not root.is_dir():
        pytest.skip(f"{root} absent (real faces are not part of the repository)")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    lines = ["10\t1"]
    for f in range(10):  # one same-person and one different-person pair per fold
        a, b = names[f], names[(f + 1) % len(names)]
        lines += [f"{a}\t1\t2", f"{a}\t3\t{b}\t4"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    ckpt, _ = save_training_checkpoint(tmp_path / "ck")
    assert main(["eval", "verification", "--pairs", str(tmp_path / "pairs.txt"), "--images", str(root),
                 "--checkpoint", str(ckpt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    from dmfr.data.lfw import read_pairs
    pairs = read_pairs(str(tmp_path / "pairs.txt"))
    keys = [k for a, b, _ in pairs for k in (a, b)]
    feats = Embedder.from_checkpoint(ckpt).embed_paths([str(root / k) for k in keys], flip=True)
    assert out["folds"] == evaluate_embeddings(feats, np.array([s for *_, s in pairs])).folds
    assert out["n_pairs"] == 20 and out["n_same"] == 10
    # an image the pairs name but the folder lacks
    (tmp_path / "pairs2.txt").write_text("\n".join(lines[:-1] + [f"{names[0]}\t99\t{names[1]}\t1"]) + "\n")
    assert main(["eval", "verification", "--pairs", str(tmp_path / "pairs2.txt"), "--images", str(root),
                 "--checkpoint", str(ckpt)]) == 2
    assert f"image '{names[0]}/{names[0]}_0099.jpg' not found" in capsys.readouterr().err
