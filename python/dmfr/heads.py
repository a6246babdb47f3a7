"""Margin heads on L2-normalised embeddings and class prototypes.

Conventions follow arcface_torch's `losses.py`: logits are cosines between the normalised
embedding and normalised prototypes, the margin is applied to the target logit only, then scaled
by s. CosFace (Wang et al. 2018): cos θ − m. ArcFace (Deng et al. 2019): cos(θ + m). Combined
margins (insightface): cos(m1·θ + m2) − m3. `softmax` is a plain linear classifier (the paper
pre-trains with it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def margin_logits(cosine: torch.Tensor, labels: torch.Tensor, kind: str, s: float, m: float,
                  m1: float = 1.0, m2: float = 0.0, m3: float = 0.0) -> torch.Tensor:
    """Apply the margin to the target column of `cosine` ([B, C]) and scale by s."""
    index = torch.arange(cosine.size(0), device=cosine.device)
    target = cosine[index, labels]
    if kind == "cosface":
        new_target = target - m
    elif kind in ("arcface", "combined"):
        if kind == "arcface":
            m1, m2, m3 = 1.0, m, 0.0
        theta = torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7))
        new_target = torch.cos(m1 * theta + m2) - m3
        # Where θ + m2 would pass π the margin stops being monotonic; fall back to the
        # "easy margin"-free insightface variant: cos θ − m2·sin(m2) (arcface_torch `th`/`mm`).
        threshold = math.cos(math.pi - m2) if m2 > 0 else -1.0
        fallback = target - math.sin(math.pi - m2) * m2 - m3
        new_target = torch.where(target > threshold, new_target, fallback)
    else:
        raise ValueError(f"unknown margin head {kind!r}")
    logits = cosine.clone()
    logits[index, labels] = new_target.to(logits.dtype)
    return logits * s


class MarginHead(nn.Module):
    """Class prototypes W ([C, D]) and a margin loss. `forward` returns the mean cross-entropy."""

    def __init__(self, embedding_size: int, num_classes: int, kind: str = "cosface", s: float = 64.0,
                 m: float = 0.4, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0):
        super().__init__()
        self.kind, self.s, self.m, self.m1, self.m2, self.m3 = kind, s, m, m1, m2, m3
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, embedding_size)))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if weight is None else weight
        if self.kind == "softmax":
            return F.linear(embeddings, w)
        cosine = F.linear(F.normalize(embeddings), F.normalize(w))
        return margin_logits(cosine, labels, self.kind, self.s, self.m, self.m1, self.m2, self.m3)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Loss with the prototypes `weight` when given (the meta method's inner step w')."""
        return F.cross_entropy(self.logits(embeddings.float(), labels, weight), labels)


def build_head(cfg: dict, embedding_size: int, num_classes: int) -> MarginHead:
    """From the `head` section of the run config (ts/config/schema.ts)."""
    return MarginHead(embedding_size, num_classes, kind=cfg.get("type", "cosface"), s=cfg.get("s", 64.0),
                      m=cfg.get("m", 0.4), m1=cfg.get("m1", 1.0), m2=cfg.get("m2", 0.0), m3=cfg.get("m3", 0.0))
