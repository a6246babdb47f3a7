"""ONNX export of a checkpoint's feature extractor, verified with onnxruntime.

Input `images` float32 [N, 3, S, S] normalised as in training ((x/255 − 0.5)/0.5, RGB); output
`features` float32 [N, D], unnormalised; the batch axis is dynamic. The TorchScript-based exporter
(`dynamo=False`, the default before torch 2.9; torch 2.4 has no `dynamo` argument and only this
exporter) is used: it needs only the `onnx` package.

The crop or 5-point alignment the model was trained with (`data.preprocess`, dmfr.data.preprocess)
happens before the graph's input; the file records it in its metadata (`metadata_props`): key
`dmfr.preprocess`, JSON `{"image_size", "crop_center", "crop_box", "landmarks",
"normalize": "(x/255-0.5)/0.5 RGB"}`, so a consumer of the .onnx applies the same preprocessing.
"""
from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dmfr.embed import Embedder

TOLERANCE = 1e-4


class _Features(nn.Module):
    def __init__(self, embedder: Embedder):
        super().__init__()
        self.model = embedder.model
        self.fn = embedder._embed

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


def export_onnx(ckpt: str | os.PathLike, out: str | os.PathLike, opset: int = 17) -> tuple[Path, Embedder]:
    embedder = Embedder.from_checkpoint(ckpt, device="cpu")
    module = _Features(embedder).eval()
    size = embedder.image_size
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    example = torch.zeros(2, 3, size, size)
    # torch >= 2.9 defaults to the dynamo exporter (needs onnxscript); 2.4 lacks the argument.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its future
        torch.onnx.export(module, (example,), str(tmp), **legacy, input_names=["images"],
                          output_names=["features"], opset_version=opset,
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    _record_preprocess(tmp, embedder)
    os.replace(tmp, out)
    return out, embedder


def preprocess_metadata(embedder: Embedder) -> dict:
    from dmfr.data.preprocess import DEFAULT_PREPROCESS

    pre = embedder.preprocess
    info = dict(DEFAULT_PREPROCESS)
    if pre is not None:
        info = {"crop_center": pre.center or [], "crop_box": pre.box or [], "landmarks": pre.landmarks_path or ""}
    return {"image_size": embedder.image_size, **info, "normalize": "(x/255-0.5)/0.5 RGB"}


def _record_preprocess(path: Path, embedder: Embedder) -> None:
    import json

    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "dmfr.preprocess", json.dumps(preprocess_metadata(embedder))
    onnx.save(model, str(path))


def verify_onnx(onnx_path: str | os.PathLike, embedder: Embedder, batch: int = 3, seed: int = 0) -> float:
    """Max |onnxruntime − PyTorch| on a random batch (a size other than the export's, which checks
    the dynamic axis)."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, embedder.image_size, embedder.image_size, generator=g) * 2 - 1
    expected = embedder.embed_tensor(images)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": images.numpy()})[0]
    if got.shape != expected.shape:
        raise AssertionError(f"onnxruntime output shape {got.shape}, PyTorch {expected.shape}")
    return float(np.abs(got - expected).max())
