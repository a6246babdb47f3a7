"""Shared helpers for the engine tests: a small run config, a saved training checkpoint, images."""
from pathlib import Path

import numpy as np
import torch

from dmfr.checkpoint import save_checkpoint
from dmfr.methods import build_method

FIXTURES = Path(__file__).parent / "fixtures"


def small_config(arch="r_tiny", width=0.125, embedding_size=32, image_size=56, head="cosface"):
    return {"name": "t", "seed": 0, "method": {"name": "real"},
            "model": {"arch": arch, "width": width, "embedding_size": embedding_size, "dropout": 0.0},
            "data": {"image_size": image_size}, "head": {"type": head, "s": 30.0, "m": 0.35}}


def save_training_checkpoint(directory, config=None, num_classes=5, seed=0):
    torch.manual_seed(seed)
    config = config or small_config()
    method = build_method(config, num_classes)
    with torch.no_grad():  # non-trivial BN statistics so eval mode matters
        for m in method.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {"version": 1, "step": 3, "config": config, "num_classes": num_classes,
             "method": method.state_dict(), "optimizer": {}, "scheduler": {}, "scaler": None,
             "rng": {"torch": torch.get_rng_state()}, "sampler": {}}
    return save_checkpoint(directory, 3, state, keep_last=1), method


def arcface_torch_state_dict(arch, seed=0):
    """A backbone.pth-shaped state dict built from the fixture (names/shapes of arcface_torch)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for line in (FIXTURES / f"iresnet_{arch}.txt").read_text().splitlines():
        name, shape = line.split("\t")
        shape = tuple(int(x) for x in shape.split(",")) if shape else ()
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(100, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        else:
            state[name] = torch.randn(shape, generator=g) * 0.05
    return state


def write_random_images(folder, count, size=40, seed=0) -> list[Path]:
    """`count` random RGB PNGs 0.png … in `folder` (created), as real image files for the CLIs."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"{i}.png" for i in range(count)]
    for path in paths:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return paths
