"""Table 1 similarities vs brute force; the modality probe on separable / inseparable features;
Fig. 5 and Fig. 6 written as PNG + SVG through the CLI; malformed inputs named by file and line."""
import json

import numpy as np
import pytest

from dmfr.analysis.probe import modality_probe
from dmfr.analysis.similarity import similarity_table
from dmfr.cli.__main__ import main
from dmfr.errors import DataError


def brute_force(x, ids, mods, sel_a, sel_b=None):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    intra, inter = [], []
    a = np.flatnonzero(sel_a)
    for ii, i in enumerate(a):
        others = a[ii + 1:] if sel_b is None else np.flatnonzero(sel_b)
        for j in others:
            (intra if ids[i] == ids[j] else inter).append(x[i] @ x[j])
    return np.mean(intra), np.mean(inter), len(intra), len(inter)


def make_samples(rng, n_ids=6, dim=12, shift=0.0):
    centres = rng.normal(size=(n_ids, dim))
    direction = np.zeros(dim)
    direction[:3] = 1.0
    feats, ids, mods = [], [], []
    for c in range(n_ids):
        for m, count in (("real", int(rng.integers(2, 5))), ("synthetic", int(rng.integers(2, 5)))):
            for _ in range(count):
                feats.append(centres[c] + 0.5 * rng.normal(size=dim) + (shift * direction if m == "synthetic" else 0))
                ids.append(f"id{c}")
                mods.append(m)
    return np.array(feats), np.array(ids), np.array(mods)


def test_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    x, ids, mods = make_samples(rng, shift=1.5)
    rows = similarity_table(x, ids, mods)
    for name, sel_a, sel_b in (("real", mods == "real", None), ("synthetic", mods == "synthetic", None),
                               ("all", np.ones(len(ids), bool), None),
                               ("real_vs_synthetic", mods == "real", mods == "synthetic")):
        intra, inter, n_intra, n_inter = brute_force(x, ids, mods, sel_a, sel_b)
        assert rows[name]["intraclass"] == pytest.approx(intra, abs=1e-12), name
        assert rows[name]["interclass"] == pytest.approx(inter, abs=1e-12), name
        assert (rows[name]["intra_pairs"], rows[name]["inter_pairs"]) == (n_intra, n_inter), name
    # the shared synthetic shift raises inter-class similarity among synthetic samples (Table 1)
    assert rows["synthetic"]["interclass"] > rows["real"]["interclass"]


def test_modality_probe():
    rng = np.random.default_rng(1)
    x, ids, mods = make_samples(rng, n_ids=30, shift=3.0)
    assert modality_probe(x, mods, ids)["auc"] > 0.95
    x, ids, mods = make_samples(rng, n_ids=30, shift=0.0)
    res = modality_probe(x, mods, ids)
    assert 0.25 < res["auc"] < 0.75 and res["grouped_by"] == "identity" and len(res["folds"]) == 5
    with pytest.raises(DataError, match="at least 5 real and 5 synthetic"):
        modality_probe(x[:6], np.array(["real"] * 5 + ["synthetic"]))


def _write_features(tmp_path, x, keys):
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    (tmp_path / "k.txt").write_text("\n".join(keys) + "\n")
    return ["--features", str(tmp_path / "f.npy"), "--keys", str(tmp_path / "k.txt")]


