"""The cost of the logged-step diagnostics (issue #10; docs/methods.md, "Diagnostics"): the same
`filter` training steps (two loss terms, so two extra autograd passes on a logged step) with
no diagnostics; a logged step's total norm and clip fraction on every step (`train.log_every` 1,
as the quick preset); and with per-term norms every 10th and every step (`train.term_grad_norm_every`;
the default 100 costs a hundredth of the every-step extra), measured side by side: the modes alternate step by step, so the box's load moves them alike. Quick-preset model and data (r_tiny
width 0.25, 32 px, 64-d embedding, procedural identities with pose/quality domains), batch 64 with
16 Δc = 0 pairs as the filter sampler lays them out.

    PYTHONPATH=python OMP_NUM_THREADS=1 .venv/bin/python bench/grad_diagnostics.py [--steps 40]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dmfr.data import procedural
from dmfr.trainer import Trainer


def config(steps: int, term_every: int = 100) -> dict:
    # the quick preset's values (ts/config/presets.ts), method filter with the schema defaults
    return {"name": "bench", "seed": 0,
            "method": {"name": "filter", "lambda_flt": 1.0, "filter_shared_classifier": False,
                       "filter_detach_real": True, "filter_trains_backbone": True},
            "data": {"kind": "procedural", "image_size": 32, "num_workers": 0,
                     "procedural": {"seed": 0, "identities": 32, "images_per_identity": 8,
                                    "generators": ["pose", "quality"], "fingerprint_strength": 1.0,
                                    "identity_loss": 0.5, "test_identities": 0, "min_far": 1e-4}},
            "model": {"arch": "r_tiny", "width": 0.25, "embedding_size": 64, "dropout": 0.0},
            "head": {"type": "cosface", "s": 64.0, "m": 0.4, "m1": 1.0, "m2": 0.0, "m3": 0.0,
                     "straight_through": False, "partial_fc_sample_rate": 1.0},
            "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "no_bn_decay": False, "schedule": "constant",
                      "milestones": [], "gamma": 0.1, "warmup_steps": 0, "clip_grad_norm": 5.0},
            "train": {"steps": steps, "batch_size": 64, "nproc": 1, "amp": "none", "channels_last": False,
                      "grad_accum": 1, "log_every": 1, "checkpoint_every": 0, "keep_last": 1, "deterministic": False,
                      "term_grad_norm_every": term_every}}


def plans(ds, steps: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    syn = np.flatnonzero(ds.pair >= 0)
    out = []
    for _ in range(steps):
        s = rng.choice(syn, 16, replace=False)
        idx = np.concatenate([np.stack([s, ds.pair[s]], 1).ravel(), rng.integers(0, len(ds), 32)]).astype(np.int32)
        pair = np.full(64, -1, np.int32)
        pair[0:32:2], pair[1:32:2] = np.arange(1, 32, 2), np.arange(0, 32, 2)
        out.append((idx, ds.domains[idx].astype(np.int16), pair))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = config(args.warmup + args.steps)
    ds = procedural.build_train_set(cfg)
    plan = plans(ds, args.warmup + args.steps)
    # mode: (diagnostics on every (logged) step, train.term_grad_norm_every)
    # (the default interval of 100 costs (every step − total norm only) / 100 per step on average)
    modes = {"none": (False, 0), "total norm only": (True, 0), "terms every 10th": (True, 10),
             "terms every step": (True, 1)}
    trainers = {m: Trainer(config(args.warmup + args.steps, every), ds) for m, (_, every) in modes.items()}
    spent = dict.fromkeys(modes, 0.0)
    for k, (idx, doms, pair) in enumerate(plan):
        images = trainers["none"].load_shard(k, idx, pair)  # loading is common to all modes: not timed
        for mode, (diagnostics, _) in modes.items():
            t0 = time.perf_counter()
            trainers[mode].train_step(k, idx, doms, pair, images=images.clone(), diagnostics=diagnostics)
            if k >= args.warmup:
                spent[mode] += time.perf_counter() - t0
    for mode in modes:
        print(f"{mode:>16}: {1000 * spent[mode] / args.steps:7.1f} ms/step  ratio to none {spent[mode] / spent['none']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
