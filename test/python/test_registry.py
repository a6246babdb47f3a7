"""`build_dataset` (python/dmfr/data/registry.py) dispatches `data.kind` to the real readers."""
import io

import numpy as np
import pytest
from PIL import Image

from dmfr.data.registry import build_dataset
from dmfr.errors import ConfigError
from tiny_data import tiny_config


def png(seed: int, size: int = 20) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "faces"
    for k, ident in enumerate(("alice", "bob", "carol")):
        (root / ident).mkdir(parents=True)
        for j in range(2):
            (root / ident / f"{j}.png").write_bytes(png(10 * k + j))
    return root


def data_config(kind, path=None, **extra):
    data = {"kind": kind, "image_size": 16, **extra}
    if path is not None:
        data["path"] = str(path)
    return tiny_config(data=data)


def check(ds, n, classes):
    assert len(ds) == n and ds.num_classes == classes
    assert ds.labels.dtype == np.int32 and ds.domains.dtype == np.int16 and ds.pair.dtype == np.int32
    batch = ds.load(np.array([0, n - 1]))
    assert tuple(batch.shape) == (2, 3, 16, 16) and batch.min() >= -1 and batch.max() <= 1


def test_folder_list_and_rec_kinds(folder, tmp_path):
    check(build_dataset(data_config("folder", folder)), 6, 3)
    listing = tmp_path / "train.lst"
    listing.write_text("".join(f"{p} {i // 2}\n" for i, p in enumerate(sorted(folder.rglob("*.png")))))
    check(build_dataset(data_config("list", listing)), 6, 3)
    from dmfr.data.recordio import pack

    rec = tmp_path / "rec" / "train.rec"
    rec.parent.mkdir()
    pack(str(rec), [(i // 2, png(i)) for i in range(6)])
    check(build_dataset(data_config("rec", rec)), 6, 3)


def test_procedural_kind():
    config = tiny_config(data={"kind": "procedural", "image_size": 32,
                               "procedural": {"seed": 0, "identities": 4, "images_per_identity": 2,
                                              "generators": ["pose"], "fingerprint_strength": 1}})
    ds = build_dataset(config)
    assert ds.num_classes == 4 and {d.kind for d in ds.domain_info} == {"real", "generative"}


def test_bad_settings_are_named(folder, tmp_path):
    with pytest.raises(ConfigError, match="data.kind: unknown dataset kind 'zip'"):
        build_dataset(data_config("zip", tmp_path))
    with pytest.raises(ConfigError, match="data.path is required when data.kind is 'folder'"):
        build_dataset(data_config("folder"))
    with pytest.raises(ConfigError, match=r"data.generative\[0\]"):
        build_dataset(data_config("folder", folder, generative=[{"name": "pose"}]))
