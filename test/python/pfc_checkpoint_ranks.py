"""Run by test_partial_fc.py under torchrun: a Trainer with a sharded Partial FC head writes a
checkpoint holding every class centre, and every rank resumes its own block from it."""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from tiny_data import TinyFaceDataset, tiny_config  # noqa: E402

from dmfr.checkpoint import load_checkpoint  # noqa: E402
from dmfr.trainer import Trainer, local_plans  # noqa: E402
from dmfr.worker import exit_now  # noqa: E402

out = Path(sys.argv[1])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
config = tiny_config(head={"partial_fc_sample_rate": 0.5}, train={"steps": 4, "batch_size": 8, "nproc": world})
dataset = TinyFaceDataset(num_classes=10, per_class=4)
trainer = Trainer(config, dataset, "cpu", rank, world, checkpoint_dir=out)
trainer.run(local_plans(config, dataset.labels, rank, world), 0, final_checkpoint=True)
(key, head), = trainer._sharded_heads()
np.save(out / f"shard{rank}.npy", head.weight.detach().numpy())
dist.barrier()
saved = load_checkpoint(sorted(out.glob("step-*.pt"))[-1])
full = saved["method"][key]
assert tuple(full.shape) == (10, head.embedding_size), full.shape
assert torch.equal(full[head.class_start:head.class_start + head.num_local], head.weight.detach())

resumed = Trainer(config, dataset, "cpu", rank, world)
with torch.no_grad():
    resumed._sharded_heads()[0][1].weight.zero_()
assert resumed.load_state_dict(saved) == 4
assert torch.equal(resumed._sharded_heads()[0][1].weight.detach(), head.weight.detach())
print(f"rank {rank} pfc checkpoint ok")
dist.destroy_process_group()
exit_now(0)  # as the worker does: no interpreter teardown after a clean finish
