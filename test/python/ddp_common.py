"""The set-up shared by test_ddp.py and the ranks it launches (ddp_step_ranks.py)."""
import numpy as np
from torch import nn

from dmfr.trainer import Trainer
from tiny_data import TinyFaceDataset, tiny_config

# Two steps of a global batch of 16 (8 per rank on 2 ranks), drawn from 4 classes × 16 images.
GLOBAL_BATCHES = [np.random.default_rng(s).permutation(64)[:16].astype(np.int32) for s in (1, 2)]


def make_trainer(mode: str, rank: int = 0, world_size: int = 1, grad_accum: int = 1, clip: float = 0,
                 amp: str = "none") -> Trainer:
    """mode "frozen_bn": every BatchNorm normalises with its (initial) running statistics, so no
    sample's output depends on the others and a 2-rank step must equal the step on the whole batch.
    mode "ghost_bn": BatchNorm in training mode; without SyncBatchNorm (which needs CUDA in this
    torch) each rank normalises with its own shard's statistics, so the single-process equivalent
    is the whole batch in micro-batches of one shard each (grad_accum = world size)."""
    config = tiny_config(optim={"lr": 0.1, "clip_grad_norm": clip, "weight_decay": 5e-4},
                         train={"grad_accum": grad_accum, "batch_size": 16, "amp": amp},
                         head={"partial_fc_sample_rate": 0.5 if mode == "partial_fc" else 1})
    trainer = Trainer(config, TinyFaceDataset(), "cpu", rank, world_size)
    if mode == "frozen_bn":
        for m in trainer.method.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return trainer
