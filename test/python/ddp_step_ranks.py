"""Run under torchrun by test_ddp.py: two optimizer steps of the real Trainer on this rank's shard.

argv: OUT_DIR. For each mode ("frozen_bn", "ghost_bn", "ghost_bn_accum": grad_accum 2, so DDP's
no_sync path runs) the rank trains a fresh Trainer for two steps on shard `rank` of the fixed global batches of test_ddp.GLOBAL_BATCHES and saves its
parameters to OUT_DIR/<mode>-rank<r>.pt.
"""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from ddp_common import GLOBAL_BATCHES, make_trainer  # noqa: E402


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    for mode, accum in (("frozen_bn", 1), ("ghost_bn", 1), ("ghost_bn_accum", 2)):
        trainer = make_trainer(mode, rank, world, grad_accum=accum)
        for step, batch in enumerate(GLOBAL_BATCHES):
            shard = len(batch) // world
            idx = batch[rank * shard:(rank + 1) * shard]
            trainer.train_step(step, idx, torch.zeros(len(idx), dtype=torch.int16).numpy())
        torch.save({k: v.detach().clone() for k, v in trainer.method.named_parameters()},
                   os.path.join(out, f"{mode}-rank{rank}.pt"))
    # Partial FC (head.partial_fc_sample_rate < 1): each rank keeps its own block of class centres.
    trainer = make_trainer("partial_fc", rank, world)
    before = trainer.method.head.weight.detach().clone()
    batch = GLOBAL_BATCHES[0]
    shard = len(batch) // world
    trainer.train_step(0, batch[rank * shard:(rank + 1) * shard], torch.zeros(shard, dtype=torch.int16).numpy())
    torch.save({"before": before, "after": trainer.method.head.weight.detach().clone(),
                "backbone": {k: v.detach().clone() for k, v in trainer.method.backbone.named_parameters()}},
               os.path.join(out, f"partial_fc-rank{rank}.pt"))
    # Clipping by the whole model's norm (the centres' share summed over ranks): one factor for all.
    trainer = make_trainer("partial_fc", rank, world, clip=0.05)
    trainer.train_step(0, batch[rank * shard:(rank + 1) * shard], torch.zeros(shard, dtype=torch.int16).numpy())
    torch.save({k: v.detach().clone() for k, v in trainer.method.backbone.named_parameters()},
               os.path.join(out, f"partial_fc_clip-rank{rank}.pt"))
    # fp16: an overflow in rank 0's own centres alone must make both ranks skip the step.
    trainer = make_trainer("partial_fc", rank, world, amp="fp16")
    trainer.scaler.load_state_dict({**trainer.scaler.state_dict(), "scale": 1.0})  # no overflow of its own
    if rank == 0:
        trainer.method.head.weight.register_hook(lambda g: g * float("inf"))
    before = {k: v.detach().clone() for k, v in trainer.method.backbone.named_parameters()}
    trainer.train_step(0, batch[rank * shard:(rank + 1) * shard], torch.zeros(shard, dtype=torch.int16).numpy())
    torch.save({"before": before, "scale": trainer.scaler.get_scale(),
                "after": {k: v.detach().clone() for k, v in trainer.method.backbone.named_parameters()}},
               os.path.join(out, f"partial_fc_fp16-rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    from dmfr.worker import exit_now

    main()
    exit_now(0)  # as the worker does: no interpreter teardown after a clean finish
