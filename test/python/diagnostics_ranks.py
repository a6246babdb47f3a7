"""Run under torchrun by test_diagnostics.py: two `filter` steps on 2 ranks, once with the logged
step's diagnostics (per-term gradients by extra autograd passes before DDP's backward) and once
without; saves each rank's parameters and diagnostics to OUT_DIR/<mode>-rank<r>.pt."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from diagnostics_common import filter_trainer, shard_plan  # noqa: E402


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    for mode in ("plain", "diagnostics"):
        trainer = filter_trainer(rank, world, clip=5)
        terms = [trainer.train_step(step, *shard_plan(step, rank, world), diagnostics=mode == "diagnostics")
                 for step in range(2)]
        torch.save({"params": {k: v.detach().clone() for k, v in trainer.method.named_parameters()},
                    "terms": terms}, os.path.join(out, f"{mode}-rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    from dmfr.worker import exit_now

    main()
    exit_now(0)
