"""1:N identification vs a brute-force reference (full score matrix, explicit per-probe sort)."""
import json

import numpy as np
import pytest

from dmfr.cli.__main__ import main
from dmfr.eval import identification
from dmfr.eval.identification import identify


def reference(probe, plab, gallery, glab, distractors, max_rank, fpirs):
    n = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    entries = np.concatenate([n(gallery), n(distractors)])
    elab = np.concatenate([glab, np.array(["<distractor>"] * len(distractors))])
    s = n(probe) @ entries.T
    ranks, tops_nonmated, hits, mate_scores = [], [], [], []
    for i in range(len(probe)):
        mate = elab == plab[i]
        if mate.any():
            best = s[i][mate].max()
            # ties count against the probe: rank = 1 + #non-mated scoring >= the best mate
            ranks.append(1 + int(np.sum(s[i][~mate] >= best)))
            hits.append(ranks[-1] == 1)
            mate_scores.append(best)
        else:
            tops_nonmated.append(s[i].max())
    ranks = np.array(ranks)
    cmc = [float(np.mean(ranks <= r)) for r in range(1, max_rank + 1)]
    tops = np.sort(tops_nonmated)[::-1]
    tpir = {}
    for f in fpirs:
        k = int(np.round(f * len(tops)))
        t = tops[0] + 1e-8 if k == 0 else tops[k - 1]
        tpir[f] = float(np.mean(np.array(hits) & (np.array(mate_scores) >= t)))
    return cmc, tpir


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force(seed, monkeypatch):
    monkeypatch.setattr(identification, "DISTRACTOR_CHUNK", 37)  # several distractor chunks
    rng = np.random.default_rng(seed)
    n_ids, dim = 30, 16
    centres = rng.normal(size=(n_ids, dim))
    glab = np.array([f"id{i}" for i in range(20)])  # ids 20..29 are not enrolled
    gallery = centres[:20] + 0.7 * rng.normal(size=(20, dim))
    pid = rng.integers(0, n_ids, 120)
    plab = np.array([f"id{i}" for i in pid])
    probe = centres[pid] + 0.7 * rng.normal(size=(120, dim))
    distractors = rng.normal(size=(200, dim))
    if seed % 2:  # 4-hot features: normalised entries are 0.5, scores multiples of 0.25 -> exact ties
        def four_hot(base=None):
            v = np.zeros(dim)
            v[rng.choice(dim, 4, replace=False) if base is None else base] = 1
            return v
        hot = [rng.choice(dim, 4, replace=False) for _ in range(n_ids)]
        jitter = lambda h: np.where(rng.random(4) < 0.3, rng.integers(0, dim, 4), h)
        gallery = np.stack([four_hot(np.unique(np.r_[jitter(hot[i]), rng.choice(dim, 4)])[:4]) for i in range(20)])
        probe = np.stack([four_hot(np.unique(np.r_[jitter(hot[i]), rng.choice(dim, 4)])[:4]) for i in pid])
        distractors = np.stack([four_hot() for _ in range(200)])
    fpirs = (1e-2, 0.1, 0.3)
    res = identify(probe, plab, gallery, glab, distractors, max_rank=10, fpirs=fpirs)
    cmc, tpir = reference(probe, plab, gallery, glab, distractors, 10, fpirs)
    assert res["cmc"] == pytest.approx(cmc, abs=1e-12)
    assert res["rank1"] == cmc[0]
    assert [v["tpir"] for v in res["tpir_at_fpir"].values()] == pytest.approx([tpir[f] for f in fpirs])
    assert res["tpir_at_fpir"]["1e-2"]["too_few_nonmated"] == (0.01 * (120 - res["n_mated"]) < 1)


def test_cli_identification(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 8))
    keys, feats = [], []
    for i in range(5):
        for j in range(3):
            keys.append(f"p{i}_{j}")
            feats.append(centres[i] + 0.1 * rng.normal(size=8))
    for j in range(50):
        keys.append(f"d{j}")
        feats.append(rng.normal(size=8))
    np.save(tmp_path / "f.npy", np.array(feats, np.float32))
    (tmp_path / "k.txt").write_text("\n".join(keys) + "\n")
    (tmp_path / "gallery.txt").write_text("".join(f"p{i}_0 id{i}\n" for i in range(4)))
    (tmp_path / "probes.txt").write_text("".join(f"p{i}_{j} id{i}\n" for i in range(5) for j in (1, 2)))
    (tmp_path / "distractors.txt").write_text("".join(f"d{j}\n" for j in range(50)))
    argv = ["eval", "identification", "--probes", str(tmp_path / "probes.txt"), "--gallery", str(tmp_path / "gallery.txt"),
            "--distractors", str(tmp_path / "distractors.txt"), "--features", str(tmp_path / "f.npy"),
            "--keys", str(tmp_path / "k.txt"), "--max-rank", "5", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_probes"] == 10 and out["n_mated"] == 8 and out["n_distractors"] == 50
    assert out["rank1"] == 1.0 and len(out["cmc"]) == 5
    (tmp_path / "bad.txt").write_text("p0_1 id0\np0_2\n")
    argv[3] = str(tmp_path / "bad.txt")
    assert main(argv) == 2
    assert "bad.txt, line 2: expected key identity, got 1 fields" in capsys.readouterr().err
