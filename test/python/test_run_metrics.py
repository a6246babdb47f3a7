"""`dmfr runs metrics` and `dmfr analyze curves RUN_DIR` on a run store with the TypeScript store's
own schema (its migration, read from ts/store/migrations.ts), and evaluations into TensorBoard."""
from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import pytest

from dmfr.cli.__main__ import main

REPO = Path(__file__).resolve().parents[2]


def make_run_store(run_dir: Path, runs: dict[str, dict[int, dict[str, float | None]]]) -> None:
    """A run store as ts/store writes it: every run in `runs` (in creation order) with its rows."""
    sql = re.search(r"`([^`]*CREATE TABLE experiments[^`]*)`", (REPO / "ts/store/migrations.ts").read_text()).group(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(run_dir / "dmfr.sqlite")
    db.executescript(sql)
    db.execute("INSERT INTO experiments VALUES ('e', 'x', '2026-01-01T00:00:00Z', '{}')")
    for i, (run_id, steps) in enumerate(runs.items()):
        db.execute("INSERT INTO runs (id, experiment_id, state, run_dir, nproc, config_json, created_at) "
                   "VALUES (?, 'e', 'completed', ?, 1, '{}', ?)", (run_id, str(run_dir), f"2026-01-01T00:00:0{i}Z"))
        for step, values in steps.items():
            for name, value in values.items():
                db.execute("INSERT INTO metrics VALUES (?, ?, ?, ?)", (run_id, step, name, value))
    db.commit()
    db.close()


def values(loss):
    return {"loss": loss, "lr": 0.1, "samples_per_s": 100.0, "terms.L_cls": loss, "terms.KL": None}


def test_runs_metrics_nests_terms_and_a_resume_takes_over_from_its_step(tmp_path, capsys):
    run = tmp_path / "run"
    # attempt 1 trained steps 1–4 (checkpoint at 2), the resume retrained 3–4 and went on to 5
    make_run_store(run, {"a1": {s: values(10.0 - s) for s in (1, 2, 3, 4)},
                         "a2": {s: values(20.0 - s) for s in (3, 4, 5)}})
    assert main(["runs", "metrics", str(run)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in records] == [9.0, 8.0, 17.0, 16.0, 15.0]
    assert records[0] == {"step": 1, "loss": 9.0, "lr": 0.1, "samples_per_s": 100.0,
                          "terms": {"KL": None, "L_cls": 9.0}}

    out = tmp_path / "m.csv"
    assert main(["runs", "metrics", str(run), "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["step", "loss", "lr", "samples_per_s", "terms.KL", "terms.L_cls"]
    assert rows[3] == ["3", "17.0", "0.1", "100.0", "", "17.0"]

    # what `runs metrics` writes is what `analyze curves` reads; and it reads the run directly
    jsonl = tmp_path / "m.jsonl"
    assert main(["runs", "metrics", str(run), "--out", str(jsonl)]) == 0
    assert main(["analyze", "curves", f"direct={run}", "--metrics", f"exported={jsonl}", "--out", str(tmp_path / "fig")]) == 0
    data = json.loads((tmp_path / "fig" / "fig6_losses.json").read_text())
    assert data["direct"] == data["exported"]
    assert data["direct"]["L_cls"] == {"step": [1, 2, 3, 4, 5], "value": [9.0, 8.0, 17.0, 16.0, 15.0]}


def test_runs_metrics_names_a_bad_run_directory(tmp_path, capsys):
    assert main(["runs", "metrics", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a run directory (no dmfr.sqlite" in capsys.readouterr().err
    (tmp_path / "dmfr.sqlite").write_bytes(b"not sqlite at all, just bytes" * 10)
    assert main(["runs", "metrics", str(tmp_path)]) == 2
    assert "not a dmfr run store" in capsys.readouterr().err
    empty = tmp_path / "empty"
    make_run_store(empty, {"a1": {}})
    assert main(["runs", "metrics", str(empty)]) == 2
    assert "the run has no metrics yet" in capsys.readouterr().err


def test_an_evaluation_of_a_run_checkpoint_lands_in_its_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from dmfr.tensorboard_log import RunScalars, checkpoint_run, read_scalars, write_evaluation

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "step-00000040.pt"
    ckpt.write_bytes(b"")
    assert checkpoint_run(ckpt) is None  # the run wrote no event files: leave it alone
    scalars = RunScalars(run)
    scalars.metrics({"step": 40, "loss": 2.5, "lr": 0.1, "terms": {"L_cls": 2.5, "KL": float("nan")}})
    scalars.close()
    assert checkpoint_run(ckpt) == (run.resolve(), 40)
    write_evaluation(run, 40, "verification", {"accuracy": 0.875, "threshold": 0.3, "notes": ["x"], "ok": True})
    got = read_scalars(run / "tensorboard")
    assert got["eval/verification/accuracy"] == [(40, 0.875)]
    assert got["terms/L_cls"] == [(40, 2.5)] and "terms/KL" not in got  # a non-finite value is left out
    assert "eval/verification/ok" not in got and "eval/verification/notes" not in got
