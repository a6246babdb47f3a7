"""Every method on the quick procedural benchmark, through the real CLI, then evaluated.

For each row: `dmfr run --preset quick --method M --nproc 2 --json` (the controller, 2 torchrun
ranks), then the final checkpoint is evaluated on the benchmark's three protocols (general,
cross_pose, cross_quality: real renderings of held-out identities, gallery × probe pairs) with
TAR@FAR (PFE threshold read-off, dmfr.eval.roc) and the paper's Table 1 similarities on the
training samples (dmfr.analysis.table1: the filter row after filtering, F(H(x)), every row labelled
with its feature space), then Table 1 in the paper's layout (baseline = real-only model, mixed =
mix model, after filtering = filter model). Rows: real-only, an oracle (mix with the generators'
fingerprint at strength 0) and every method at the benchmark's fingerprint strength.

    PYTHONPATH=python .venv/bin/python bench/methods_quick.py [--steps 200] [--strength 1] [--out runs/bench-methods]
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

from dmfr.analysis.similarity import similarity_table
from dmfr.analysis.table1 import model_features, table1, to_markdown
from dmfr.checkpoint import load_checkpoint
from dmfr.data import procedural
from dmfr.embed import Embedder
from dmfr.eval.roc import far_label, tar_at_far

ROOT = Path(__file__).resolve().parent.parent
METHODS = ["real", "mix", "meta", "disentangle", "filter", "dul", "url"]
PROTOCOLS = ("general", "cross_pose", "cross_quality")
FARS = (1e-3, 1e-2)


def train(method: str, strength: float, steps: int, out: Path) -> dict:
    cmd = ["node", str(ROOT / "bin/dmfr.js"), "run", "--preset", "quick", "--method", method, "--nproc", "2",
           "--steps", str(steps), "--json", "--out", str(out),
           "--set", f"data.procedural.fingerprint_strength={strength}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def final_terms(run_dir: Path, window: int = 20) -> dict:
    """Mean of each logged loss term over the last `window` steps, from the run's SQLite store."""
    db = sqlite3.connect(run_dir / "dmfr.sqlite")
    names = [r[0] for r in db.execute("SELECT DISTINCT name FROM metrics")]
    out = {}
    for name in names:
        term = name.removeprefix("terms.")  # the run store keeps a method's terms as terms.<name>
        if term == "loss" or term.startswith("L_") or term == "KL":
            rows = db.execute("SELECT value FROM metrics WHERE name = ? ORDER BY step DESC LIMIT ?", (name, window)).fetchall()
            out[term] = round(float(np.mean([r[0] for r in rows])), 4)
    return out


def evaluate(checkpoint: Path) -> dict:
    state = load_checkpoint(checkpoint)
    config = state["config"]
    embedder = Embedder.from_checkpoint(checkpoint)
    row = {}
    for protocol in PROTOCOLS:
        ts = procedural.build_test_set(config, protocol)
        f = embedder.embed_images(list(ts.images), flip=True)
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        scores = np.einsum("pd,pd->p", f[ts.pairs[:, 0]], f[ts.pairs[:, 1]])
        res = tar_at_far(scores, ts.issame, FARS)["tar_at_far"]["threshold"]
        for far, v in res.items():
            row[f"{protocol}@{far}"] = round(v["tar"], 3)
    train_set = procedural.build_train_set(config)
    feats, row["table1_features"] = model_features(embedder, train_set.images, train_set.domains != 0)
    modality = np.where(train_set.domains == 0, "real", "synthetic")
    table = similarity_table(feats, train_set.labels, modality)
    for mod in ("real", "synthetic"):
        if mod in table:
            row[f"inter_{mod}"] = round(table[mod]["interclass"], 3)
    return row


def paper_table1(checkpoints: dict[str, Path]) -> str:
    """Table 1 on the benchmark's training samples (fingerprint strength of the runs) as the paper
    lays it out; `checkpoints`: "real-only model" / "mixed model" / "filter model" → checkpoint."""
    if not checkpoints:
        return ""
    config = load_checkpoint(next(iter(checkpoints.values())))["config"]
    train_set = procedural.build_train_set(config)
    models = {kind: Embedder.from_checkpoint(ck) for kind, ck in checkpoints.items()}
    return to_markdown(table1(models, train_set.images, train_set.labels, train_set.domains != 0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--strength", type=float, default=1.0, help="generators' fingerprint strength")
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--out", default=str(ROOT / "runs/bench-methods"))
    args = ap.parse_args(argv)
    rows = [("oracle (mix, strength 0)", "mix", 0.0)] + [(m, m, args.strength) for m in args.methods]
    results = []
    table1_models = {}
    for label, method, strength in rows:
        run_dir = Path(args.out) / label.split()[0]
        summary = train(method, strength, args.steps, run_dir)
        ckpt = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
        kind = {"real": "real-only model", "mix": "mixed model", "filter": "filter model"}.get(label)
        if kind:
            table1_models[kind] = ckpt
        row = {"row": label, "status": summary["status"], "steps_per_s": round(summary["steps_per_s"] or 0, 2),
               **final_terms(run_dir), **evaluate(ckpt)}
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    keys = ["row"] + [f"{p}@{far_label(far)}" for p in PROTOCOLS for far in FARS] + ["inter_real", "inter_synthetic",
                                                                                     "table1_features"]
    print("| " + " | ".join(keys) + " | final loss terms |")
    print("|" + "---|" * (len(keys) + 1))
    for r in results:
        terms = ", ".join(f"{k} {v}" for k, v in r.items() if k == "loss" or k.startswith("L_") or k == "KL")
        print("| " + " | ".join(str(r.get(k, "–")) for k in keys) + f" | {terms} |")
    print()
    print(paper_table1(table1_models), end="")
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
