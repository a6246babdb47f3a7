"""The `--json` contract of the Python verbs (python/dmfr/cli/_output.py, docs/service.md): the last
stdout line is exactly one compact JSON object — the result, or {"error": {type, message}} on bad
input — which is what the service (ts/service/python-cli.ts) reads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def run(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    return subprocess.run([sys.executable, "-m", "dmfr.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def last_line_object(stdout: str) -> dict:
    last = stdout.rstrip("\n").split("\n")[-1]
    assert last == json.dumps(json.loads(last), separators=(",", ":")), "not one compact JSON line"
    obj = json.loads(last)
    assert isinstance(obj, dict)
    return obj


def test_eval_result_is_one_compact_line(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(8, 4)).astype(np.float32))
    keys = [f"A/A_{i:04d}.jpg" for i in range(1, 7)] + [f"B/B_{i:04d}.jpg" for i in range(1, 3)]
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    # LFW pairs.txt: a 'folds pairs' header, then per fold the same-person pairs, then the others
    (tmp_path / "pairs.txt").write_text("1 2\nA 1 2\nA 3 4\nA 5 B 1\nA 6 B 2\n")
    proc = run("eval", "verification", "--pairs", tmp_path / "pairs.txt", "--features", tmp_path / "f.npy",
               "--keys", tmp_path / "keys.txt", "--folds", 2, "--json")
    assert proc.returncode == 0, proc.stderr
    obj = last_line_object(proc.stdout)
    assert obj["n_pairs"] == 4 and obj["n_same"] == 2 and len(obj["folds"]) == 2


def test_bad_input_is_an_error_object_and_exit_2(tmp_path):
    bad = tmp_path / "list.txt"
    bad.write_text("SECRET-LINE\n")
    proc = run("data", "inspect", bad, "--json")
    assert proc.returncode == 2
    obj = last_line_object(proc.stdout)
    assert obj["error"]["type"] == "DataError"
    assert str(bad) in obj["error"]["message"]
    assert proc.stderr.startswith("dmfr: error: ")  # the human line stays on stderr


def test_inspect_report_is_one_compact_line_and_human_output_without_json(tmp_path):
    from PIL import Image
    for ident in ("a", "b"):
        (tmp_path / "faces" / ident).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "faces" / ident / "0.png")
    proc = run("data", "inspect", tmp_path / "faces", "--json")
    assert proc.returncode == 0, proc.stderr
    assert last_line_object(proc.stdout)["problem_count"] == 0
    human = run("data", "inspect", tmp_path / "faces")
    assert human.returncode == 0
    assert not human.stdout.lstrip().startswith("{")
