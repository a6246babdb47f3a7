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
                  m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                  straight_through: bool = False) -> torch.Tensor:
    """Apply the margin to the target column of `cosine` ([B, C]) and scale by s.

    Rows whose label is -1 get no margin (arcface_torch's convention for Partial FC, where a
    rank's shard may not hold a sample's class).
    """
    if kind == "arcface":
        m1, m2, m3 = 1.0, m, 0.0
    elif kind == "cosface":
        m1, m2, m3 = 1.0, 0.0, m
    elif kind != "combined":
        raise ValueError(f"unknown margin head {kind!r}")
    if cosine.dtype in (torch.float16, torch.bfloat16):
        # CUDA autocast: margin and softmax in float32, as arcface_torch (`logits.float()`); in half
        # precision the acos clamp below rounds to ±1 and its gradient becomes infinite.
        cosine = cosine.float()
    cosine = cosine.clamp(-1, 1)  # arcface_torch clamps before the margin
    index = torch.where(labels != -1)[0]
    cols = labels[index]
    target = cosine[index, cols]
    if m1 == 1.0 and m2 == 0.0:  # CosFace (Wang et al. 2018): cos θ − m
        new_target = target - m3
    elif straight_through and m1 == 1.0 and m3 == 0.0:
        # arcface_torch's CombinedMarginLoss ArcFace branch: cos(θ + m) is computed without
        # autograd and written over the target logit, so the forward value has the margin but
        # the gradient is that of the plain cosine (a straight-through estimator); no fallback.
        with torch.no_grad():
            shifted = torch.cos(torch.acos(target) + m2)
        new_target = target + (shifted - target).detach()
    else:
        # Exact margin: cos(m1·θ + m2) − m3. arcface_torch's ArcFace keeps it only where
        # θ + m2 < π (target > cos(π − m2)); beyond, where cos(θ + m) would rise again, it uses
        # cos θ − sin(π − m2)·m2 instead (its `theta` / `sinmm` constants).
        theta = torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7))
        exact = torch.cos(m1 * theta + m2) - m3
        threshold = math.cos(math.pi - m2) if m2 > 0 else -1.0
        fallback = target - math.sin(math.pi - m2) * m2 - m3
        new_target = torch.where(target > threshold, exact, fallback)
    logits = cosine.clone()
    logits[index, cols] = new_target.to(logits.dtype)
    return logits * s


class MarginHead(nn.Module):
    """Class prototypes W ([C, D]) and a margin loss. `forward` returns the mean cross-entropy."""

    def __init__(self, embedding_size: int, num_classes: int, kind: str = "cosface", s: float = 64.0,
                 m: float = 0.4, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                 straight_through: bool = False):
        super().__init__()
        self.kind, self.s, self.m, self.m1, self.m2, self.m3 = kind, s, m, m1, m2, m3
        self.straight_through = straight_through
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, embedding_size)))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if weight is None else weight
        if self.kind == "softmax":
            return F.linear(embeddings, w)
        cosine = F.linear(F.normalize(embeddings), F.normalize(w))
        return margin_logits(cosine, labels, self.kind, self.s, self.m, self.m1, self.m2, self.m3,
                             self.straight_through)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Loss with the prototypes `weight` when given (the meta method's inner step w')."""
        return F.cross_entropy(self.logits(embeddings.float(), labels, weight), labels)


def build_head(cfg: dict, embedding_size: int, num_classes: int) -> nn.Module:
    """From the `head` section of the run config (ts/config/schema.ts).

    With more than one rank and `partial_fc_sample_rate` < 1 this is a Partial FC head
    (dmfr.partial_fc): class centres sharded across ranks, sampled negatives. Otherwise a
    replicated MarginHead, which at sample rate 1 computes the same loss.
    """
    import torch.distributed as dist

    kwargs = dict(kind=cfg.get("type", "cosface"), s=cfg.get("s", 64.0), m=cfg.get("m", 0.4),
                  m1=cfg.get("m1", 1.0), m2=cfg.get("m2", 0.0), m3=cfg.get("m3", 0.0),
                  straight_through=cfg.get("straight_through", False))
    rate = cfg.get("partial_fc_sample_rate", 1.0)
    if rate < 1.0 and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from dmfr.partial_fc import PartialFC

        return PartialFC(embedding_size, num_classes, sample_rate=rate, **kwargs)
    return MarginHead(embedding_size, num_classes, **kwargs)
