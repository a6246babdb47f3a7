"""Every method under DDP: 2 real torchrun ranks (gloo) equal one process on the joined batch.

Each rank takes one shard of a 12-sample batch, wraps the method in DistributedDataParallel
(find_unused_parameters=False, so a parameter a method leaves out of its graph fails the step)
and runs forward + backward twice. BatchNorm stays in train mode, so each rank normalises with
its own shard's statistics; the honest single-process reference is therefore the mean of the
per-shard losses — exactly the objective whose gradient DDP's all-reduce averages — not the loss
of one forward over all 12 samples. Gradients and losses must agree within 1e-5.

This file is also the worker torchrun launches (`python test_methods_ddp.py OUT_DIR`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_methods import NUM_CLASSES, make_config  # noqa: E402
from ranks import run_ranks  # noqa: E402

from dmfr.methods import Batch, build_method  # noqa: E402

SHARD = 6
STEPS = 2
# (label, method name, method overrides)
CASES = [
    ("real", "real", {}),
    ("mix", "mix", {}),
    ("meta", "meta", {}),
    ("meta-uneven", "meta", {}),  # rank 1's shard holds no meta-test sample
    ("disentangle", "disentangle", {}),
    ("filter", "filter", {}),
    ("filter-shared", "filter", {"filter_shared_classifier": True, "filter_detach_real": False}),
    ("dul", "dul", {}),
    ("url", "url", {"url_decorrelation": True}),
]


def joined_batch(label: str) -> tuple[Batch, list[Batch]]:
    """12 samples, 6 per shard; `pair` holds positions within each shard (docs/protocol.md `plan`)."""
    g = torch.Generator().manual_seed(11)
    images = torch.randn(2 * SHARD, 3, 32, 32, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (2 * SHARD,), generator=g)
    domains = torch.tensor([0, 0, 0, 1, 2, 2, 0, 0, 1, 1, 2, 0])
    pair = torch.tensor([-1, -1, -1, 0, 1, -1, -1, -1, 0, -1, 1, -1])
    if label == "meta-uneven":
        domains = torch.tensor([0, 0, 0, 1, 2, 2, 0, 0, 1, 1, 1, 0])
    shards = [Batch(images[r * SHARD:(r + 1) * SHARD], labels[r * SHARD:(r + 1) * SHARD],
                    domains[r * SHARD:(r + 1) * SHARD], pair[r * SHARD:(r + 1) * SHARD], meta_test=2)
              for r in range(2)]
    return Batch(images, labels, domains, None, meta_test=2), shards


def build(name: str, overrides: dict):
    torch.manual_seed(0)
    config = make_config(name, method=overrides)
    return build_method(config, NUM_CLASSES)


def noise_seed(step: int, rank: int) -> int:
    return 1000 + 10 * step + rank  # DUL's ε: the same draw per shard in both runs


def collect(method: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in method.named_parameters() if p.requires_grad and p.grad is not None}


def worker(out_dir: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    results = {}
    for label, name, overrides in CASES:
        method = build(name, overrides)
        ddp = DDP(method, find_unused_parameters=False)
        shard = joined_batch(label)[1][rank]
        steps = []
        for step in range(STEPS):
            ddp.zero_grad(set_to_none=True)
            torch.manual_seed(noise_seed(step, rank))
            out = ddp(shard)
            out["loss"].backward()
            loss = out["loss"].detach().clone()
            dist.all_reduce(loss)
            steps.append({"loss": loss / 2, "grads": collect(method)})
        results[label] = steps
    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


def reference(label: str, name: str, overrides: dict) -> list[dict]:
    method = build(name, overrides)
    shards = joined_batch(label)[1]
    steps = []
    for step in range(STEPS):
        method.zero_grad(set_to_none=True)
        losses = []
        for rank, shard in enumerate(shards):
            torch.manual_seed(noise_seed(step, rank))
            losses.append(method(shard)["loss"])
        loss = (losses[0] + losses[1]) / 2
        loss.backward()
        steps.append({"loss": loss.detach(), "grads": collect(method)})
    return steps


def test_ddp_step_equals_single_process(tmp_path):
    torch.set_num_threads(1)
    proc = run_ranks(__file__, tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("[rank")]
    assert proc.returncode == 0, "\n".join(errors[-40:]) or proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for label, name, overrides in CASES:
        expected = reference(label, name, overrides)
        for rank in range(2):
            for step in range(STEPS):
                got, want = ranks[rank][label][step], expected[step]
                ctx = f"{label} rank {rank} step {step}"
                torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-5, atol=1e-5, msg=ctx)
                assert got["grads"].keys() == want["grads"].keys(), ctx
                for param, grad in want["grads"].items():
                    torch.testing.assert_close(got["grads"][param], grad, rtol=1e-5, atol=1e-5,
                                               msg=lambda m, p=param, c=ctx: f"{c} {p}: {m}")


if __name__ == "__main__":
    from dmfr.worker import exit_now

    worker(Path(sys.argv[1]))
    exit_now(0)  # as the worker does: no interpreter teardown after a clean finish
