"""The set-up shared by test_diagnostics.py and the ranks it launches (diagnostics_ranks.py): a
`filter` Trainer on a tiny dataset whose second half is synthetic (domain 1), each synthetic
sample the Δc = 0 partner of the real sample 32 places before it."""
import numpy as np

from dmfr.data.base import DomainInfo
from dmfr.trainer import Trainer
from tiny_data import TinyFaceDataset, tiny_config


def paired_dataset() -> TinyFaceDataset:
    ds = TinyFaceDataset(num_classes=4, per_class=16)
    order = np.argsort(np.arange(64) % 16 >= 8, kind="stable")  # per class: 8 real, then 8 synthetic
    ds.images, ds.labels = ds.images[order], ds.labels[order]
    ds.domains = np.where(np.arange(64) >= 32, 1, 0).astype(np.int16)
    ds.pair = np.where(np.arange(64) >= 32, np.arange(64) - 32, -1).astype(np.int32)
    ds.domain_info = [DomainInfo(0, "real", "real"), DomainInfo(1, "syn", "generative")]
    return ds


def shard_plan(step: int, rank: int = 0, world: int = 1):
    """Step `step`'s global batch of 16: 4 pairs (synthetic at 2q, its source at 2q+1) and 8 mixed
    samples, cut into `world` shards with the pairs spread evenly (as the filter sampler does)."""
    rng = np.random.default_rng(100 + step)
    syn = rng.choice(np.arange(32, 64), 4, replace=False)
    rest = rng.choice(np.setdiff1d(np.arange(64), np.concatenate([syn, syn - 32])), 8, replace=False)
    per = 4 // world
    own = syn[rank * per:(rank + 1) * per]
    idx = np.concatenate([np.stack([own, own - 32], 1).ravel(), rest[rank * 8 // world:(rank + 1) * 8 // world]])
    pair = np.full(len(idx), -1, np.int32)
    pair[0:2 * per:2], pair[1:2 * per:2] = np.arange(1, 2 * per, 2), np.arange(0, 2 * per, 2)
    return idx.astype(np.int32), (idx >= 32).astype(np.int16), pair


def filter_trainer(rank: int = 0, world: int = 1, clip: float = 0, **train) -> Trainer:
    config = tiny_config(method={"name": "filter"}, optim={"clip_grad_norm": clip},
                         train={"batch_size": 16, "term_grad_norm_every": 1, **train})
    return Trainer(config, paired_dataset(), "cpu", rank, world)
