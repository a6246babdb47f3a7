"""Training methods behind one interface (`Method`); `build_method` picks one by config name.

real/mix: plain classification (the paper's CosFace/ArcFace rows); meta, disentangle, filter: the
three DMFR methods; dul, url: the paper's comparison methods. docs/methods.md describes each.
"""
from __future__ import annotations

import importlib

from .base import Batch, Method

# name → "module:Class". A method module is imported only when used.
REGISTRY = {
    "real": "dmfr.methods.classify:Classify",
    "mix": "dmfr.methods.classify:Classify",
    "meta": "dmfr.methods.meta:MetaDMFR",
    "disentangle": "dmfr.methods.disentangle:DisentangleDMFR",
    "filter": "dmfr.methods.filter:FilterDMFR",
    "dul": "dmfr.methods.dul:DUL",
    "url": "dmfr.methods.url:URL",
}


def build_method(config: dict, num_classes: int) -> Method:
    """`config` is the whole run config (ts/config/schema.ts)."""
    name = config["method"]["name"]
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config, num_classes)


__all__ = ["Batch", "Method", "build_method", "REGISTRY"]
