"""Partial FC (An et al., "Killing Two Birds with One Stone", CVPR 2022; arcface_torch `partial_fc_v2.py`).

Class centres are sharded across ranks: rank r holds a contiguous block of classes. Every rank
gathers all ranks' embeddings (with gradient), computes cosines against its own block, keeping
the centres of the classes present in the global batch and a random subset of the others
(`sample_rate`), and the softmax cross-entropy is computed across ranks (max and denominator
all-reduced). At sample rate 1 this is model parallelism and equals the full head.

Gradient convention (as arcface_torch): the gathered embeddings' gradient returned to each rank is
multiplied by the world size, because DDP averages the backbone gradients over ranks while every
rank already computes the loss of the global batch. The centres are not DDP parameters: the trainer
must exclude them (`sharded_parameter_names`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dmfr.heads import margin_logits


def shard_range(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """(first class, count) of `rank`'s block: the first `num_classes % world_size` ranks hold one more."""
    base, extra = divmod(num_classes, world_size)
    return base * rank + min(rank, extra), base + int(rank < extra)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice (× world size)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        ctx.batch = local.size(0)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)  # gloo has no reduce_scatter; all_reduce then slice is portable
        rank, world = dist.get_rank(), dist.get_world_size()
        return grad[rank * ctx.batch:(rank + 1) * ctx.batch] * world


class _DistSoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over the global batch when each rank holds some columns of the logits.

    `labels` are local column indices, or -1 where the class lives on another rank.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        peak = logits.max(dim=1, keepdim=True).values
        dist.all_reduce(peak, dist.ReduceOp.MAX)
        prob = (logits - peak).exp_()
        denom = prob.sum(dim=1, keepdim=True)
        dist.all_reduce(denom)
        prob.div_(denom)
        owned = torch.where(labels != -1)[0]
        target = torch.zeros(logits.size(0), device=logits.device, dtype=prob.dtype)
        target[owned] = prob[owned, labels[owned]]
        dist.all_reduce(target)
        ctx.save_for_backward(prob, labels, owned)
        return -target.clamp_min(1e-30).log().mean()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        prob, labels, owned = ctx.saved_tensors
        grad = prob.clone()
        grad[owned, labels[owned]] -= 1.0
        return grad * (grad_loss / prob.size(0)), None


