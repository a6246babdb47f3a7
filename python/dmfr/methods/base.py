"""The interface every training method implements.

A method owns the backbone and its heads, so the trainer wraps one module in DDP and calls
`method(batch)` for the loss terms. Terms are logged separately (paper Fig. 6).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dmfr.models import get_model


@dataclass
class Batch:
    images: torch.Tensor  # float32 [B, 3, H, W]
    labels: torch.Tensor  # int64 [B]
    domains: torch.Tensor  # int64 [B]: 0 real, 1..N generative (DatasetInfo ids)
    pair: torch.Tensor | None = None  # int64 [B]: position of the Δc = 0 partner in this batch, or -1
    meta_test: int | None = None  # generative domain held out as meta-test at this step


class Method(nn.Module):
    """Subclasses set `self.backbone` and implement `forward`."""

    #: names of the loss terms `forward` returns besides "loss" (unweighted, attached to the graph)
    terms: tuple[str, ...] = ("L_cls",)

    def __init__(self, config: dict, num_classes: int):
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        model = config["model"]
        self.embedding_size = model["embedding_size"]
        self.backbone = get_model(model["arch"], num_features=model["embedding_size"], dropout=model["dropout"],
                                  width=model["width"], input_size=config["data"]["image_size"])

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return {"loss": total objective, <term>: …}. Loss terms (`terms`) stay attached to the
        graph: on logged steps the trainer takes each one's gradient norm (docs/methods.md,
        "Diagnostics"). Other keys (e.g. meta's `meta_step_ratio`) are detached diagnostics."""
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The identity feature used for evaluation (before normalisation)."""
        return self.backbone(images)
