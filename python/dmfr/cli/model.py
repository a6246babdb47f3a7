"""`dmfr model import FILE --arch r100 [--width W] [--input-size S] --out DIR|FILE`.

Loads an insightface arcface_torch `backbone.pth` strictly into dmfr's IResNet and writes a dmfr
backbone file, usable as `train.init` and by `dmfr embed` / `dmfr export`.
"""
from __future__ import annotations

import argparse

from dmfr.models.iresnet import LAYERS


def _import(args: argparse.Namespace) -> int:
    from dmfr.backbone_io import import_arcface_backbone, save_backbone

    model, header = import_arcface_backbone(args.file, args.arch, width=args.width, input_size=args.input_size)
    out = save_backbone(args.out, model, header)
    params = sum(p.numel() for p in model.parameters())
    print(f"imported {args.file} as {args.arch} (width {args.width}, {header['embedding_size']}-d, "
          f"{params / 1e6:.1f}M parameters) -> {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="backbone weights: import from arcface_torch")
    verbs = model.add_subparsers(dest="model_verb", required=True)
    imp = verbs.add_parser("import", help="arcface_torch backbone.pth -> dmfr backbone file (strict)")
    imp.add_argument("file", help="arcface_torch backbone.pth")
    imp.add_argument("--arch", required=True, choices=sorted(LAYERS), help="IResNet depth of the file")
    imp.add_argument("--width", type=float, default=1.0, help="channel multiplier (1 for arcface_torch files)")
    imp.add_argument("--input-size", type=int, default=112, help="input image size (arcface_torch: 112)")
    imp.add_argument("--out", required=True, help="output file, or a directory (writes backbone.pt there)")
    imp.set_defaults(func=_import)
