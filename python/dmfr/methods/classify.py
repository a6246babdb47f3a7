"""`real` and `mix`: backbone + one margin head (CosFace/ArcFace), no demodalization.

`real` trains on the real domain only and `mix` on real + synthetic samples: the difference is in
the sampler (docs/sampling.md), not in the loss.
"""
from __future__ import annotations

import torch

from dmfr.heads import build_head

from .base import Batch, Method


class Classify(Method):
    terms = ("L_cls",)

    def __init__(self, config: dict, num_classes: int):
        super().__init__(config, num_classes)
        self.head = build_head(config["head"], self.embedding_size, num_classes)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.head(self.backbone(batch.images), batch.labels)
        return {"loss": loss, "L_cls": loss}
