"""The dataset interface every training source implements (procedural, .rec, folders, lists).

The controller samples by index (docs/protocol.md `ready`/`plan`), so a dataset exposes its
per-sample tables and loads a batch of indices at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class DomainInfo:
    id: int  # 0 is always the real domain
    name: str
    kind: str  # "real" | "generative"
    generator: str | None = None


class FaceDataset(Protocol):
    num_classes: int
    labels: np.ndarray  # int32 [N]: identity label
    domains: np.ndarray  # int16 [N]: DomainInfo.id of each sample
    pair: np.ndarray  # int32 [N]: for a generative sample with Δc = 0, its source real sample; else -1
    domain_info: list[DomainInfo]

    def __len__(self) -> int: ...

    def load(self, indices: np.ndarray) -> torch.Tensor:
        """float32 [B, 3, H, W], normalised as arcface_torch: (x / 255 - 0.5) / 0.5, RGB."""
        ...
