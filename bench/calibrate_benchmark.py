"""Calibrate the procedural benchmark: fingerprint strength × identity loss (issue 4, docs/domains.md).

For each (strength, identity_loss) it trains a small IResNet in this process on the procedural
training set with one built-in generator, mixing real and synthetic samples (`mix`, real :
synthetic per batch, CosFace m = 0.4, SGD, gradient-norm clipping as arcface_torch), and reports
TAR@FAR on the generator's protocol (cross_pose for pose, cross_quality for quality) and on
general, with the paper's Table 1 similarities on the training set (mean cosine between identity
centres, real and synthetic). Every report holds an oracle row (the same generator at strength
0, same identity loss) and a real-only row, as the issue asks. The default should be a setting
where mixing falls measurably below its oracle.

    PYTHONPATH=python .venv/bin/python bench/calibrate_benchmark.py --generator pose \
        --strengths 0 1 --identity-losses 0 0.5 --steps 300 --out calibration.json

Small by default so it runs on a shared 2-core CPU in minutes; use --device cuda and larger
--identities/--steps/--image-size for the sweep that docs/domains.md asks for.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from dmfr.data import procedural
from dmfr.eval.roc import tar_at_far
from dmfr.heads import MarginHead
from dmfr.models.iresnet import get_model

PROTOCOL = {"pose": "cross_pose", "quality": "cross_quality"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", choices=sorted(PROTOCOL), default="pose")
    p.add_argument("--strengths", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--identity-losses", type=float, nargs="+", default=[0.5])
    p.add_argument("--identities", type=int, default=100)
    p.add_argument("--images-per-identity", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mix", default="1:1", help="real:synthetic per batch (paper Fig. 6: 1:1, 1:2)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clip (arcface_torch: 5; 0: off)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--fars", type=float, nargs="+", default=[1e-3, 1e-2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-real-only", action="store_true", help="omit the real-only row (already measured)")
    p.add_argument("--out", help="write the rows as JSON here")
    return p.parse_args(argv)


def run_config(args, strength: float, identity_loss: float) -> dict:
    return {"data": {"image_size": args.image_size, "procedural": {
        "seed": args.seed, "identities": args.identities, "images_per_identity": args.images_per_identity,
        "generators": [args.generator], "fingerprint_strength": strength, "identity_loss": identity_loss,
        "min_far": min(args.fars)}}}


def train(args, ds, synthetic_share: float):
    """Train from scratch; each batch draws round(share·B) synthetic samples, the rest real."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dev = torch.device(args.device)
    model = get_model("r_tiny", num_features=args.embedding, width=args.width, input_size=args.image_size).to(dev)
    head = MarginHead(args.embedding, ds.num_classes, kind="cosface", s=64.0, m=0.4).to(dev)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(args.steps * 0.75)], 0.1)
    real = np.flatnonzero(ds.domains == 0)
    synth = np.flatnonzero(ds.domains != 0)
    n_syn = int(round(synthetic_share * args.batch))
    losses = []
    model.train()
    for _ in range(args.steps):
        idx = np.r_[rng.choice(real, args.batch - n_syn), rng.choice(synth, n_syn)] if n_syn else rng.choice(real, args.batch)
        x = ds.load(idx).to(dev)
        y = torch.from_numpy(ds.labels[idx].astype(np.int64)).to(dev)
        if rng.random() < 0.5:  # arcface_torch's RandomHorizontalFlip
            x = torch.flip(x, dims=[3])
        loss = head(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return model, float(np.mean(losses[-20:]))


@torch.no_grad()
def embed(model, load, n, device, batch=256) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, n, batch):
        out.append(F.normalize(model(load(np.arange(s, min(n, s + batch))).to(device))).cpu().numpy())
    return np.concatenate(out)


def evaluate(args, model, ds) -> dict:
    row = {}
    for protocol in ("general", PROTOCOL[args.generator]):
        ts = procedural.build_test_set(run_config(args, 0, 0), protocol)
        f = embed(model, ts.load, len(ts), args.device)
        scores = np.einsum("pd,pd->p", f[ts.pairs[:, 0]], f[ts.pairs[:, 1]])
        res = tar_at_far(scores, ts.issame, args.fars)["tar_at_far"]["threshold"]
        for far, v in res.items():
            row[f"{protocol}@{far}"] = round(v["tar"], 4)
    row.update(table1(args, model, ds))
    return row


def table1(args, model, ds, prefix: str = "") -> dict:
    """The paper's Table 1: mean cosine between different identities' centres, real and synthetic."""
    f = embed(model, ds.load, len(ds), args.device)
    out = {}
    for dom, name in ((0, "real"), (1, "synthetic")):
        sel = ds.domains == dom
        centres = np.stack([f[sel & (ds.labels == c)].mean(0) for c in range(ds.num_classes)])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        sim = centres @ centres.T
        out[f"{prefix}inter_{name}"] = round(float(sim[~np.eye(len(sim), dtype=bool)].mean()), 4)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    r, s = (float(v) for v in args.mix.split(":"))
    share = s / (r + s)
    rows = []

    def report(row):
        rows.append(row)
        print(json.dumps(row), flush=True)

    # The real-only row: the training set's real domain does not depend on ε.
    real_only = None
    if not args.skip_real_only:
        t0 = time.time()
        ds = procedural.build_train_set(run_config(args, 0.0, 0.0))
        real_only, loss = train(args, ds, 0.0)
        report({"row": "real-only", "strength": None, "identity_loss": None, "loss": round(loss, 4),
                **evaluate(args, real_only, ds), "seconds": round(time.time() - t0, 1)})
    for il in args.identity_losses:
        for st in args.strengths:
            t0 = time.time()
            ds = procedural.build_train_set(run_config(args, st, il))
            model, loss = train(args, ds, share)
            # How the real-only model sees this setting's synthetic samples (Table 1's first row).
            seen = table1(args, real_only, ds, "real_only_") if real_only is not None else {}
            report({"row": "oracle" if st == 0 else f"mix {args.mix}", "strength": st, "identity_loss": il,
                    "loss": round(loss, 4), **evaluate(args, model, ds), **seen,
                    "seconds": round(time.time() - t0, 1)})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
