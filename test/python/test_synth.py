"""The built-in generators: g(x, 0) = 0, their fingerprints ε, and `dmfr data synth`."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from dmfr.data import manifest, render, synth
from dmfr.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
FACES = REPO.parent / "shared" / "data" / "faces"


def faces(n, size=32, seed=0, yaw=None):
    rng = np.random.default_rng(seed)
    codes = render.sample_codes(rng, n)
    yaw = np.zeros(n, np.float32) if yaw is None else np.full(n, yaw, np.float32)
    nuis = render.sample_nuisance(rng, n, yaw)
    return render.render(codes, nuis, size), codes, nuis


@pytest.mark.parametrize("name", sorted(synth.GENERATORS))
def test_zero_delta_at_zero_strength_reproduces_the_source(name):
    x, _, _ = faces(8)
    mean = x.astype(np.float32).mean(0)
    out = synth.get_generator(name).apply(x, np.zeros(8), strength=0.0, identity_loss=0.5, mean_face=mean)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("name,delta", [("pose", 30.0), ("quality", 0.75)])
def test_nonzero_delta_changes_the_image(name, delta):
    x, _, _ = faces(8)
    out = synth.get_generator(name).apply(x, np.full(8, delta), strength=0.0)
    assert np.abs(out.astype(float) - x).mean() > 2


def test_pose_warp_turns_the_face_the_renderer_s_way():
    # A +30° warp of a frontal render resembles the +30° render of the same face more than the −30° one.
    x, codes, nuis = faces(16, size=48)
    warped = synth.get_generator("pose").apply(x, np.full(16, 30.0), strength=0.0).astype(np.float32)
    nuis.yaw[:] = 30
    plus = render.render(codes, nuis, 48).astype(np.float32)
    nuis.yaw[:] = -30
    minus = render.render(codes, nuis, 48).astype(np.float32)
    err_plus = np.abs(warped - plus).mean(axis=(1, 2, 3))
    err_minus = np.abs(warped - minus).mean(axis=(1, 2, 3))
    assert (err_plus < err_minus).mean() > 0.9


def test_quality_removes_detail():
    # The source's fine detail (its high-pass band) survives level 0.25 better than level 1.
    from scipy.ndimage import gaussian_filter

    x, _, _ = faces(8, size=64)
    gen = synth.get_generator("quality")

    def kept(level):
        out = gen.apply(x, np.full(8, level), strength=0.0).astype(np.float32)
        hp = lambda im: (im - gaussian_filter(im, (0, 1.0, 1.0, 0))).ravel()
        return np.corrcoef(hp(out), hp(x.astype(np.float32)))[0, 1]

    assert kept(1.0) < 0.5 and kept(0.25) > kept(1.0) + 0.1


def test_identity_loss_moves_toward_the_mean_face():
    x, _, _ = faces(16)
    mean = x.astype(np.float32).mean(0)
    gen = synth.get_generator("pose")
    plain = gen.apply(x, np.full(16, 30.0), strength=0.0).astype(np.float32)
    lossy = gen.apply(x, np.full(16, 30.0), strength=0.0, identity_loss=0.5, mean_face=mean).astype(np.float32)
    mean_w = gen.apply(np.broadcast_to(mean.astype(np.uint8), x.shape).copy(), np.full(16, 30.0), strength=0.0)
    assert np.abs(lossy - mean_w).mean() < np.abs(plain - mean_w).mean()


def test_fingerprint_is_content_dependent_and_generator_specific():
    x, _, _ = faces(6, size=64)
    pose, quality = synth.get_generator("pose"), synth.get_generator("quality")
    eps = pose.apply(x, np.zeros(6), strength=1.0).astype(np.float32) - x
    assert np.abs(eps).mean() > 1
    # Not one fixed additive pattern: the residual differs from image to image, and it scales
    # with the content (a half-bright copy gets a clearly weaker residual).
    assert np.abs(eps - eps.mean(0)).mean() > 0.25 * np.abs(eps).mean()
    dim = (x // 2).astype(np.uint8)
    eps_dim = pose.apply(dim, np.zeros(6), strength=1.0).astype(np.float32) - dim
    assert np.abs(eps_dim).mean() < 0.75 * np.abs(eps).mean()
    p1, p2 = pose.fingerprint.pattern(64), quality.fingerprint.pattern(64)
    assert abs(np.corrcoef(p1.ravel(), p2.ravel())[0, 1]) < 0.5


def _probe_accuracy(name, strength):
    """Held-out accuracy of a logistic regression on pixels: real vs synthetic at Δc = 0."""
    x, _, _ = faces(400, size=24, seed=3)
    real, src = x[:200], x[200:]  # distinct faces, so no (real, synthetic) pair can be matched
    fake = synth.get_generator(name).apply(src, np.zeros(200), strength=strength)
    data = np.concatenate([real, fake]).reshape(400, -1).astype(np.float32) / 255
    y = np.r_[np.zeros(200), np.ones(200)]
    order = np.random.default_rng(0).permutation(400)
    train, test = order[:280], order[280:]
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(data[train], y[train])
    return clf.score(data[test], y[test])


@pytest.mark.parametrize("name", sorted(synth.GENERATORS))
def test_linear_probe_tells_synthetic_from_real(name):
    assert _probe_accuracy(name, 1.0) > 0.9
    assert _probe_accuracy(name, 0.0) < 0.7  # strength 0: the same distribution


# ---- dmfr data synth -------------------------------------------------------------------------

def write_real_folder(root: Path, ids=3, per=2, size=40):
    x, _, _ = faces(ids * per, size=size, seed=5)
    for i in range(ids * per):
        d = root / f"person{i // per}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(d / f"{i % per:04d}.png")
    return x


def parse(argv):
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    return parser.parse_args(argv)


def test_synth_cli_writes_images_and_manifest(tmp_path):
    real = tmp_path / "real"
    x = write_real_folder(real)
    out = tmp_path / "pose"
    args = parse(["--from", str(real), "--generator", "pose", "--delta", "0", "30", "--out", str(out),
                  "--strength", "0", "--image-size", "40"])
    assert synth.run(args) == 0
    entries = manifest.read_manifest(out)
    assert len(entries) == 12 and {e.delta for e in entries} == {0.0, 30.0}
    assert all(e.generator == "pose" and e.strength == 0.0 for e in entries)
    for e in entries:
        assert e.identity == e.source.split("/")[0] and (real / e.source).is_file()
    # Δc = 0 at strength 0: the written image is its source.
    zero = [e for e in entries if e.delta == 0]
    for e in zero:
        src = np.asarray(Image.open(real / e.source).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(Image.open(out / e.path).convert("RGB")), src)


def test_synth_cli_checks_arguments(tmp_path):
    real = tmp_path / "real"
    write_real_folder(real)
    with pytest.raises(ConfigError, match="--delta: quality levels"):
        synth.run(parse(["--from", str(real), "--generator", "quality", "--delta", "2", "--out", str(tmp_path / "q")]))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        synth.run(parse(["--from", str(real), "--generator", "pose", "--delta", "10", "--out", str(tmp_path / "full")]))
    with pytest.raises(SystemExit):
        parse(["--from", str(real), "--generator", "cyclegan", "--delta", "1", "--out", "o"])


def test_synth_crops_the_real_images_like_data_preprocess(tmp_path):
    # Δc = 0 at strength 0 is the identity map, so the output is exactly the cropped, resized source.
    from dmfr.data.images import load_image, resize_square

    real = tmp_path / "real"
    write_real_folder(real, ids=2, per=1, size=40)
    out = tmp_path / "pose"
    args = parse(["--from", str(real), "--generator", "pose", "--delta", "0", "--out", str(out),
                  "--strength", "0", "--image-size", "16", "--crop-box", "4,6,20,20"])
    assert synth.run(args) == 0
    for e in manifest.read_manifest(out):
        want = resize_square(load_image(str(real / e.source))[6:26, 4:24], 16)
        np.testing.assert_array_equal(np.asarray(Image.open(out / e.path).convert("RGB")), want)
    bad = tmp_path / "bad"
    with pytest.raises(ConfigError, match="--crop-box: expected 4 comma-separated integers"):
        synth.run(parse(["--from", str(real), "--generator", "pose", "--delta", "0", "--out", str(bad), "--crop-box", "1,2"]))
    with pytest.raises(ConfigError, match="not --crop-box and --crop-center"):
        synth.run(parse(["--from", str(real), "--generator", "pose", "--delta", "0", "--out", str(bad),
                         "--crop-box", "0,0,8,8", "--crop-center", "8,8"]))
    with pytest.raises(DataError, match="lies outside the 40x40 image"):
        synth.run(parse(["--from", str(real), "--generator", "pose", "--delta", "0", "--out", str(bad), "--crop-box", "30,30,20,20"]))
    assert not bad.exists()  # nothing written


@pytest.mark.skipif(not (FACES / "orl").is_dir(), reason=f"real faces not found at {FACES / 'orl'}")
def test_synth_on_real_orl_faces(tmp_path):
    real = tmp_path / "orl"
    for person in ("s1", "s2"):  # a two-identity slice, linked rather than copied into the repo
        (real / person).mkdir(parents=True)
        for name in ("1.pgm", "2.pgm"):
            os.symlink(FACES / "orl" / person / name, real / person / name)
    out = tmp_path / "q"
    args = parse(["--from", str(real), "--generator", "quality", "--delta", "0.5", "--out", str(out),
                  "--identity-loss", "0.3"])
    assert synth.run(args) == 0
    entries = manifest.read_manifest(out)
    assert sorted(e.source for e in entries) == ["s1/1.pgm", "s1/2.pgm", "s2/1.pgm", "s2/2.pgm"]
    assert Image.open(out / entries[0].path).size == (112, 112)


def test_dmfr_data_synth_verb(tmp_path):
    """Through `python -m dmfr.cli data synth`, once the data verbs wire synth.add_arguments/run."""
    from dmfr.cli.__main__ import build_parser

    try:
        build_parser().parse_args(["data", "synth", "--help"])
    except SystemExit as exc:
        if exc.code != 0:
            pytest.skip("`dmfr data synth` is not wired in python/dmfr/cli/data.py yet")
    real = tmp_path / "real"
    write_real_folder(real, ids=2, per=1)
    out = tmp_path / "gen"
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    proc = subprocess.run([sys.executable, "-m", "dmfr.cli", "data", "synth", "--from", str(real), "--generator",
                           "quality", "--delta", "0.5", "--out", str(out), "--image-size", "32"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["generator"] == "quality"


@pytest.mark.parametrize("delta", [10.0, 30.0, -30.0])
def test_pose_warp_has_no_seam(delta):
    # A horizontal ramp (value 2·column) turned by a pure row warp shows the warp's source map:
    # out = 2·sx. Where the head meets the background the map must not jump (the old ellipse
    # warp moved on-head pixels and kept off-head ones, a visible seam). The depth proxy is
    # smooth, so no step between neighbouring output pixels exceeds 3 source columns at |Δc| ≤ 30°
    # (measured max 2.55): at most 2·3 grey levels, +1 for the uint8 rounding of both pixels.
    ramp = np.broadcast_to((2 * np.arange(112))[None, :, None], (112, 112, 3)).astype(np.uint8)[None]
    out = synth.get_generator("pose").apply(ramp, np.array([delta]), strength=0.0).astype(np.int32)
    assert np.abs(np.diff(out[0, :, :, 0], axis=1)).max() <= 7
    assert np.abs(out - ramp).max() > 10  # it did move
