"""Generative-domain manifests (docs/domains.md) and attaching generative domains to a real dataset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmfr.data import manifest, render
from dmfr.data.folder import FolderDataset
from dmfr.data.generative import attach_generative
from dmfr.data.manifest import ManifestEntry, read_manifest, register, write_manifest
from dmfr.data.synth import synthesize_folder
from dmfr.errors import ConfigError, DataError


def entries():
    return [
        ManifestEntry("a/0_pose+30.png", "a", "a/0.png", "pose", 30.0, 1.0),
        ManifestEntry("b/1_pose+0.png", "b", "b/1.png", "pose", 0.0),
        ManifestEntry("c/2.png", 2, 5, "prnet", -45.5),
    ]


def touch_images(folder: Path, items):
    for e in items:
        p = folder / e.path
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(p)


def test_round_trip(tmp_path):
    touch_images(tmp_path, entries())
    file = write_manifest(tmp_path, entries())
    assert file == str(tmp_path / "manifest.jsonl")
    assert read_manifest(tmp_path) == entries()
    first = json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[0])
    assert first == {"path": "a/0_pose+30.png", "identity": "a", "source": "a/0.png", "generator": "pose",
                     "delta": 30.0, "strength": 1.0}


def test_csv_manifest_reads_the_same(tmp_path):
    touch_images(tmp_path, entries()[:2])
    csv = tmp_path / "external.csv"
    csv.write_text("path,identity,source,generator,delta\n"
                   "a/0_pose+30.png,a,a/0.png,pose,30\n"
                   "b/1_pose+0.png,b,b/1.png,pose,0\n")
    got = read_manifest(csv)
    assert [(e.path, e.identity, e.source, e.generator, e.delta) for e in got] == [
        (e.path, e.identity, e.source, e.generator, e.delta) for e in entries()[:2]]


BAD = [
    ('{"path": "x.png", "identity": "a", "source": "a/0.png", "generator": "pose"', "invalid JSON"),
    ('{"path": "x.png", "identity": "a", "source": "a/0.png", "generator": "pose"}', r"missing field\(s\) delta"),
    ('{"path": "/etc/x.png", "identity": "a", "source": "s", "generator": "g", "delta": 1}', "must be relative"),
    ('{"path": "../x.png", "identity": "a", "source": "s", "generator": "g", "delta": 1}', "must be relative"),
    ('{"path": "x.png", "identity": "a", "source": "s", "generator": "g", "delta": "30"}', "field delta: expected a finite number"),
    ('{"path": "x.png", "identity": "", "source": "s", "generator": "g", "delta": 1}', "field identity"),
    ('{"path": "x.png", "identity": "a", "source": "s", "generator": "g", "delta": 1, "yaw": 3}', r"unknown field\(s\) yaw"),
    ('{"path": "missing.png", "identity": "a", "source": "s", "generator": "g", "delta": 1}', "image 'missing.png' not found"),
    ('{"path": "ok.png", "identity": "a", "source": "s", "generator": "g", "delta": 1}', "path 'ok.png' repeats line 1"),
    ('[1, 2]', "expected a JSON object"),
]


@pytest.mark.parametrize("line,message", BAD)
def test_bad_manifest_names_file_and_line(tmp_path, line, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    good = '{"path": "ok.png", "identity": "a", "source": "s", "generator": "g", "delta": 1}'
    (tmp_path / "manifest.jsonl").write_text(good + "\n\n" + line + "\n")
    with pytest.raises(DataError, match=rf"manifest\.jsonl:3: .*{message}"):
        read_manifest(tmp_path)


def test_empty_and_absent_manifests(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text("\n")
    with pytest.raises(DataError, match="manifest has no entries"):
        read_manifest(tmp_path)


def test_register_external_output(tmp_path):
    folder = tmp_path / "prnet_out"
    touch_images(folder, entries()[:2])
    csv = tmp_path / "list.csv"
    csv.write_text("path,identity,source,generator,delta\n"
                   "a/0_pose+30.png,a,a/0.png,prnet,30\n"
                   "b/1_pose+0.png,b,b/1.png,prnet,0\n"
                   "b/9.png,b,b/1.png,prnet,10\n")
    with pytest.raises(DataError, match=r"list\.csv:4: image 'b/9\.png' not found"):
        register(folder, csv)
    csv.write_text("\n".join(csv.read_text().splitlines()[:3]) + "\n")
    assert register(folder, csv) == str(folder / "manifest.jsonl")
    assert [e.generator for e in read_manifest(folder)] == ["prnet", "prnet"]


# ---- attach_generative ------------------------------------------------------------------------

@pytest.fixture()
def real_folder(tmp_path):
    rng = np.random.default_rng(0)
    x = render.render(render.sample_codes(rng, 6), render.sample_nuisance(rng, 6, np.zeros(6)), 32)
    root = tmp_path / "real"
    for i in range(6):
        d = root / f"id{i // 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(d / f"{i % 2}.png")
    return root


def test_attach_generative_domains(tmp_path, real_folder):
    pose = tmp_path / "pose"
    quality = tmp_path / "quality"
    synthesize_folder(str(real_folder), "pose", [0.0, 20.0], str(pose), strength=0.0, image_size=32)
    synthesize_folder(str(real_folder), "quality", [0.5], str(quality), image_size=32)
    real = FolderDataset(str(real_folder), image_size=32)
    ds = attach_generative(real, [{"name": "pose", "path": str(pose)}, {"name": "blur", "path": str(quality)}])
    assert len(ds) == 6 + 12 + 6 and ds.num_classes == 3
    assert [(d.id, d.name, d.kind, d.generator) for d in ds.domain_info] == [
        (0, "real", "real", None), (1, "pose", "generative", "pose"), (2, "blur", "generative", "quality")]
    assert np.bincount(ds.domains).tolist() == [6, 12, 6]
    gen = ds.domains > 0
    assert (ds.labels[gen] == ds.labels[ds.source[gen]]).all()
    zero = gen & (ds.delta == 0)
    assert zero.sum() == 6
    np.testing.assert_array_equal(ds.pair[zero], ds.source[zero])
    assert (ds.pair[~zero] == -1).all()
    # Loading mixes real and generative samples; a Δc = 0, strength-0 sample equals its source.
    z = np.flatnonzero(zero)[:2]
    batch = ds.load(np.r_[z, ds.pair[z]])
    assert tuple(batch.shape) == (4, 3, 32, 32)
    np.testing.assert_allclose(batch[:2].numpy(), batch[2:].numpy())
    np.testing.assert_allclose(batch[2:].numpy(), real.load(ds.pair[z]).numpy())


def test_attach_errors_name_the_line(tmp_path, real_folder):
    gen = tmp_path / "g"
    synthesize_folder(str(real_folder), "pose", [10.0], str(gen), image_size=32)
    lines = (gen / "manifest.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["source"] = "id2/0.png"  # a source of another identity
    lines[1] = json.dumps(bad)
    (gen / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    real = FolderDataset(str(real_folder), image_size=32)
    with pytest.raises(DataError, match=r"manifest\.jsonl:2: identity 'id0' differs from its source"):
        attach_generative(real, [{"name": "g", "path": str(gen)}])
    bad["source"] = "nobody/0.png"
    lines[1] = json.dumps(bad)
    (gen / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"manifest\.jsonl:2: source 'nobody/0\.png' is not a sample"):
        attach_generative(real, [{"name": "g", "path": str(gen)}])
    with pytest.raises(ConfigError, match=r"data\.generative\[1\]\.name"):
        attach_generative(real, [{"name": "g", "path": str(gen)}, {"name": "g", "path": str(gen)}])


def test_build_dataset_attaches_generative_domains(tmp_path, real_folder):
    from dmfr.data.registry import build_dataset

    gen = tmp_path / "g"
    synthesize_folder(str(real_folder), "quality", [0.0, 1.0], str(gen), image_size=32)
    ds = build_dataset({"data": {"kind": "folder", "path": str(real_folder), "image_size": 32,
                                 "generative": [{"name": "quality", "path": str(gen)}]}})
    assert len(ds) == 18 and ds.domain_info[1].generator == "quality"
    assert manifest.MANIFEST_NAME == "manifest.jsonl"


def test_register_cli_hook(tmp_path, capsys):
    import argparse

    folder = tmp_path / "out"
    touch_images(folder, entries()[:1])
    lst = tmp_path / "list.jsonl"
    write_manifest(lst, entries()[:1])
    parser = argparse.ArgumentParser()
    manifest.add_register_arguments(parser)
    assert manifest.run_register(parser.parse_args(["--folder", str(folder), "--manifest", str(lst)])) == 0
    assert "registered 1 generative images" in capsys.readouterr().out
    assert read_manifest(folder) == entries()[:1]


def test_attach_to_the_procedural_benchmark(tmp_path):
    """External domains on top of the procedural set's own: next domain ids, integer provenance."""
    from dmfr.data.registry import build_dataset

    cfg = {"data": {"kind": "procedural", "image_size": 32,
                    "procedural": {"seed": 0, "identities": 6, "images_per_identity": 3, "generators": ["pose"]}}}
    base = build_dataset(cfg)
    real = np.flatnonzero(base.domains == 0)[:4]
    folder = tmp_path / "ext"
    folder.mkdir()
    items = []
    for k, i in enumerate(real):
        Image.fromarray(base.images[i]).save(folder / f"{k}.png")
        items.append(ManifestEntry(f"{k}.png", int(base.labels[i]), int(i), "external", 0.0 if k < 2 else 15.0))
    write_manifest(folder, items)
    ds = build_dataset({**cfg, "data": {**cfg["data"], "generative": [{"name": "ext", "path": str(folder)}]}})
    assert [d.name for d in ds.domain_info] == ["real", "pose", "ext"]
    ext = np.flatnonzero(ds.domains == 2)
    assert len(ext) == 4 and len(ds) == len(base) + 4
    np.testing.assert_array_equal(ds.pair[ext], [real[0], real[1], -1, -1])
    np.testing.assert_array_equal(ds.pair[: len(base)], base.pair)  # the base's own pairs are kept
    np.testing.assert_allclose(ds.load(ext[:2]).numpy(), base.load(real[:2]).numpy())
    # A source that is itself synthetic is refused.
    pose_sample = int(np.flatnonzero(base.domains == 1)[0])
    write_manifest(folder, [ManifestEntry("0.png", int(base.labels[pose_sample]), pose_sample, "external", 0.0)])
    with pytest.raises(DataError, match=r"manifest\.jsonl:1: source .* is a generative sample"):
        build_dataset({**cfg, "data": {**cfg["data"], "generative": [{"name": "ext", "path": str(folder)}]}})
    with pytest.raises(ConfigError, match=r"domain name 'pose' is already used"):
        build_dataset({**cfg, "data": {**cfg["data"], "generative": [{"name": "pose", "path": str(folder)}]}})
