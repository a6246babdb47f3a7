"""Run by test_partial_fc.py under torchrun (gloo, CPU): Partial FC against the full head.

Every rank builds the same global batch and centres from one seed, runs PartialFC on its slice,
and compares loss and gradients with a single-process MarginHead on the whole batch.
"""
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dmfr.heads import MarginHead, build_head
from dmfr.partial_fc import PartialFC, shard_range


def check(num_classes: int, kind: str, rate: float, local_batch: int = 6, dim: int = 16) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(1234)
    centres = torch.randn(num_classes, dim, generator=g)
    embeddings = torch.randn(world * local_batch, dim, generator=g)
    labels = torch.randint(0, num_classes, (world * local_batch,), generator=g)
    margin = dict(kind=kind, s=30.0, m=0.35 if kind == "cosface" else 0.5)
    mine = slice(rank * local_batch, (rank + 1) * local_batch)

    pfc = PartialFC(dim, num_classes, sample_rate=rate, **margin)
    pfc.load_full_weight(centres)
    assert torch.equal(pfc.gather_weight(), centres)
    local_emb = embeddings[mine].clone().requires_grad_(True)
    loss = pfc(local_emb, labels[mine])
    loss.backward()

    start, count = shard_range(num_classes, world, rank)
    if rate < 1.0:  # the reference head uses exactly the centres every rank sampled
        idx = pfc.weight_index + start
        sizes = [torch.zeros(1, dtype=torch.long) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([idx.numel()]))
        parts = [torch.zeros(int(n), dtype=torch.long) for n in sizes]
        dist.all_gather(parts, idx)
        kept = torch.cat(parts)
        assert set(labels.tolist()) <= set(kept.tolist()), "a positive centre was dropped"
        assert pfc.weight_index.numel() == int(rate * count)
    else:
        kept = torch.arange(num_classes)
    ref = MarginHead(dim, kept.numel(), **margin)
    with torch.no_grad():
        ref.weight.copy_(centres[kept])
    ref_labels = torch.searchsorted(kept, labels)
    full_emb = embeddings.clone().requires_grad_(True)
    ref_loss = ref(full_emb, ref_labels)
    ref_loss.backward()

    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    # DDP will average the backbone gradient over ranks: PartialFC returns world × ∂L/∂e.
    torch.testing.assert_close(local_emb.grad / world, full_emb.grad[mine], rtol=1e-4, atol=1e-7)
    ref_grad = torch.zeros(num_classes, dim)
    ref_grad[kept] = ref.weight.grad
    torch.testing.assert_close(pfc.weight.grad, ref_grad[start:start + count], rtol=1e-4, atol=1e-7)


def main() -> int:
    dist.init_process_group("gloo")
    torch.manual_seed(dist.get_rank())  # negative sampling differs per rank, as in training
    for num_classes, kind, rate in [(10, "cosface", 1.0), (11, "arcface", 1.0), (40, "cosface", 0.5),
                                    (40, "arcface", 0.3)]:
        check(num_classes, kind, rate)
    # the config path: sharded only when sampling with more than one rank
    assert isinstance(build_head({"type": "cosface", "partial_fc_sample_rate": 0.5}, 16, 40), PartialFC)
    assert isinstance(build_head({"type": "cosface", "partial_fc_sample_rate": 1.0}, 16, 40), MarginHead)
    dist.barrier()
    if dist.get_rank() == 0:
        print("partial fc ok")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    from dmfr.worker import exit_now

    exit_now(main())  # as the worker does: no interpreter teardown after a clean finish
