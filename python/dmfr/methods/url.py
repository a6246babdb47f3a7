"""`url`: universal representation learning (Shi et al. 2020, "Towards Universal Representation
Learning for Deep Face Recognition") — one of the paper's comparison rows (Table 2, "Shi et al.").

Confidence-aware identification loss on sub-embeddings (Shi et al., Sec. 3): the embedding f and
each prototype w_j are split into K = `method.url_groups` sub-embeddings, each L2-normalised; a
confidence head predicts per-sample, per-group confidences s_i^(k) > 0 that act as the softmax scale
of their group:

    a_ij = (1/K) Σ_k s_i^(k) · (cos θ_ij^(k) − m·[j = y_i])     L_cls = CE(a_i, y_i)

so a hard (e.g. synthetic) sample can lower its confidence in the groups it cannot fit.

Simplifications (docs/methods.md):
- the margin m (`head.m`) is CosFace's, applied to each group's cosine inside the scale;
- the confidences are bounded, s = 2·s0·sigmoid(·) with s0 = `head.s` at the start, instead of
  Shi et al.'s regulariser against confidences growing without bound;
- variation decorrelation (`method.url_decorrelation`) uses one variation, synthetic vs real (the
  sample's domain), with a fixed partition: the first ⌊K/2⌋ groups must predict it (a variation
  classifier) and the rest must not (an adversary, trained on detached features, whose frozen copy
  the embedding is trained to confuse towards 0.5). L_dec is the sum of the three binary CEs.
- evaluation uses the whole embedding f (no confidence-weighted matching).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmfr.errors import ConfigError

from .base import Batch, Method


class URL(Method):
    def __init__(self, config: dict, num_classes: int):
        super().__init__(config, num_classes)
        cfg, head = config["method"], config["head"]
        self.groups = int(cfg["url_groups"])
        if self.groups < 1 or self.embedding_size % self.groups:
            raise ConfigError(f"method.url_groups: {self.groups} must divide model.embedding_size ({self.embedding_size})")
        self.decorrelation = bool(cfg["url_decorrelation"])
        if self.decorrelation and self.groups < 2:
            raise ConfigError("method.url_decorrelation needs method.url_groups >= 2")
        self.terms = ("L_cls", "L_dec") if self.decorrelation else ("L_cls",)
        self.margin = float(head["m"])
        self.s0 = float(head["s"])
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, self.embedding_size)))
        self.confidence = nn.Linear(self.embedding_size, self.groups)
        nn.init.zeros_(self.confidence.weight)
        nn.init.zeros_(self.confidence.bias)  # every s^(k) starts at s0
        if self.decorrelation:
            width = self.embedding_size // self.groups
            self.split = self.groups // 2
            self.variation = nn.Linear(self.split * width, 1)
            self.adversary = nn.Linear((self.groups - self.split) * width, 1)

    def _sub(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.view(x.size(0), self.groups, -1), dim=2)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        f = self.backbone(batch.images).float()
        labels = batch.labels
        sub = self._sub(f)  # [B, K, d/K]
        cosine = torch.einsum("bkd,ckd->bkc", sub, self._sub(self.weight))  # [B, K, C]
        margin = F.one_hot(labels, cosine.size(2)).to(cosine.dtype).unsqueeze(1) * self.margin
        conf = 2.0 * self.s0 * torch.sigmoid(self.confidence(f))  # [B, K]
        logits = (conf.unsqueeze(2) * (cosine - margin)).mean(dim=1)
        l_cls = F.cross_entropy(logits, labels)
        out = {"L_cls": l_cls}
        loss = l_cls
        if self.decorrelation:
            l_dec = self._decorrelation(sub.flatten(1), (batch.domains != 0).to(f.dtype))
            loss = loss + l_dec
            out["L_dec"] = l_dec
        out["loss"] = loss
        return out

    def _decorrelation(self, sub: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
        cut = self.split * (self.embedding_size // self.groups)
        part, rest = sub[:, :cut], sub[:, cut:]
        bce = F.binary_cross_entropy_with_logits
        l_var = bce(self.variation(part).squeeze(1), synthetic)
        l_adv_fit = bce(self.adversary(rest.detach()).squeeze(1), synthetic)
        confused = F.linear(rest, self.adversary.weight.detach(), self.adversary.bias.detach()).squeeze(1)
        l_confuse = bce(confused, torch.full_like(synthetic, 0.5))
        return l_var + l_adv_fit + l_confuse
