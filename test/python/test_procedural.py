"""The built-in procedural benchmark: determinism, the FaceDataset tables, provenance, test sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dmfr.data import procedural
from dmfr.errors import ConfigError


def config(size=32, **proc):
    base = {"seed": 0, "identities": 12, "images_per_identity": 4, "generators": ["pose", "quality"],
            "fingerprint_strength": 1.0}
    return {"data": {"image_size": size, "procedural": {**base, **proc}}}


def fresh(cfg):
    procedural._cache.clear()
    return procedural.build_train_set(cfg)


def test_deterministic_by_seed():
    a = fresh(config())
    b = fresh(config())
    for field in ("images", "labels", "domains", "pair", "source", "delta"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = fresh(config(seed=1))
    assert not np.array_equal(a.images[: len(c.images)], c.images[: len(a.images)])


def test_cache_returns_the_built_set():
    procedural._cache.clear()
    a = procedural.build_train_set(config())
    assert procedural.build_train_set(config()) is a
    assert procedural.build_train_set(config(fingerprint_strength=0.5)) is not a


def test_face_dataset_tables_and_domains():
    ds = fresh(config())
    n = len(ds)
    assert ds.labels.dtype == np.int32 and ds.domains.dtype == np.int16 and ds.pair.dtype == np.int32
    assert len(ds.labels) == len(ds.domains) == len(ds.pair) == len(ds.images) == n
    assert [(d.id, d.name, d.kind, d.generator) for d in ds.domain_info] == [
        (0, "real", "real", None), (1, "pose", "generative", "pose"), (2, "quality", "generative", "quality")]
    n_real = int((ds.domains == 0).sum())
    assert np.bincount(ds.domains).tolist() == [n_real] * 3  # one synthetic sample per real one per generator
    assert ds.num_classes == 12 and set(ds.labels.tolist()) == set(range(12))
    real = ds.domains == 0
    assert (ds.pair[real] == -1).all() and (ds.source[real] == -1).all() and np.isnan(ds.delta[real]).all()
    gen = ~real
    # Every generative sample's source is a real sample of the same identity.
    assert (ds.domains[ds.source[gen]] == 0).all()
    assert (ds.labels[ds.source[gen]] == ds.labels[gen]).all()
    # pair: exactly the Δc = 0 generative samples, pointing at their source.
    zero = gen & (ds.delta == 0)
    assert zero.sum() > 0 and (gen & (ds.delta != 0)).sum() > 0
    np.testing.assert_array_equal(ds.pair[zero], ds.source[zero])
    assert (ds.pair[gen & (ds.delta != 0)] == -1).all()
    # Nominal conditions: a pose sample's yaw is its source's plus Δc.
    pose = ds.domains == 1
    np.testing.assert_allclose(ds.yaw[pose], ds.yaw[ds.source[pose]] + ds.delta[pose], atol=1e-4)
    assert (np.abs(ds.delta[pose & (ds.delta != 0)]) >= 25).all()


def test_load_normalises_like_arcface_torch():
    ds = fresh(config())
    idx = np.array([3, 0, len(ds) - 1])
    x = ds.load(idx)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 3, 32, 32)
    expected = (ds.images[idx].astype(np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), expected, atol=1e-6)


def test_real_domain_is_long_tailed_frontal_and_sharp():
    ds = fresh(config(identities=40, images_per_identity=8))
    real = ds.domains == 0
    counts = np.bincount(ds.labels[real])
    assert counts.min() >= 2 and counts.max() >= 3 * counts.min()
    assert abs(counts.mean() - 8) < 2
    assert np.median(np.abs(ds.yaw[real])) < 8 and (ds.quality[real] == 0).mean() > 0.7


def test_identity_is_visible_in_the_pixels():
    # Even raw pixels identify a frontal probe's identity far above chance, and same-identity
    # pairs are closer than different-identity pairs on average.
    ts = procedural.build_test_set(config(test_identities=100), "general")
    x = ts.images.reshape(len(ts.images), -1).astype(np.float32)
    x = x - x.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nearest = (x[ts.probe] @ x[ts.gallery].T).argmax(1)
    assert (ts.labels[ts.gallery][nearest] == ts.labels[ts.probe]).mean() > 5 / 100
    sim = np.einsum("pd,pd->p", x[ts.pairs[:, 0]], x[ts.pairs[:, 1]])
    assert sim[ts.issame].mean() > sim[~ts.issame].mean() + 0.05


@pytest.mark.parametrize("protocol", procedural.PROTOCOLS)
def test_test_set_protocols(protocol):
    ts = procedural.build_test_set(config(min_far=1e-3), protocol)
    g, p = ts.gallery, ts.probe
    assert ts.images.dtype == np.uint8 and ts.images.shape[1:] == (32, 32, 3)
    assert len(ts.keys) == len(set(ts.keys)) == len(ts.images)
    assert (np.abs(ts.yaw[g]) <= 10).all() and (ts.quality[g] == 0).all()
    if protocol == "cross_pose":
        assert (np.abs(ts.yaw[p]) >= 45).all() and (ts.quality[p] == 0).all()
    elif protocol == "cross_quality":
        assert (ts.quality[p] >= 0.6).all() and (np.abs(ts.yaw[p]) <= 10).all()
    else:
        assert (np.abs(ts.yaw[p]) <= 10).all() and (ts.quality[p] == 0).all()
    # Every gallery × probe pair, with ≥ 10 / FAR impostors for the FAR asked for.
    assert len(ts.pairs) == len(g) * len(p)
    np.testing.assert_array_equal(ts.issame, ts.labels[ts.pairs[:, 0]] == ts.labels[ts.pairs[:, 1]])
    assert (~ts.issame).sum() >= 10 / 1e-3 and ts.min_far <= 1e-3
    assert ts.issame.sum() == 2 * len(g)


def test_default_test_sets_support_far_1e_4():
    ts = procedural.build_test_set(config(size=16), "general")
    assert (~ts.issame).sum() >= 10 / 1e-4


def test_test_identities_are_disjoint_from_training():
    cfg = config(identities=300, images_per_identity=2, generators=[], min_far=1e-3)
    train = fresh(cfg)
    ts = procedural.build_test_set(cfg, "general")
    d = np.linalg.norm(train.codes[:, None, :] - ts.codes[None, :, :], axis=2)
    # Codes are N(0, I) in CODE_DIM dimensions: distinct identities are ~sqrt(2·dim) apart.
    assert d.min() > 1.0
    # and the test set does not depend on the training set's size.
    other = procedural.build_test_set(config(identities=5, min_far=1e-3), "general")
    np.testing.assert_array_equal(ts.codes, other.codes)


def test_no_generators_means_real_only():
    ds = fresh(config(generators=[]))
    assert (ds.domains == 0).all() and len(ds.domain_info) == 1


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match=r"data\.procedural\.generators: unknown generator 'cyclegan'"):
        fresh(config(generators=["cyclegan"]))
    with pytest.raises(ConfigError, match=r"data\.procedural\.identity_loss"):
        fresh(config(identity_loss=2))
    with pytest.raises(ConfigError, match="unknown test protocol 'profile'"):
        procedural.build_test_set(config(), "profile")


def test_write_test_set_for_the_eval_files(tmp_path):
    from dmfr.eval.templates import read_media, read_template_pairs

    ts = procedural.build_test_set(config(size=16, test_identities=5), "cross_quality")
    paths = procedural.write_test_set(ts, str(tmp_path))
    media = read_media(paths["media"])
    pairs = read_template_pairs(paths["pairs"])
    assert len(media.images) == len(ts) and len(pairs.labels) == len(ts.pairs)
    np.testing.assert_array_equal(pairs.labels, ts.issame)
    np.testing.assert_array_equal(np.c_[pairs.t1, pairs.t2], ts.pairs)
    i = int(ts.probe[0])
    from PIL import Image
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "images" / media.images[i])), ts.images[i])
    rows = (tmp_path / "attributes.csv").read_text().splitlines()
    assert rows[0] == "image,yaw,quality,degradation" and len(rows) == len(ts) + 1
    name, _, quality, degradation = rows[i + 1].split(",")
    assert name == media.images[i] and abs(float(quality) + float(degradation) - 1) < 1e-6


def test_test_set_disk_cache_round_trips_and_is_keyed_by_the_settings(tmp_path):
    cfg = config(test_identities=20)
    procedural._cache.clear()
    built = procedural.build_test_set(cfg, "cross_pose", cache_dir=tmp_path)
    files = sorted(tmp_path.glob("procedural-test-*.npz"))
    assert len(files) == 1
    procedural._cache.clear()  # a new process: only the file is left
    loaded = procedural.build_test_set(cfg, "cross_pose", cache_dir=tmp_path)
    assert loaded is not built and loaded.keys == built.keys
    for f in ("images", "labels", "yaw", "quality", "gallery", "probe", "pairs", "issame", "codes"):
        np.testing.assert_array_equal(getattr(loaded, f), getattr(built, f))
        assert getattr(loaded, f).dtype == getattr(built, f).dtype
    procedural.build_test_set(config(test_identities=20, seed=1), "cross_pose", cache_dir=tmp_path)
    procedural.build_test_set(cfg, "general", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("procedural-test-*.npz"))) == 3
    assert not list(tmp_path.glob("*.tmp"))
