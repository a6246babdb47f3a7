"""`build_dataset(config)`: the training set named by the `data` config section.

Each reader lives in its own module and is imported only when used, so a run on procedural data
does not need the image decoders, and the other way round.
"""
from __future__ import annotations

import importlib

from dmfr.errors import ConfigError

from .base import FaceDataset

KINDS = ("procedural", "rec", "folder", "list")


def _load(module: str, attr: str, what: str):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ConfigError(f"{what} is not available in this build ({module} is missing)") from None
        raise
    if not hasattr(mod, attr):
        raise ConfigError(f"{what} is not available in this build ({module}.{attr} is missing)")
    return getattr(mod, attr)


def _attach_preprocess(dataset, data: dict, path: str) -> None:
    """data.preprocess (crop / 5-point alignment) on every real image; landmarks are checked for
    every sample before training starts, so a missing row stops the run at once."""
    from dmfr.data.preprocess import Preprocessor

    pre = Preprocessor.from_data_config(data)
    if pre is None:
        return
    paths = getattr(dataset, "paths", None)
    if pre.landmarks_path:
        if paths is None:
            raise ConfigError("data.preprocess.landmarks needs image paths as keys: data.kind folder or list")
        pre.check_keys(paths, path)
    dataset.preprocess = pre


def build_dataset(config: dict) -> FaceDataset:
    data = config["data"]
    kind = data.get("kind", "procedural")
    if kind not in KINDS:
        raise ConfigError(f"data.kind: unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "procedural":
        dataset = _load("dmfr.data.procedural", "build_train_set", "data.kind=procedural")(config)
    else:
        path = data.get("path")
        if not path:
            raise ConfigError(f"data.path is required when data.kind is {kind!r}")
        size, skip_bad = data.get("image_size", 112), data.get("skip_bad", False)
        extra = {}
        if kind == "rec":
            cls = _load("dmfr.data.recordio", "RecordDataset", "data.kind=rec")
            from dmfr.data.selection import is_active
            if is_active(data.get("select")):
                raise ConfigError("data.select needs named identities: data.kind folder or list, not rec")
        elif kind == "folder":
            cls = _load("dmfr.data.folder", "FolderDataset", "data.kind=folder")
            extra["select"] = data.get("select") or {}
        else:
            cls = _load("dmfr.data.listfile", "ListDataset", "data.kind=list")
            extra["select"] = data.get("select") or {}
        dataset = cls(path, image_size=size, skip_bad=skip_bad, **extra)
        _attach_preprocess(dataset, data, path)
    generative = data.get("generative") or []
    if generative:
        attach = _load("dmfr.data.generative", "attach_generative", "data.generative (generative domains)")
        dataset = attach(dataset, generative)
    return dataset
