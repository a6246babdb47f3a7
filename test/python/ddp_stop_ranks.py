"""Run under torchrun by test_ddp.py: rank 1 is told to stop after step 5, rank 0 is not told at all
(its stop is still in flight) and holds plans for 12 steps. Both must end after step 5, with no
rank left waiting in an all-reduce. Writes OUT_DIR/stop-rank<r>.json."""
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from dmfr.trainer import Trainer, local_plans  # noqa: E402
from dmfr.worker import exit_now  # noqa: E402
from tiny_data import TinyFaceDataset, tiny_config  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    config = tiny_config(train={"steps": 12, "batch_size": 16, "log_every": 4}, sampler={"chunk_steps": 3})
    ds = TinyFaceDataset()
    trainer = Trainer(config, ds, "cpu", rank, world)
    result = trainer.run(local_plans(config, ds.labels, rank, world), stop_at=(lambda: 5) if rank == 1 else None)
    with open(os.path.join(sys.argv[1], f"stop-rank{rank}.json"), "w") as f:
        json.dump({"last_step": result.last_step, "reason": result.reason, "losses": result.losses}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    exit_now(0)  # as the worker does: no interpreter teardown after a clean finish
