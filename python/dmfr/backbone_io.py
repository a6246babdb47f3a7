"""Backbone weights in and out: arcface_torch `backbone.pth`, dmfr backbone files, `train.init`.

arcface_torch saves `backbone.module.state_dict()` (plain IResNet keys, no "module." prefix) as
`backbone.pth`. dmfr's IResNet has the same names and shapes (test/python/test_iresnet.py), so
such a file loads strictly. A dmfr backbone file wraps the state dict with what is needed to
rebuild the model without a run config:

    {"format": "dmfr-backbone", "version": 1, "arch", "width", "embedding_size", "input_size",
     "backbone": state_dict}
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from dmfr.checkpoint import atomic_write, load_checkpoint
from dmfr.errors import DmfrError
from dmfr.models import get_model
from dmfr.models.iresnet import LAYERS

BACKBONE_FORMAT = "dmfr-backbone"


def _tensor_dict(state: dict, path: Path) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise DmfrError(f"{path}: not a state dict of tensors (entry {bad[0]!r})")
    # A backbone saved from inside DDP carries a "module." prefix on every key.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def strict_load(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """load_state_dict(strict=True), but every missing, extra or misshapen key is named with its file."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    misshapen = [f"{k} (file {tuple(state[k].shape)}, model {tuple(v.shape)})"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing key {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if extra:
        problems.append(f"unexpected key {extra[0]!r}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
    if misshapen:
        problems.append(f"misshapen key {misshapen[0]}" + (f" and {len(misshapen) - 1} more" if len(misshapen) > 1 else ""))
    if problems:
        raise DmfrError(f"{source}: backbone does not match the model: " + "; ".join(problems))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def read_backbone_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(backbone state dict, info) from a dmfr checkpoint, a dmfr backbone file or an arcface_torch
    backbone.pth. `info` has "kind" and, where the file says, "arch"/"width"/... or "config"."""
    path = Path(path)
    state = load_checkpoint(path)
    if state.get("format") == BACKBONE_FORMAT:
        info = {k: state[k] for k in ("arch", "width", "embedding_size", "input_size")}
        return _tensor_dict(state["backbone"], path), {"kind": "dmfr-backbone", **info}
    if "method" in state and "config" in state:  # a dmfr training checkpoint
        method = state["method"]
        backbone = {k[len("backbone."):]: v for k, v in method.items() if k.startswith("backbone.")}
        if not backbone:
            raise DmfrError(f"{path}: checkpoint's method state has no 'backbone.' entries")
        return _tensor_dict(backbone, path), {"kind": "dmfr-checkpoint", "config": state["config"],
                                              "num_classes": state.get("num_classes")}
    return _tensor_dict(state, path), {"kind": "arcface_torch"}


def import_arcface_backbone(path: str | os.PathLike, arch: str, width: float = 1.0,
                            input_size: int = 112) -> tuple[nn.Module, dict]:
    """Strictly load an arcface_torch backbone.pth into dmfr's IResNet; returns (model, header)."""
    if arch not in LAYERS:
        raise DmfrError(f"--arch {arch!r}: expected one of {sorted(LAYERS)}")
    state, info = read_backbone_state(path)
    if "fc.weight" not in state:
        raise DmfrError(f"{path}: backbone does not match the model: missing key 'fc.weight'")
    embedding_size = int(state["fc.weight"].shape[0])  # arcface_torch's `embedding_size` setting
    model = get_model(arch, num_features=embedding_size, width=width, input_size=input_size)
    strict_load(model, state, path)
    header = {"format": BACKBONE_FORMAT, "version": 1, "arch": arch, "width": width,
              "embedding_size": embedding_size, "input_size": input_size}
    return model, header


def save_backbone(out: str | os.PathLike, model: nn.Module, header: dict) -> Path:
    """Write a dmfr backbone file atomically. `out` is a file, or a directory (→ backbone.pt)."""
    out = Path(out)
    if out.is_dir() or str(out).endswith(os.sep):
        out = out / "backbone.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {**header, "backbone": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write(out, lambda f: torch.save(state, f))
    return out


def build_backbone_from_file(path: str | os.PathLike) -> nn.Module:
    """An IResNet with weights from a dmfr backbone file (as written by `dmfr model import`)."""
    state, info = read_backbone_state(path)
    if info["kind"] != "dmfr-backbone":
        raise DmfrError(f"{path}: expected a dmfr backbone file (from `dmfr model import`), found {info['kind']}")
    model = get_model(info["arch"], num_features=info["embedding_size"], width=info["width"],
                      input_size=info["input_size"])
    strict_load(model, state, path)
    return model


def load_init_backbone(method: nn.Module, path: str | os.PathLike) -> str:
    """`train.init`: copy backbone weights from a dmfr checkpoint, a dmfr backbone file or an
    arcface_torch backbone.pth into `method.backbone` (strict). Heads are not touched: the paper
    starts each DMFR net from a softmax-pretrained backbone and new heads (paper, "Training": "all DMFR networks are based on a network that is pretrained by only softmax loss").
    Returns the kind of file loaded."""
    state, info = read_backbone_state(path)
    strict_load(method.backbone, state, path)
    return info["kind"]
