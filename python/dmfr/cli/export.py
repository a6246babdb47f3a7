"""`dmfr export CKPT --onnx OUT.onnx [--opset N]`: feature extractor to ONNX (dynamic batch),
checked against PyTorch with onnxruntime (max difference ≤ 1e-4, else an error)."""
from __future__ import annotations

import argparse


def _export(args: argparse.Namespace) -> int:
    from dmfr.errors import DmfrError
    from dmfr.export import TOLERANCE, export_onnx, verify_onnx

    out, embedder = export_onnx(args.ckpt, args.onnx, opset=args.opset)
    diff = verify_onnx(out, embedder)
    if diff > TOLERANCE:
        raise DmfrError(f"{out}: onnxruntime differs from PyTorch by {diff:.2e} (> {TOLERANCE:g})")
    pre = embedder.preprocess.describe() if embedder.preprocess is not None else "none"
    print(f"exported {args.ckpt} -> {out} (input {embedder.image_size}x{embedder.image_size}, dynamic batch; "
          f"onnxruntime max |diff| {diff:.1e}; preprocessing before the input: {pre}, "
          f"in metadata dmfr.preprocess)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint's feature extractor to ONNX")
    p.add_argument("ckpt", help="dmfr checkpoint (step-*.pt) or backbone file (dmfr model import)")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=_export)
