"""`dmfr model import` (strict arcface_torch backbone.pth) and `train.init` loading."""
import pytest
import torch

from dmfr.backbone_io import load_init_backbone
from dmfr.cli.__main__ import main
from dmfr.errors import DmfrError
from dmfr.methods import build_method

from engine_helpers import arcface_torch_state_dict, save_training_checkpoint, small_config


@pytest.fixture(scope="module")
def r18_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("pth") / "backbone.pth"
    state = arcface_torch_state_dict("r18")
    torch.save(state, path)
    return path, state


def test_import_r18_and_use_as_init(r18_pth, tmp_path, capsys):
    path, state = r18_pth
    assert main(["model", "import", str(path), "--arch", "r18", "--out", str(tmp_path)]) == 0
    out = tmp_path / "backbone.pt"
    assert "imported" in capsys.readouterr().out and out.is_file()
    config = small_config(arch="r18", width=1.0, embedding_size=512, image_size=112)
    for source in (path, out):  # the arcface_torch file itself, and dmfr's backbone file
        method = build_method(config, num_classes=7)
        assert load_init_backbone(method, source) in ("arcface_torch", "dmfr-backbone")
        got = method.backbone.state_dict()
        assert all(torch.equal(got[k], v) for k, v in state.items())


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("layer2.1.bn3.running_var"), "missing key 'layer2.1.bn3.running_var'"),
    (lambda s: s.__setitem__("layer9.weight", torch.zeros(1)), "unexpected key 'layer9.weight'"),
    (lambda s: s.__setitem__("fc.bias", torch.zeros(511)), "misshapen key fc.bias"),
])
def test_import_names_the_bad_key(r18_pth, tmp_path, capsys, mutate, message):
    state = dict(r18_pth[1])
    mutate(state)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    assert main(["model", "import", str(bad), "--arch", "r18", "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert "bad.pth" in err and message in err
    assert not (tmp_path / "o.pt").exists()


def test_import_wrong_arch_is_an_error(r18_pth, tmp_path, capsys):
    assert main(["model", "import", str(r18_pth[0]), "--arch", "r50", "--out", str(tmp_path / "o.pt")]) == 2
    assert "missing key 'layer1.2.bn1.weight' and 287 more" in capsys.readouterr().err


def test_init_from_dmfr_checkpoint(tmp_path):
    ckpt, trained = save_training_checkpoint(tmp_path)
    fresh = build_method(small_config(), num_classes=9)  # other class count: heads are not loaded
    assert load_init_backbone(fresh, ckpt) == "dmfr-checkpoint"
    for k, v in trained.backbone.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[k], v)
    other = build_method(small_config(width=0.25), num_classes=9)
    with pytest.raises(DmfrError, match="misshapen key"):
        load_init_backbone(other, ckpt)


def test_imported_backbone_embeds(r18_pth, tmp_path):
    import numpy as np

    from dmfr.embed import Embedder
    from dmfr.models import get_model

    out = tmp_path / "r18.pt"
    assert main(["model", "import", str(r18_pth[0]), "--arch", "r18", "--out", str(out)]) == 0
    emb = Embedder.from_checkpoint(out)
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    feats = emb.embed_images([img], flip=False)
    reference = get_model("r18").eval()
    reference.load_state_dict(r18_pth[1])
    x = torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)
    with torch.no_grad():
        np.testing.assert_allclose(feats[0], reference(x)[0].numpy(), rtol=1e-4, atol=1e-4)
