"""Shared by the trainer/DDP/worker tests: a small in-memory FaceDataset and a resolved run config.

The dataset is a real FaceDataset (python/dmfr/data/base.py): class-dependent mean images plus
noise, so a few SGD steps can reduce the loss, and `load` returns normalised float32 tensors.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dmfr.data.base import DomainInfo

# ts/config/schema.ts defaults (as `loadConfig()` resolves them), shrunk to a CPU-sized model.
# test/ts/python-defaults.test.ts checks it against the schema: same keys everywhere, same values
# except the fields in its SHRUNK allow-list. Add a new schema field here with its default.
BASE_CONFIG = {
    "name": "run", "seed": 0,
    "method": {"name": "real", "lambda_meta": 0.5, "meta_alpha": 0.1, "lambda_disen": 1, "disentangle_stage": 3,
               "lambda_flt": 1, "filter_shared_classifier": False, "filter_detach_real": True,
               "filter_trains_backbone": True, "kl_weight": 0.01, "url_groups": 16, "url_decorrelation": False},
    "data": {"kind": "procedural", "generative": [], "image_size": 32, "skip_bad": False, "num_workers": 0,
             "select": {"min_images": 1, "include": [], "exclude": [], "exclude_pairs": "", "exclude_folds": []},
             "preprocess": {"crop_center": [], "crop_box": [], "landmarks": ""},
             "procedural": {"seed": 0, "identities": 8, "images_per_identity": 4, "generators": [],
                            "fingerprint_strength": 1, "identity_loss": 0.5,
                            "test_identities": 0, "min_far": 1e-4}},
    "model": {"arch": "r_tiny", "width": 0.125, "embedding_size": 32, "dropout": 0},
    "head": {"type": "cosface", "s": 64, "m": 0.4, "m1": 1, "m2": 0, "m3": 0, "straight_through": False,
             "partial_fc_sample_rate": 1},
    "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "no_bn_decay": False, "schedule": "step",
              "milestones": [], "milestone_fractions": [], "gamma": 0.1, "warmup_steps": 0, "clip_grad_norm": 5},
    "train": {"steps": 10, "batch_size": 16, "nproc": 1, "amp": "none", "channels_last": False, "grad_accum": 1,
              "log_every": 1, "checkpoint_every": 0, "term_grad_norm_every": 100, "keep_last": 3, "deterministic": False,
              "tensorboard": True},
    "sampler": {"kind": "real", "mix_ratio": [1, 1], "identity_balanced": False, "chunk_steps": 4, "credit": 4},
    "runtime": {"device": "cpu", "bind": "127.0.0.1", "nnodes": 1, "advertise": "", "curve": False, "master_port": 0,
                "heartbeat_s": 0.5, "rank_timeout_s": 60, "startup_timeout_s": 120,
                "controller_timeout_s": 15, "stop_grace_s": 10, "threads_per_rank": 1},
}


def tiny_config(**sections) -> dict:
    """BASE_CONFIG with `section={key: value}` overrides merged in."""
    config = copy.deepcopy(BASE_CONFIG)
    for name, values in sections.items():
        if isinstance(values, dict):
            config[name].update(values)
        else:
            config[name] = values
    return config


class TinyFaceDataset:
    def __init__(self, num_classes: int = 4, per_class: int = 16, image_size: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.num_classes = num_classes
        self.labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
        self.domains = np.zeros(len(self.labels), np.int16)
        self.pair = np.full(len(self.labels), -1, np.int32)
        self.domain_info = [DomainInfo(0, "real", "real")]
        means = rng.uniform(0, 255, (num_classes, 3, image_size, image_size))
        noise = rng.normal(0, 40, (len(self.labels), 3, image_size, image_size))
        self.images = np.clip(means[self.labels] + noise, 0, 255).astype(np.uint8)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.images[np.asarray(indices)].astype(np.float32))
        return (x / 255 - 0.5) / 0.5


@pytest.fixture(autouse=True)
def one_thread():
    """For the trainer tests that import it: one torch thread, so results do not depend on the box."""
    torch.set_num_threads(1)


def params(trainer) -> dict:
    """A copy of the trainer's parameters, by name."""
    return {k: v.detach().clone() for k, v in trainer.method.named_parameters()}
