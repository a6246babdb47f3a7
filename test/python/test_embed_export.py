"""`dmfr embed` (features + keys, flip-sum) and `dmfr export --onnx` (onnxruntime within 1e-4)."""
import numpy as np
import pytest
import torch
from PIL import Image

from dmfr.cli.__main__ import main
from dmfr.embed import Embedder
from dmfr.errors import DataError

from engine_helpers import save_training_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path, method = save_training_checkpoint(tmp_path_factory.mktemp("ckpt"))
    return path, method.eval()


@pytest.fixture()
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for who, n in (("alice", 2), ("bob", 3)):
        (root / who).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (70 + i, 60, 3), dtype=np.uint8)).save(root / who / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (80, 80), dtype=np.uint8)).save(root / "bob" / "grey.pgm")
    (root / "notes.txt").write_text("not an image")
    return root


def test_embed_dir_writes_features_and_keys(ckpt, image_dir, tmp_path):
    path, method = ckpt
    out = tmp_path / "out" / "feats.npy"
    assert main(["embed", str(path), "--images", str(image_dir), "--out", str(out), "--batch-size", "2"]) == 0
    feats = np.load(out)
    keys = (tmp_path / "out" / "feats.keys.txt").read_text().splitlines()
    assert keys == ["alice/0.png", "alice/1.png", "bob/0.png", "bob/1.png", "bob/2.png", "bob/grey.pgm"]
    assert feats.dtype == np.float32 and feats.shape == (6, 32)
    # the same numbers as the Method's own embed() on the preprocessed image
    from dmfr.data.images import load_image, to_tensor_batch
    x = to_tensor_batch([load_image(image_dir / "bob" / "1.png")], 56)
    np.testing.assert_allclose(feats[3], method.embed(x)[0].numpy(), rtol=1e-5, atol=1e-5)


def test_flip_sum(ckpt, image_dir):
    emb = Embedder.from_checkpoint(ckpt[0])
    img = np.asarray(Image.open(image_dir / "alice" / "0.png"))
    plain, mirrored = emb.embed_images([img, img[:, ::-1].copy()], flip=False)
    flipped = emb.embed_images([img], flip=True)[0]
    np.testing.assert_allclose(flipped, plain + mirrored, rtol=1e-5, atol=1e-5)
    assert not np.allclose(plain, mirrored)


def test_embed_list_file_and_bad_image(ckpt, image_dir, tmp_path, capsys):
    lst = image_dir / "list.txt"
    lst.write_text("bob/2.png 1\nalice/0.png 0\n")
    out = tmp_path / "f.npy"
    assert main(["embed", str(ckpt[0]), "--images", str(lst), "--out", str(out), "--flip"]) == 0
    assert (tmp_path / "f.keys.txt").read_text() == "bob/2.png\nalice/0.png\n"
    assert np.load(out).shape == (2, 32)
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n trunc")
    lst.write_text("broken.png 3\n")
    assert main(["embed", str(ckpt[0]), "--images", str(lst), "--out", str(out)]) == 2
    assert "broken.png: cannot decode image" in capsys.readouterr().err
    with pytest.raises(DataError, match="no such directory or list file"):
        from dmfr.embed import list_images
        list_images(tmp_path / "nope")


def test_export_onnx_matches_pytorch(ckpt, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "model.onnx"
    assert main(["export", str(ckpt[0]), "--onnx", str(out)]) == 0
    assert "max |diff|" in capsys.readouterr().out
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    emb = Embedder.from_checkpoint(ckpt[0])
    for n in (1, 5):
        x = torch.rand(n, 3, 56, 56) * 2 - 1
        got = session.run(["features"], {"images": x.numpy()})[0]
        np.testing.assert_allclose(got, emb.embed_tensor(x), rtol=0, atol=1e-4)


def test_checkpoint_that_is_not_a_model(tmp_path, capsys):
    bogus = tmp_path / "x.pt"
    torch.save({"hello": torch.zeros(1)}, bogus)
    assert main(["export", str(bogus), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "x.pt: neither a dmfr training checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error(ckpt, image_dir, tmp_path, capsys):
    assert main(["embed", str(ckpt[0]), "--images", str(image_dir), "--out", str(tmp_path / "f.npy"),
                 "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
