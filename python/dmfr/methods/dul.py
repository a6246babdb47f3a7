"""`dul`: data uncertainty learning, classification variant (Chang et al. 2020, "Data Uncertainty
Learning in Face Recognition", DUL_cls) — one of the paper's comparison rows (Table 2).

The backbone's last map feeds two heads: μ (the backbone's own embedding head) and log σ² (a
parallel BN2d → fc → BN1d head, the same shape as μ's). Training samples s = μ + σ ⊙ ε, ε ~ N(0, I)
(the reparameterisation trick) and classifies s with the margin head; a KL term keeps the
distributions near N(0, I):

    KL = ½ Σ_d (μ² + σ² − log σ² − 1)    (summed over dimensions, averaged over the batch)
    L  = L_cls(s) + kl_weight · KL        (DUL: kl_weight = 0.01)

Evaluation uses μ.
"""
from __future__ import annotations

import torch
from torch import nn

from dmfr.heads import build_head

from .base import Batch, Method


class LogVarianceHead(nn.Module):
    def __init__(self, channels: int, map_area: int, embedding_size: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=1e-05)
        self.fc = nn.Linear(channels * map_area, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-05)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.bn(m), 1)
        with torch.autocast(device_type=x.device.type, enabled=False):  # as IResNet.head
            return self.features(self.fc(x.float()))


class DUL(Method):
    terms = ("L_cls", "KL")

    def __init__(self, config: dict, num_classes: int):
        super().__init__(config, num_classes)
        self.kl_weight = float(config["method"]["kl_weight"])
        bb = self.backbone
        self.log_variance = LogVarianceHead(bb.bn2.num_features, bb.fc_scale, self.embedding_size)
        self.head = build_head(config["head"], self.embedding_size, num_classes)

    def _map(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone.stem(images)
        for stage in self.backbone.stages:
            x = stage(x)
        return x

    def distribution(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²), each [B, D]."""
        m = self._map(images)
        return self.backbone.head(m), self.log_variance(m)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        mu, log_var = self.distribution(batch.images)
        sample = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        l_cls = self.head(sample, batch.labels)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1).sum(dim=1).mean()
        loss = l_cls + self.kl_weight * kl
        return {"loss": loss, "L_cls": l_cls, "KL": kl}

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)  # μ
