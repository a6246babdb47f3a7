"""Pilot (issue #10 §4): does naive mixing fall below its oracle under the paper's recipe?

The paper ("Training") starts every DMFR network from a softmax-pretrained one and fine-tunes at
lr 0.01. Per seed: pretrain a real-only model (`dmfr run --preset quick --method real`), then
fine-tune from its backbone (`train.init`, `optim.lr` 0.01) with `mix` at the benchmark's
fingerprint strength and with the oracle (`mix` at strength 0: the same pose/quality changes
without the modality ε), and evaluate both on the three protocols (bench/methods_quick.evaluate).
Harm = the paired mix − oracle difference below zero by more than two standard errors over seeds.

    PYTHONPATH=python OMP_NUM_THREADS=1 .venv/bin/python bench/pilot_finetune.py --seeds 0 1 2 [--strength 1]
        [--pretrain-steps 200] [--steps 200] [--set KEY=VALUE ...] [--out runs/pilot]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods_quick import FARS, PROTOCOLS, evaluate  # noqa: E402

from dmfr.eval.roc import far_label  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def dmfr_run(out: Path, method: str, steps: int, sets: list[str]) -> Path:
    cmd = ["node", str(ROOT / "bin/dmfr.js"), "run", "--preset", "quick", "--method", method, "--nproc", "1",
           "--steps", str(steps), "--json", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return sorted((out / "checkpoints").glob("step-*.pt"))[-1]


def one_seed(seed: int, args) -> dict:
    base = Path(args.out) / f"seed{seed}"
    common = [f"seed={seed}", *args.set]
    pre = dmfr_run(base / "pretrain", "real", args.pretrain_steps, common)
    tune = [*common, f"train.init={pre}", "optim.lr=0.01"]
    rows = {"pretrained (real only)": evaluate(pre)}
    for name, strength in (("mix", args.strength), ("oracle", 0.0)):
        ck = dmfr_run(base / name, "mix", args.steps, [*tune, f"data.procedural.fingerprint_strength={strength}"])
        rows[name] = evaluate(ck)
    print(json.dumps({"seed": seed, **rows}), file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--pretrain-steps", type=int, default=200)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], help="extra config override for every run")
    ap.add_argument("--parallel", type=int, default=1, help="seeds run at once")
    ap.add_argument("--out", default=str(ROOT / "runs/pilot"))
    args = ap.parse_args(argv)
    with ThreadPoolExecutor(args.parallel) as pool:
        per_seed = list(pool.map(lambda s: one_seed(s, args), args.seeds))
    keys = [f"{p}@{far_label(far)}" for p in PROTOCOLS for far in FARS]
    print("| metric | pretrained | mix | oracle | mix − oracle (mean ± s.e.) | harm (> 2 s.e.) |")
    print("|---|---|---|---|---|---|")
    for k in keys:
        col = lambda name: np.array([r[name][k] for r in per_seed])
        diff = col("mix") - col("oracle")
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        label = k.replace("@", " @")
        print(f"| {label} | {col('pretrained (real only)').mean():.3f} | {col('mix').mean():.3f} | "
              f"{col('oracle').mean():.3f} | {diff.mean():+.3f} ± {se:.3f} | {'yes' if diff.mean() < -2 * se else 'no'} |")
    (Path(args.out)).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "pilot.json").write_text(json.dumps(per_seed, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