class PartialFC(nn.Module):
    """A margin head whose class centres are sharded over the default process group.

    `forward(local_embeddings, local_labels)` returns the global-batch mean loss on every rank.
    Every rank must use the same local batch size.
    """

    def __init__(self, embedding_size: int, num_classes: int, sample_rate: float = 1.0, kind: str = "cosface",
                 s: float = 64.0, m: float = 0.4, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                 straight_through: bool = False):
        super().__init__()
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("PartialFC needs an initialised torch.distributed process group")
        if kind == "softmax":
            raise ValueError("PartialFC needs a margin head (cosface, arcface, combined), not softmax")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"partial_fc_sample_rate must be in (0, 1], got {sample_rate}")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.num_classes, self.embedding_size, self.sample_rate = num_classes, embedding_size, sample_rate
        self.class_start, self.num_local = shard_range(num_classes, self.world_size, self.rank)
        self.num_sample = int(sample_rate * self.num_local)
        self.margin = dict(kind=kind, s=s, m=m, m1=m1, m2=m2, m3=m3, straight_through=straight_through)
        # Same init as MarginHead / arcface_torch: N(0, 0.01).
        self.weight = nn.Parameter(torch.normal(0, 0.01, (self.num_local, embedding_size)))

    def _sample(self, local_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep every positive centre plus random negatives up to num_sample; remap labels."""
        owned = local_labels != -1
        positive = torch.unique(local_labels[owned], sorted=True)
        if self.num_sample >= positive.numel():
            score = torch.rand(self.num_local, device=self.weight.device)
            score[positive] = 2.0  # positives always win the top-k
            index = torch.topk(score, k=self.num_sample).indices.sort().values
        else:
            index = positive
        labels = local_labels.clone()
        labels[owned] = torch.searchsorted(index, local_labels[owned])
        return index, labels

    def forward(self, local_embeddings: torch.Tensor, local_labels: torch.Tensor) -> torch.Tensor:
        embeddings = _GatherWithGrad.apply(local_embeddings.float())
        local_labels = local_labels.long().contiguous()  # all_gather needs matching dtypes
        parts = [torch.empty_like(local_labels) for _ in range(self.world_size)]
        dist.all_gather(parts, local_labels)
        labels = torch.cat(parts)
        mine = (labels >= self.class_start) & (labels < self.class_start + self.num_local)
        local = torch.where(mine, labels - self.class_start, torch.full_like(labels, -1))
        weight = self.weight
        if self.sample_rate < 1.0:
            index, local = self._sample(local)
            self.weight_index = index  # the local centres used this step (arcface_torch's name)
            weight = self.weight[index]
        cosine = F.linear(F.normalize(embeddings), F.normalize(weight))
        logits = margin_logits(cosine, local, **self.margin)
        return _DistSoftmaxCrossEntropy.apply(logits, local)

    @torch.no_grad()
    def gather_weight(self) -> torch.Tensor:
        """All centres [num_classes, D] on every rank (collective: every rank must call it)."""
        counts = [shard_range(self.num_classes, self.world_size, r)[1] for r in range(self.world_size)]
        parts = [torch.empty(c, self.embedding_size, dtype=self.weight.dtype, device=self.weight.device)
                 for c in counts]
        if len(set(counts)) == 1:
            dist.all_gather(parts, self.weight.detach().contiguous())
        else:  # uneven shards: pad to the largest, gather, trim
            pad = max(counts)
            padded = torch.zeros(pad, self.embedding_size, dtype=self.weight.dtype, device=self.weight.device)
            padded[:self.num_local] = self.weight
            gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
            dist.all_gather(gathered, padded)
            parts = [g[:c] for g, c in zip(gathered, counts)]
        return torch.cat(parts)

    @torch.no_grad()
    def load_full_weight(self, full: torch.Tensor) -> None:
        """Take this rank's block from all centres [num_classes, D] (e.g. from a checkpoint
        written with another rank count)."""
        if tuple(full.shape) != (self.num_classes, self.embedding_size):
            raise ValueError(f"expected centres of shape {(self.num_classes, self.embedding_size)}, got {tuple(full.shape)}")
        self.weight.copy_(full[self.class_start:self.class_start + self.num_local])


def sharded_parameter_names(module: nn.Module) -> list[str]:
    """Names of parameters DDP must not synchronise (each rank holds different centres), for
    `DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)`."""
    return [f"{prefix}.weight" if prefix else "weight" for prefix, sub in module.named_modules()
            if isinstance(sub, PartialFC)]


# Each rank's centres are its own, so anything computed from "all gradients" must combine the
# ranks' shards, or ranks decide differently and the replicated parameters drift apart.
# (arcface_torch clips the backbone alone and lets each rank's GradScaler judge its own shard.)

def _collective_device(tensor: torch.Tensor) -> torch.device:
    return tensor.device if dist.get_backend() == "nccl" else torch.device("cpu")


@torch.no_grad()
def clip_grad_norm_sharded_(replicated: list[nn.Parameter], sharded: list[nn.Parameter],
                            max_norm: float) -> torch.Tensor:
    """`clip_grad_norm_` over the whole model: the replicated gradients (equal on every rank after
    DDP's all-reduce) plus every rank's shard of centres (squared norms summed over ranks). Every
    rank gets the same norm and scales by the same factor. Returns the total norm."""
    rep = [p.grad for p in replicated if p.grad is not None]
    own = [p.grad for p in sharded if p.grad is not None]
    anchor = (rep or own)[0]

    def squared(grads):
        if not grads:
            return torch.zeros((), device=anchor.device)
        return torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]).pow(2).sum()

    shard_sq = squared(own).to(_collective_device(anchor))
    dist.all_reduce(shard_sq)
    total = (squared(rep) + shard_sq.to(anchor.device)).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in rep + own:
        g.mul_(scale.to(g.dtype))
    return total


@torch.no_grad()
def share_overflow_(sharded: list[nn.Parameter]) -> None:
    """Before GradScaler.unscale_: when any rank's centre gradients hold inf/NaN, put an inf in
    this rank's too, so every rank's scaler skips the step (and backs off) together. Needs no
    read-back to the host: the flag stays a tensor."""
    own = [p.grad for p in sharded if p.grad is not None]
    anchor = own[0] if own else sharded[0]
    bad = torch.zeros(1, device=anchor.device)
    for g in own:
        bad = torch.maximum(bad, (~torch.isfinite(g)).any().float().reshape(1))
    flag = bad.to(_collective_device(anchor))
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if own:
        own[0].masked_fill_(flag.to(own[0].device).bool().reshape(()), float("inf"))
