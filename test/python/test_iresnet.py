"""IResNet names and shapes equal arcface_torch's (fixtures derived in fixtures/README.md)."""
from pathlib import Path

import pytest
import torch

from dmfr.models import get_model

FIXTURES = Path(__file__).parent / "fixtures"


def read_fixture(arch: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in (FIXTURES / f"iresnet_{arch}.txt").read_text().splitlines():
        name, shape = line.split("\t")
        rows.append((name, tuple(int(x) for x in shape.split(",")) if shape else ()))
    return rows


@pytest.mark.parametrize("arch", ["r18", "r50", "r100"])
def test_state_dict_matches_arcface_torch(arch):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = get_model(arch)
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    expected = read_fixture(arch)
    assert ours == expected  # same names, same order, same shapes


def test_frozen_features_weight_and_init():
    model = get_model("r18", width=0.25)
    assert model.features.weight.requires_grad is False
    assert torch.all(model.features.weight == 1)
    assert torch.all(model.layer1[0].bn1.weight == 1) and torch.all(model.layer1[0].bn1.bias == 0)
    std = model.layer3[0].conv1.weight.std().item()
    assert 0.08 < std < 0.12  # normal(0, 0.1) conv init


@pytest.mark.parametrize("size", [112, 64, 56])
def test_forward_shapes(size):
    model = get_model("r_tiny", num_features=32, width=0.125, input_size=size).eval()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 32)


def test_fc_runs_in_float32_under_autocast():
    model = get_model("r_tiny", num_features=16, width=0.125, input_size=56).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 56, 56))
    assert out.dtype == torch.float32


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown backbone 'r7'"):
        get_model("r7")
