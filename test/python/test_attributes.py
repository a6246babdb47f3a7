"""The cross-pose / cross-quality filter drops exactly the right images, templates and pairs."""
import json

import numpy as np
import pytest

from dmfr.cli.__main__ import main
from dmfr.errors import DataError
from dmfr.eval.attributes import (attribute_values, evaluate_attribute_protocol, filter_pairs, make_rule,
                                  read_attribute_table)
from dmfr.eval.templates import read_media, read_template_pairs, score_pairs, template_features

# template: images (yaw, feature). Gallery keeps |yaw| < 40, probe keeps |yaw| > 40 (40 itself: neither).
IMAGES = [("a", 1, 10, 10.0, [1, 0]), ("b", 1, 11, 60.0, [0, 1]),
          ("c", 2, 20, 50.0, [0, 2]),
          ("d", 3, 30, -20.0, [1, 1]), ("e", 3, 30, 5.0, [1, -1]),
          ("f", 4, 40, -70.0, [3, 4]), ("g", 4, 41, 40.0, [-1, 0])]
PAIRS = ["1 2 1", "1 3 0", "3 4 1", "2 4 0", "4 1 0", "3 1 0", "1 4 0"]


@pytest.fixture
def ijb(tmp_path):
    (tmp_path / "media.txt").write_text("".join(f"{n}.jpg {t} {m}\n" for n, t, m, _, _ in IMAGES))
    (tmp_path / "pairs.txt").write_text("\n".join(PAIRS) + "\n")
    (tmp_path / "attr.csv").write_text("image,yaw,quality\n" + "".join(
        f"{n}.jpg,{y},{0.1 if i % 2 else 0.5}\n" for i, (n, _, _, y, _) in enumerate(IMAGES)))
    feats = np.array([f for *_, f in IMAGES], np.float32)
    np.save(tmp_path / "f.npy", feats)
    (tmp_path / "k.txt").write_text("".join(f"{n}.jpg\n" for n, *_ in IMAGES))
    return tmp_path, read_media(str(tmp_path / "media.txt")), read_template_pairs(str(tmp_path / "pairs.txt")), feats


def test_yaw_filter_hand_computed(ijb):
    tmp, media, pairs, feats = ijb
    rule = make_rule("yaw")
    values = attribute_values(media, read_attribute_table(str(tmp / "attr.csv"), "yaw"), str(tmp / "attr.csv"))
    g, p, keep, counts = filter_pairs(media, pairs, values, rule)
    assert g.tolist() == [True, False, False, True, True, False, False]
    assert p.tolist() == [False, True, True, False, False, True, False]
    # T2 and T4 have no gallery image, T3 no probe image
    assert keep.tolist() == [True, False, True, False, False, True, True]
    assert counts["gallery_templates"] == {"total": 4, "kept": 2}
    assert counts["probe_templates"] == {"total": 4, "kept": 3}
    assert counts["pairs"] == {"total": 7, "kept": 4, "genuine_kept": 2, "impostor_kept": 2}
    ids, gal, _ = template_features(media, feats, image_mask=g)
    _, prb, _ = template_features(media, feats, image_mask=p)
    np.testing.assert_allclose(gal[[0, 2]], [[1, 0], [1, 0]], atol=1e-7)      # T1 = a; T3 = mean(d, e)
    np.testing.assert_allclose(prb[[0, 1, 3]], [[0, 1], [0, 1], [0.6, 0.8]], atol=1e-7)  # b; c; f (g dropped)
    s = score_pairs(gal, np.array([0, 2, 2, 0]), prb, np.array([1, 3, 0, 3]))
    np.testing.assert_allclose(s, [0, 0.6, 0, 0.6], atol=1e-6)
    res = evaluate_attribute_protocol(media, pairs, feats, values, rule, (0.5,))
    assert res["n_genuine"] == 2 and res["n_impostor"] == 2
    assert res["tar_at_far"]["threshold"]["5e-1"]["tar"] == 0.5


def test_quality_rule_and_threshold_options(ijb):
    tmp, media, pairs, feats = ijb
    values = attribute_values(media, read_attribute_table(str(tmp / "attr.csv"), "quality"), str(tmp / "attr.csv"))
    g, p, keep, counts = filter_pairs(media, pairs, values, make_rule("quality"))
    assert g.tolist() == [True, False, True, False, True, False, True]   # quality 0.5 > 0.2
    assert p.tolist() == [False, True, False, True, False, True, False]  # quality 0.1 < 0.2
    # T2 (c: 0.5) has no probe image -> pairs with T2 as probe go
    assert keep.tolist() == [False, True, True, True, True, True, True]
    g2, p2, _, c2 = filter_pairs(media, pairs, values, make_rule("quality", 0.6, 0.05))
    assert not g2.any() and not p2.any() and c2["pairs"]["kept"] == 0
    res = evaluate_attribute_protocol(media, pairs, feats, values, make_rule("quality", 0.6, 0.05))
    assert "tar_at_far" not in res and "undefined" in res["notes"][0]


def test_attribute_table_errors(ijb, tmp_path):
    tmp, media, _, _ = ijb
    (tmp / "bad1.tsv").write_text("image\tpose\na.jpg\t3\n")
    with pytest.raises(DataError, match=r"bad1\.tsv, line 1: header has no 'yaw' column"):
        read_attribute_table(str(tmp / "bad1.tsv"), "yaw")
    (tmp / "bad2.tsv").write_text("image\tyaw\na.jpg\t3\nb.jpg\tleft\n")
    with pytest.raises(DataError, match=r"bad2\.tsv, line 3: yaw 'left' is not a number"):
        read_attribute_table(str(tmp / "bad2.tsv"), "yaw")
    (tmp / "bad3.tsv").write_text("image\tyaw\na.jpg\t3\n")
    with pytest.raises(DataError, match=r"media\.txt: image 'b\.jpg' \(line 2\) is not in .*bad3\.tsv"):
        attribute_values(media, read_attribute_table(str(tmp / "bad3.tsv"), "yaw"), str(tmp / "bad3.tsv"))
    with pytest.raises(DataError, match="unknown attribute rule 'age'"):
        make_rule("age")


def test_cli_cross_pose(ijb, capsys):
    tmp, *_ = ijb
    argv = ["eval", "templates", "--media", str(tmp / "media.txt"), "--pairs", str(tmp / "pairs.txt"),
            "--features", str(tmp / "f.npy"), "--keys", str(tmp / "k.txt"), "--attributes", str(tmp / "attr.csv"),
            "--rule", "yaw", "--fars", "0.5", "--out", str(tmp / "out")]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "yaw filter: gallery templates 2/4, probe templates 3/4, pairs 4/7 (2 genuine)" in text
    saved = json.loads((tmp / "out" / "templates-yaw.json").read_text())
    assert saved["filter"]["pairs"]["kept"] == 4 and saved["tar_at_far"]["threshold"]["5e-1"]["tar"] == 0.5
    assert main(argv[:-2] + ["--gallery-threshold", "65", "--probe-threshold", "65", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["filter"]["rule"] == {"column": "yaw", "gallery_threshold": 65.0, "probe_threshold": 65.0}
