"""`filter`: filter-based DMFR (paper, "Filter-based DMFR").

A filter F maps the embedding of a synthetic sample to a modality-free one. On Δc = 0 pairs (a
synthetic sample and its own source real image, both in the shard; `batch.pair`), where the only
difference is the modality ε:

    L_flt = ‖F(H(x_syn)) − H(x_real)‖₂    (per pair, averaged over the shard's pairs)
    L     = L_cls + λ_flt L_flt

Every synthetic feature goes through F before its classifier. The paper uses "different
classifiers for real data and synthetic data" (`method.filter_shared_classifier` = false); L_cls is
the mean cross-entropy over the whole shard, each sample scored by its domain's classifier.

F is a residual MLP on the embedding, F(z) = z + W2·PReLU(W1·z + b1) + b2, with W2 and b2 zero at
start: F begins as the identity, and learns only the correction that removes the modality, which
is the paper's goal ("filter out the modal information … without losing other information"). It
has no BatchNorm, so its output for a sample does not depend on the rest of the shard.

`filter_detach_real` (default true) stops L_flt's gradient through the target H(x_real): L_flt
should move synthetic features to the real ones, not pull real features towards filtered synthetic
ones. `filter_trains_backbone` = false detaches both sides, so L_flt trains F only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmfr.errors import ConfigError, DataError
from dmfr.heads import MarginHead, build_head

from .base import Batch, Method


class EmbeddingFilter(nn.Module):
    def __init__(self, embedding_size: int):
        super().__init__()
        self.fc1 = nn.Linear(embedding_size, embedding_size)
        self.prelu = nn.PReLU(embedding_size)
        self.fc2 = nn.Linear(embedding_size, embedding_size)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.fc2(self.prelu(self.fc1(z)))


def delta0_pairs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(synthetic positions, real positions) of the shard's Δc = 0 pairs, each pair once.

    `batch.pair[i]` is the position of sample i's partner or −1; either side may point to the other.
    """
    n = batch.labels.numel()
    if batch.pair is None:
        empty = torch.zeros(0, dtype=torch.long, device=batch.labels.device)
        return empty, empty
    pair = batch.pair.long()
    if pair.shape != (n,):
        raise DataError(f"filter: batch.pair has shape {tuple(pair.shape)}, expected ({n},)")
    bad = (pair < -1) | (pair >= n)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise DataError(f"filter: batch.pair[{i}] = {int(pair[i])} is outside the shard (size {n})")
    src = (pair >= 0).nonzero().flatten()
    dst = pair[src]
    real = batch.domains == 0
    # A valid pair has exactly one real member.
    bad = real[src] == real[dst]
    if bool(bad.any()):
        i = int(src[bad][0])
        raise DataError(f"filter: batch.pair[{i}] = {int(pair[i])} does not join a real and a synthetic sample "
                         f"(domains {int(batch.domains[i])} and {int(batch.domains[pair[i]])})")
    syn_pos = torch.where(real[src], dst, src)
    real_pos = torch.where(real[src], src, dst)
    key = torch.unique(syn_pos * n + real_pos)
    return key // n, key % n


def _ce_sum(head: MarginHead, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # Summed, so an empty subset adds 0 while keeping the head in the graph (DDP sees it used).
    return F.cross_entropy(head.logits(features.float(), labels), labels, reduction="sum")


class FilterDMFR(Method):
    terms = ("L_cls", "L_flt")

    def __init__(self, config: dict, num_classes: int):
        super().__init__(config, num_classes)
        cfg = config["method"]
        self.lambda_flt = float(cfg["lambda_flt"])  # paper: 1.0
        self.detach_real = bool(cfg["filter_detach_real"])
        self.trains_backbone = bool(cfg["filter_trains_backbone"])
        self.filter = EmbeddingFilter(self.embedding_size)
        self.head = build_head(config["head"], self.embedding_size, num_classes)  # real samples
        # paper: "we use different classifiers for real data and synthetic data"
        self.head_syn = None if cfg["filter_shared_classifier"] else build_head(config["head"], self.embedding_size, num_classes)
        if not isinstance(self.head, MarginHead):  # per-subset logits need a replicated head
            raise ConfigError("method filter needs a replicated head: set head.partial_fc_sample_rate to 1")

    def classification_loss(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean CE over the shard: real samples by `head`, synthetic ones by `head_syn` after F."""
        real = batch.domains == 0
        head_syn = self.head if self.head_syn is None else self.head_syn
        return (_ce_sum(self.head, z[real], batch.labels[real])
                + _ce_sum(head_syn, self.filter(z[~real]), batch.labels[~real])) / z.size(0)

    def filter_loss(self, z: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean ‖F(H(x_syn)) − H(x_real)‖₂ over the shard's Δc = 0 pairs (0 when it has none)."""
        syn_pos, real_pos = delta0_pairs(batch)
        source, target = z[syn_pos], z[real_pos]
        if not self.trains_backbone:
            source, target = source.detach(), target.detach()
        elif self.detach_real:
            target = target.detach()
        distances = torch.linalg.vector_norm(self.filter(source).float() - target.float(), dim=1)
        return distances.sum() / max(distances.numel(), 1)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        z = self.backbone(batch.images)
        l_cls = self.classification_loss(z, batch)
        l_flt = self.filter_loss(z, batch)
        loss = l_cls + self.lambda_flt * l_flt
        return {"loss": loss, "L_cls": l_cls, "L_flt": l_flt}