def test_cli_similarity_probe_fig5(tmp_path, capsys):
    rng = np.random.default_rng(2)
    x, ids, mods = make_samples(rng, n_ids=12, shift=2.0)
    keys = [f"s{i}.jpg" for i in range(len(ids))]
    feat_args = _write_features(tmp_path, x, keys)
    (tmp_path / "samples.txt").write_text("".join(f"{k} {i} {m}\n" for k, i, m in zip(keys, ids, mods)))
    out = tmp_path / "out"
    assert main(["analyze", "similarity", *feat_args, "--samples", str(tmp_path / "samples.txt"),
                 "--title", "Add synthetic samples", "--out", str(out)]) == 0
    md = (out / "similarity.md").read_text()
    assert "| Samples | Intraclass | Interclass |" in md and "| synthetic |" in md
    saved = json.loads((out / "similarity.json").read_text())
    assert saved["rows"]["real"]["intraclass"] == pytest.approx(
        similarity_table(x.astype(np.float32), ids, mods)["real"]["intraclass"], abs=1e-6)
    capsys.readouterr()
    assert main(["analyze", "probe", *feat_args, "--samples", str(tmp_path / "samples.txt"), "--json",
                 "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] > 0.9 and (out / "probe.md").exists()
    assert main(["analyze", "fig5", *feat_args, "--real", keys[0], "--synthetic", f"dc=0.1={keys[3]}", keys[4],
                 "--out", str(out)]) == 0
    for ext in ("png", "svg", "json"):
        assert (out / f"fig5.{ext}").stat().st_size > 0
    data = json.loads((out / "fig5.json").read_text())
    r, s = x[0] / np.linalg.norm(x[0]), x[3] / np.linalg.norm(x[3])
    np.testing.assert_allclose(data["dc=0.1"]["diff"], s - r, atol=1e-6)
    assert set(data) == {"dc=0.1", keys[4]}
    # a bad modality and a missing key are named with file and line
    (tmp_path / "bad.txt").write_text(f"{keys[0]} id0 real\n{keys[1]} id0 cartoon\n")
    assert main(["analyze", "similarity", *feat_args, "--samples", str(tmp_path / "bad.txt")]) == 2
    assert "bad.txt, line 2: modality must be real or synthetic, got 'cartoon'" in capsys.readouterr().err
    (tmp_path / "bad2.txt").write_text(f"{keys[0]} id0 real\nnope.jpg id0 real\n")
    assert main(["analyze", "probe", *feat_args, "--samples", str(tmp_path / "bad2.txt")]) == 2
    assert "bad2.txt, line 2: image 'nope.jpg' has no feature" in capsys.readouterr().err


def test_cli_curves(tmp_path, capsys):
    from dmfr.eval.roc import tar_at_far

    for method, scale in (("real", 1.0), ("filter", 0.8)):
        lines = [json.dumps({"step": s, "loss": scale * 5 / (1 + s), "lr": 0.1,
                             "terms": {"L_cls": scale * 4 / (1 + s), "L_flt": 0.5 / (1 + s)} if method == "filter"
                             else {"L_cls": 5 / (1 + s)}}) for s in range(0, 100, 10)]
        (tmp_path / f"{method}.jsonl").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    labels = rng.random(20000) < 0.05
    scores = rng.normal(size=20000) + 2 * labels
    result = tar_at_far(scores, labels, roc_points=30)
    (tmp_path / "t.json").write_text(json.dumps(result))
    assert main(["analyze", "curves", "--metrics", f"real={tmp_path / 'real.jsonl'}",
                 f"filter={tmp_path / 'filter.jsonl'}", "--roc", f"model={tmp_path / 't.json'}",
                 "--out", str(tmp_path / "out")]) == 0
    for name in ("fig6_losses", "fig6_roc"):
        for ext in ("png", "svg", "json"):
            assert (tmp_path / "out" / f"{name}.{ext}").stat().st_size > 0
    losses = json.loads((tmp_path / "out" / "fig6_losses.json").read_text())
    assert set(losses["filter"]) == {"loss", "L_cls", "L_flt"} and set(losses["real"]) == {"loss", "L_cls"}
    capsys.readouterr()
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n')
    assert main(["analyze", "curves", "--metrics", f"x={tmp_path / 'bad.jsonl'}", "--out", str(tmp_path / "o2")]) == 2
    assert "bad.jsonl, line 2: invalid JSON" in capsys.readouterr().err
    (tmp_path / "nostep.jsonl").write_text('{"loss": 2.0}\n')
    assert main(["analyze", "curves", "--metrics", f"x={tmp_path / 'nostep.jsonl'}", "--out", str(tmp_path / "o2")]) == 2
    assert "nostep.jsonl, line 1: a metrics record needs an integer 'step'" in capsys.readouterr().err


def test_roc_points_follow_the_threshold_readoff():
    from dmfr.eval.roc import tar_at_far

    rng = np.random.default_rng(3)
    labels = rng.random(30000) < 0.1
    scores = np.round(rng.normal(size=30000) + labels, 2)
    res = tar_at_far(scores, labels, roc_points=25)
    neg = np.sort(scores[~labels])[::-1]
    grid = np.logspace(np.log10(max(1e-6, 1 / neg.size)), -1, 25)
    assert len(res["roc"]["far"]) == 25
    for f, far, tar in zip(grid, res["roc"]["far"], res["roc"]["tar"]):
        t = neg[max(int(np.round(f * neg.size)), 1) - 1]
        assert (far, tar) == (np.mean(neg >= t), np.mean(scores[labels] >= t))


def test_similarity_after_filter(tmp_path, capsys):
    """`--apply-filter` passes synthetic features (only) through the filter method's F."""
    import torch
    from engine_helpers import save_training_checkpoint, small_config, write_random_images

    from dmfr.embed import Embedder

    config = small_config()
    config["method"] = {"name": "filter", "lambda_flt": 1.0, "filter_shared_classifier": False,
                        "filter_detach_real": True, "filter_trains_backbone": True}
    ckpt, method = save_training_checkpoint(tmp_path / "ck", config=config)
    # F starts as the identity (fc2 = 0); give it weights so that applying it shows
    state = torch.load(ckpt, weights_only=False)
    state["method"]["filter.fc2.weight"] = torch.randn_like(state["method"]["filter.fc2.weight"])
    torch.save(state, ckpt)
    write_random_images(tmp_path / "imgs", 8)
    lines = [f"{i}.png id{i % 2} {'synthetic' if i >= 4 else 'real'}" for i in range(8)]
    (tmp_path / "samples.txt").write_text("\n".join(lines) + "\n")
    argv = ["analyze", "similarity", "--checkpoint", str(ckpt), "--images", str(tmp_path / "imgs"),
            "--samples", str(tmp_path / "samples.txt"), "--apply-filter", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)["rows"]
    emb = Embedder.from_checkpoint(ckpt)
    feats = emb.embed_paths([str(tmp_path / "imgs" / f"{i}.png") for i in range(8)])
    with torch.no_grad():
        feats[4:] = emb.model.filter(torch.from_numpy(feats[4:])).numpy()
    ids = np.array([f"id{i % 2}" for i in range(8)])
    mods = np.array(["real"] * 4 + ["synthetic"] * 4)
    expected = similarity_table(feats, ids, mods)
    unfiltered = similarity_table(emb.embed_paths([str(tmp_path / "imgs" / f"{i}.png") for i in range(8)]), ids, mods)
    assert abs(unfiltered["synthetic"]["interclass"] - expected["synthetic"]["interclass"]) > 1e-3
    assert out["synthetic"]["interclass"] == pytest.approx(expected["synthetic"]["interclass"], abs=1e-5)
    assert out["real"]["intraclass"] == pytest.approx(expected["real"]["intraclass"], abs=1e-5)
    # a checkpoint without a filter is refused with a clear message
    plain, _ = save_training_checkpoint(tmp_path / "ck2")
    argv[3] = str(plain)
    assert main(argv) == 2
    assert "needs a checkpoint of the filter method" in capsys.readouterr().err
