"""Template pooling on hand-computed cases; both TAR@FAR read-offs against sklearn's roc_curve and a
plain sort; the IJB meta formats and their errors; `dmfr eval templates` end to end."""
import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from dmfr.cli.__main__ import main
from dmfr.errors import DataError
from dmfr.eval.roc import far_label, tar_at_far
from dmfr.eval.templates import (evaluate_templates, read_media, read_template_pairs, score_pairs,
                                 template_features)


def ref_nearest(scores, labels, far):
    """insightface eval_ijbc.py: flipped roc_curve, min over (|fpr - far|, index)."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    _, i = min(zip(abs(fpr - far), range(len(fpr))))
    return tpr[i], fpr[i]


def ref_threshold(scores, labels, far):
    """PFE find_thresholds_by_FAR + ROC, with a full descending sort."""
    neg = np.sort(scores[~labels])[::-1]
    k = int(np.round(len(neg) * far))
    t = np.float64(neg[0]) + 1e-8 if k == 0 else neg[k - 1]
    return np.mean(scores[labels] >= t), np.mean(scores[~labels] >= t)


def check_against_reference(scores, labels, fars):
    full = tar_at_far(scores, labels, fars)
    res = full["tar_at_far"]
    for f in fars:
        key = far_label(f)
        assert (res["nearest"][key]["tar"], res["nearest"][key]["far"]) == ref_nearest(scores, labels, f), (key, "nearest")
        assert (res["threshold"][key]["tar"], res["threshold"][key]["far"]) == ref_threshold(scores, labels, f), (key, "threshold")
    return full


FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@pytest.mark.parametrize("seed", range(40))
def test_readoffs_random_small(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    kind = seed % 4
    if kind == 0:
        scores = rng.normal(size=n).astype(np.float32)
    elif kind == 1:  # heavy ties
        scores = rng.integers(0, 6, size=n).astype(np.float32)
    elif kind == 2:  # ties at 2 decimals, float64
        scores = np.round(rng.normal(size=n), 2)
    else:
        scores = rng.uniform(-1, 1, n).astype(np.float32)
    labels = rng.random(n) < rng.uniform(0.01, 0.9)
    labels[0], labels[-1] = True, False
    fars = FARS + (0.3, 0.5, 1.0, float(rng.random()), float(rng.random()) * 0.01)
    check_against_reference(scores, labels, fars)


def test_readoffs_tail_with_ties_across_its_edge():
    """Small FARs only, so the partial selection is used; a run of ties straddles the tail."""
    rng = np.random.default_rng(7)
    n = 200_000
    scores = np.round(rng.normal(size=n), 1).astype(np.float32)  # ~80 distinct values
    labels = rng.random(n) < 0.01
    check_against_reference(scores, labels, (1e-6, 1e-5, 1e-4, 1e-3, 5e-3, 1e-2))
    scores = rng.normal(size=n).astype(np.float32)
    check_against_reference(scores, labels, (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1))


def test_all_equal_scores():
    scores = np.full(1000, 0.3, np.float32)
    labels = np.arange(1000) % 7 == 0
    res = check_against_reference(scores, labels, FARS)
    assert res["tar_at_far"]["threshold"]["1e-1"] == pytest.approx(
        {"tar": 1.0, "far": 1.0, "threshold": 0.3, "k": 86, "too_few_impostors": False}, rel=1e-6)


def test_single_genuine_and_far_below_one_impostor():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=500)
    labels = np.zeros(500, bool)
    labels[17] = True
    res = check_against_reference(scores, labels, FARS)
    t = res["tar_at_far"]["threshold"]["1e-4"]
    assert t["k"] == 0 and t["far"] == 0.0 and t["too_few_impostors"]
    assert res["tar_at_far"]["nearest"]["1e-4"]["too_few_impostors"]
    assert any("below 1/N_impostor" in note for note in res["notes"])
    assert not res["tar_at_far"]["nearest"]["1e-1"]["too_few_impostors"]


def test_epsilon_margin_survives_float32():
    """k = 0: the threshold is the top impostor + 1e-8 in float64, so that impostor is rejected."""
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    labels = np.array([False, False, False, True])
    t = tar_at_far(scores, labels, (1e-3,))["tar_at_far"]["threshold"]["1e-3"]
    assert t["far"] == 0.0 and t["tar"] == 1.0


def test_no_impostors_is_an_error():
    with pytest.raises(DataError, match="genuine and impostor"):
        tar_at_far(np.ones(4), np.ones(4, bool))


def test_far_label():
    assert [far_label(f) for f in FARS] == ["1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1"]
    assert far_label(5e-3) == "5e-3"


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_pooling_hand_computed(tmp_path):
    # template 1: media 10 = images a [1,0], b [0,1]; media 11 = image c [2,0]. template 2: d [0,3]
    media = read_media(_write(tmp_path / "m.txt", ["a.jpg 1 10 0.5", "b.jpg 1 10 1.0", "c.jpg 1 11 1.0",
                                                   "d.jpg 2 12 1.0"]))
    feats = np.array([[1, 0], [0, 1], [2, 0], [0, 3]], np.float32)
    ids, tf, valid = template_features(media, feats)  # norm weighting: raw features pooled
    t1 = np.array([0.5 + 2, 0.5]) / np.hypot(2.5, 0.5)  # media mean [0.5, 0.5] + [2, 0]
    assert ids.tolist() == [1, 2] and valid.all()
    np.testing.assert_allclose(tf, [t1, [0, 1]], rtol=1e-6)
    _, tf, _ = template_features(media, feats, norm_weight=False)  # unit features: c -> [1, 0]
    np.testing.assert_allclose(tf[0], np.array([1.5, 0.5]) / np.hypot(1.5, 0.5), rtol=1e-6)
    _, tf, _ = template_features(media, feats, detector_weight=True)  # a weighted by 0.5
    np.testing.assert_allclose(tf[0], np.array([0.25 + 2, 0.5]) / np.hypot(2.25, 0.5), rtol=1e-6)
    pairs = read_template_pairs(_write(tmp_path / "p.txt", ["1 2 0", "1 1 1", "2 2 1"]))
    res = evaluate_templates(media, pairs, feats, (0.5,))
    s = score_pairs(tf, np.array([0]), tf, np.array([1]))
    assert s.dtype == np.float32
    assert res["n_genuine"] == 2 and res["n_impostor"] == 1 and res["n_templates"] == 2


@pytest.mark.parametrize("path", ["dense", "gather"])
def test_score_pairs_match_direct(path, monkeypatch):
    from dmfr.eval import templates

    monkeypatch.setattr(templates, "DENSE_MAX_BLOCKS", 3)  # several blocks
    if path == "gather":
        monkeypatch.setattr(templates, "DENSE_SHARE", 1e9)
    rng = np.random.default_rng(0)
    fa = rng.normal(size=(50, 16)).astype(np.float32)
    fb = rng.normal(size=(70, 16)).astype(np.float32)
    for a, b in ((rng.integers(0, 50, 1000), rng.integers(0, 70, 1000)),  # fewer distinct a
                 (rng.integers(0, 50, 1000), rng.integers(60, 70, 1000))):  # fewer distinct b
        np.testing.assert_allclose(score_pairs(fa, a, fb, b, chunk=7), np.sum(fa[a] * fb[b], axis=1),
                                   rtol=1e-5, atol=1e-5)


def test_format_errors(tmp_path):
    with pytest.raises(DataError, match=r"m\.txt, line 2: expected 'image template media"):
        read_media(_write(tmp_path / "m.txt", ["a.jpg 1 10", "b.jpg 1"]))
    with pytest.raises(DataError, match=r"m2\.txt, line 1: template and media must be integers"):
        read_media(_write(tmp_path / "m2.txt", ["a.jpg x 10"]))
    with pytest.raises(DataError, match=r"m3\.txt, line 2: detector score missing"):
        read_media(_write(tmp_path / "m3.txt", ["a.jpg 1 10 0.9", "b.jpg 1 10"]))
    with pytest.raises(DataError, match=r"p\.txt, line 2: expected 'template1 template2 label' \(integers\), got '1 x 1'"):
        read_template_pairs(_write(tmp_path / "p.txt", ["1 2 0", "1 x 1"]))
    with pytest.raises(DataError, match=r"p4\.txt, line 3: expected"):
        read_template_pairs(_write(tmp_path / "p4.txt", ["1 2 0", "", "1 2"]))
    with pytest.raises(DataError, match=r"p2\.txt, pair 2: label must be 0 or 1, got 2"):
        read_template_pairs(_write(tmp_path / "p2.txt", ["1 2 0", "1 2 2"]))
    media = read_media(_write(tmp_path / "m4.txt", ["a.jpg 1 10", "b.jpg 2 11"]))
    pairs = read_template_pairs(_write(tmp_path / "p3.txt", ["1 2 0", "1 9 1"]))
    with pytest.raises(DataError, match=r"p3\.txt, pair 2: template 9 is not in the media file"):
        evaluate_templates(media, pairs, np.eye(2, dtype=np.float32))


def make_ijb_like(tmp_path, rng, n_ids=12, dim=32, scores=True):
    """Templates of 1–3 media of 1–3 images around identity centres; all template pairs."""
    centres = rng.normal(size=(n_ids, dim))
    media_lines, feats, keys, tmpl_id = [], [], [], []
    t, m = 0, 100
    for ident in range(n_ids):
        for _ in range(2):
            t += 1
            tmpl_id.append((t, ident))
            for _ in range(rng.integers(1, 4)):
                m += 1
                for _ in range(rng.integers(1, 4)):
                    key = f"img{len(keys)}.jpg"
                    keys.append(key)
                    feats.append(centres[ident] + 0.8 * rng.normal(size=dim))
                    media_lines.append(f"{key} {t} {m}" + (f" {rng.uniform(0.5, 1):.3f}" if scores else ""))
    pair_lines = [f"{a} {b} {int(ia == ib)}" for i, (a, ia) in enumerate(tmpl_id) for (b, ib) in tmpl_id[i + 1:]]
    _write(tmp_path / "media.txt", media_lines)
    _write(tmp_path / "pairs.txt", pair_lines)
    _write(tmp_path / "keys.txt", keys[::-1])  # features file in another order than the media file
    np.save(tmp_path / "f.npy", np.array(feats[::-1], np.float32))
    return np.array(feats, np.float32)


def test_cli_templates_features_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    feats = make_ijb_like(tmp_path, rng)
    argv = ["eval", "templates", "--media", str(tmp_path / "media.txt"), "--pairs", str(tmp_path / "pairs.txt"),
            "--features", str(tmp_path / "f.npy"), "--keys", str(tmp_path / "keys.txt"), "--json",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    media = read_media(str(tmp_path / "media.txt"))
    pairs = read_template_pairs(str(tmp_path / "pairs.txt"))
    direct = evaluate_templates(media, pairs, feats, FARS, detector_weight=True)  # auto: scores present
    assert out["tar_at_far"] == direct["tar_at_far"]
    assert out["options"] == {"norm_weight": True, "detector_weight": True}
    assert set(out["tar_at_far"]["nearest"]) == {"1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1"}
    assert out["tar_at_far"]["threshold"]["1e-4"]["too_few_impostors"]  # only ~270 impostor pairs
    assert (tmp_path / "out" / "templates.json").exists()
    assert main(argv[:-3] + ["--detector-weight", "off", "--no-norm-weight"]) == 0
    capsys.readouterr()
    # a media image the features lack: named with file and line
    _write(tmp_path / "keys2.txt", (tmp_path / "keys.txt").read_text().splitlines()[:-1])
    np.save(tmp_path / "f2.npy", np.load(tmp_path / "f.npy")[:-1])
    assert main(["eval", "templates", "--media", str(tmp_path / "media.txt"), "--pairs", str(tmp_path / "pairs.txt"),
                 "--features", str(tmp_path / "f2.npy"), "--keys", str(tmp_path / "keys2.txt")]) == 2
    assert "media.txt, line 1: image 'img0.jpg' has no feature" in capsys.readouterr().err


def test_cli_templates_checkpoint(tmp_path, capsys):
    from engine_helpers import save_training_checkpoint, write_random_images

    from dmfr.embed import Embedder

    write_random_images(tmp_path / "imgs", 8)
    _write(tmp_path / "media.txt", [f"{i}.png {i // 2} {i}" for i in range(8)])
    _write(tmp_path / "pairs.txt", ["0 1 0", "0 2 0", "1 3 0", "2 3 0", "0 0 1", "3 3 1"])
    ckpt, _ = save_training_checkpoint(tmp_path / "ck")
    assert main(["eval", "templates", "--media", str(tmp_path / "media.txt"), "--pairs", str(tmp_path / "pairs.txt"),
                 "--checkpoint", str(ckpt), "--images", str(tmp_path / "imgs"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    feats = Embedder.from_checkpoint(ckpt).embed_paths([str(tmp_path / "imgs" / f"{i}.png") for i in range(8)], flip=True)
    direct = evaluate_templates(read_media(str(tmp_path / "media.txt")), read_template_pairs(str(tmp_path / "pairs.txt")),
                                feats)
    assert out["tar_at_far"] == direct["tar_at_far"]


def test_tail_from_sampled_floor(monkeypatch):
    """The sampled-floor path (used above ~1 M scores) on small inputs, and its exact fallback."""
    from dmfr.eval.roc import ImpostorTail

    monkeypatch.setattr(ImpostorTail, "SAMPLE", 512)
    rng = np.random.default_rng(11)
    for scores in (rng.normal(size=50_000).astype(np.float32), np.round(rng.normal(size=50_000), 1)):
        labels = rng.random(50_000) < 0.02
        check_against_reference(scores, labels, (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 5e-2))
    # a floor guessed too high (fault injected): the exact partition takes over
    monkeypatch.setattr(ImpostorTail, "_estimate_floor", lambda self, size: np.float32(10.0))
    check_against_reference(scores, labels, (1e-4, 1e-2, 5e-2))
