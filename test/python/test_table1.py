"""Table 1 as the paper measures it (python/dmfr/analysis/table1.py): the filter model's row reads
synthetic samples after filtering, F(H(x)), and every row says which model and features it used."""
import numpy as np
import pytest
import torch

from dmfr.analysis.similarity import similarity_table
from dmfr.analysis.table1 import FILTERED, PLAIN, model_features, table1, to_markdown
from dmfr.embed import Embedder
from engine_helpers import save_training_checkpoint, small_config

FILTER = {"name": "filter", "lambda_flt": 1.0, "filter_shared_classifier": False,
          "filter_detach_real": True, "filter_trains_backbone": True}


def _models(tmp_path):
    plain, _ = save_training_checkpoint(tmp_path / "plain")
    config = small_config()
    config["method"] = FILTER
    ckpt, _ = save_training_checkpoint(tmp_path / "filter", config=config, seed=1)
    state = torch.load(ckpt, weights_only=False)
    # F starts as the identity (fc2 = 0): give it weights so that whether it is applied shows
    state["method"]["filter.fc2.weight"] = torch.randn_like(state["method"]["filter.fc2.weight"])
    torch.save(state, ckpt)
    return Embedder.from_checkpoint(plain), Embedder.from_checkpoint(ckpt)


def _samples(n=12):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, 40, 40, 3), dtype=np.uint8)
    ids = np.array([f"id{i % 3}" for i in range(n)])
    synthetic = np.arange(n) >= n // 2
    return images, ids, synthetic


def test_filter_model_features_are_filtered_on_synthetic_samples_only(tmp_path):
    plain, filt = _models(tmp_path)
    images, _, synthetic = _samples()
    h = filt.embed_images(list(images))
    feats, space = model_features(filt, images, synthetic)
    assert space == FILTERED
    with torch.no_grad():
        expected = filt.model.filter(torch.from_numpy(h[synthetic])).numpy()
    assert np.array_equal(feats[~synthetic], h[~synthetic])
    # the same float32 module on the same rows: identical
    assert np.array_equal(feats[synthetic], expected)
    assert not np.allclose(feats[synthetic], h[synthetic], atol=1e-3)
    feats, space = model_features(plain, images, synthetic)
    assert space == PLAIN and np.array_equal(feats, plain.embed_images(list(images)))


def test_table1_rows_are_labelled_in_the_paper_order(tmp_path):
    plain, filt = _models(tmp_path)
    images, ids, synthetic = _samples()
    rows = table1({"filter model": filt, "mixed model": plain, "real-only model": plain}, images, ids, synthetic)
    assert [(r["row"], r["model"], r["features"]) for r in rows] == [
        ("Baseline", "real-only model", PLAIN), ("Add synthetic samples", "mixed model", PLAIN),
        ("After filtering", "filter model", FILTERED)]
    feats, _ = model_features(filt, images, synthetic)
    expected = similarity_table(feats, ids, np.where(synthetic, "synthetic", "real"))
    assert rows[2]["similarity"]["synthetic"]["interclass"] == pytest.approx(expected["synthetic"]["interclass"], abs=1e-12)
    md = to_markdown(rows)
    assert "| After filtering | filter model | F(H(x)) synthetic, H(x) real |" in md
    with pytest.raises(ValueError, match="After filtering"):
        table1({"filter model": plain}, images, ids, synthetic)


def test_study_table1_reads_a_filter_cell_after_filtering(tmp_path):
    # dmfr study's Table 1 metrics (study_eval._similarity) use the same space as table1: a filter
    # model's synthetic samples at F(H(x)), labelled so; a plain model's at H(x).
    from dmfr.analysis import study_eval
    from dmfr.data import procedural

    plain, filt = _models(tmp_path)
    config = {"data": {"kind": "procedural", "image_size": 16,
                       "procedural": {"seed": 0, "identities": 4, "images_per_identity": 3}}}
    train = procedural.build_train_set(config)
    synthetic = train.domains != 0
    for embedder, space, name in ((filt, FILTERED, "train-filtered"), (plain, PLAIN, "train")):
        feats = study_eval._Features(tmp_path / "ckpt.pt", tmp_path / f"eval-{space[:1]}")
        feats._embedder = embedder
        metrics: dict = {}
        table = study_eval._similarity(config, feats, metrics)
        assert table["feature_space"] == space
        f, _ = model_features(embedder, train.images, synthetic)
        expected = similarity_table(f, train.labels, np.where(synthetic, "synthetic", "real"))
        assert metrics["table1/synthetic/inter"] == float(expected["synthetic"]["interclass"])  # same features, same sums
        assert (tmp_path / f"eval-{space[:1]}" / f"features-{name}-ckpt.npy").exists()
