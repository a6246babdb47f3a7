"""Run under torchrun by test_ddp.py: 2 ranks train 6 steps uninterrupted (writing their
parameters) and, separately, 3 steps with a checkpoint at the end. test_ddp.py resumes that
checkpoint in one process for the last 3 steps and compares."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from tiny_data import TinyFaceDataset, tiny_config  # noqa: E402

from dmfr.trainer import Trainer, local_plans  # noqa: E402
from dmfr.worker import exit_now  # noqa: E402

CONFIG = dict(train={"steps": 6, "batch_size": 16, "nproc": 2},
              optim={"schedule": "step", "milestones": [4], "warmup_steps": 2})


def main() -> None:
    out = sys.argv[1]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ds = TinyFaceDataset()
    config = tiny_config(**CONFIG)
    whole = Trainer(config, ds, "cpu", rank, world)
    whole.run(local_plans(config, ds.labels, rank, world), final_checkpoint=False)
    if rank == 0:
        torch.save({k: v.detach().clone() for k, v in whole.method.named_parameters()}, os.path.join(out, "whole.pt"))
    first = tiny_config(**{**CONFIG, "train": {**CONFIG["train"], "checkpoint_every": 3}})
    part = Trainer(first, ds, "cpu", rank, world, checkpoint_dir=os.path.join(out, "ckpt"))
    part.run(local_plans(first, ds.labels, rank, world), stop_at=lambda: 2, final_checkpoint=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    exit_now(0)
