"""Checkpoints: atomic write, retention (latest N + best K), safe load, clear errors."""
import json
import os
import random

import numpy as np
import pytest
import torch

import dmfr.checkpoint as ckpt
from dmfr.checkpoint import latest_checkpoint, load_checkpoint, read_index, save_checkpoint
from dmfr.errors import DmfrError


def training_state(step):
    return {"version": 1, "step": step, "config": {"method": {"name": "real"}}, "num_classes": 3,
            "method": {"w": torch.full((2, 2), float(step))}, "optimizer": {"state": {}, "param_groups": []},
            "scheduler": {"last_epoch": step}, "scaler": None,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "sampler": {"position": step * 4}}


def test_roundtrip_with_rng_states(tmp_path):
    state = training_state(7)
    path = save_checkpoint(tmp_path, 7, state, keep_last=2)
    assert path.name == "step-00000007.pt"
    back = load_checkpoint(path)
    assert back["step"] == 7 and torch.equal(back["method"]["w"], state["method"]["w"])
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    np_state = back["rng"]["numpy"]
    assert np_state[0] == "MT19937" and np.array_equal(np_state[1], state["rng"]["numpy"][1])
    assert back["rng"]["python"] == state["rng"]["python"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_retention_latest_and_best(tmp_path):
    metrics = {1: 0.5, 2: 0.9, 3: 0.6, 4: 0.7, 5: 0.55, 6: 0.65}
    for step, m in metrics.items():
        save_checkpoint(tmp_path, step, training_state(step), keep_last=2, metric=m, keep_best=1)
    files = sorted(p for p in os.listdir(tmp_path) if p.endswith(".pt"))
    assert files == ["step-00000002.pt", "step-00000005.pt", "step-00000006.pt"]
    index = json.loads((tmp_path / "checkpoints.json").read_text())
    assert [e["step"] for e in index["checkpoints"]] == [2, 5, 6]
    assert [e["metric"] for e in read_index(tmp_path)] == [0.9, 0.55, 0.65]
    assert latest_checkpoint(tmp_path).name == "step-00000006.pt"


def test_retention_lower_is_better_and_resave_same_step(tmp_path):
    for step, loss in [(10, 3.0), (20, 1.0), (30, 2.0)]:
        save_checkpoint(tmp_path, step, training_state(step), keep_last=1, metric=loss, keep_best=1,
                        higher_is_better=False)
    assert [e["step"] for e in read_index(tmp_path)] == [20, 30]
    save_checkpoint(tmp_path, 30, training_state(31), keep_last=1, keep_best=1,  # same step: replaced
                    higher_is_better=False)
    assert load_checkpoint(tmp_path / "step-00000030.pt")["step"] == 31
    assert [e["step"] for e in read_index(tmp_path)] == [20, 30]


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    good = save_checkpoint(tmp_path, 5, training_state(5), keep_last=3)
    before = good.read_bytes()

    def crash(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)  # a fault a real disk rarely produces on demand
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 5, training_state(6), keep_last=3)
    assert good.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoints.json", "step-00000005.pt"]


def test_truncated_and_corrupt_files_are_named(tmp_path):
    path = save_checkpoint(tmp_path, 1, training_state(1), keep_last=1)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DmfrError, match="truncated.pt: corrupt, truncated or not a checkpoint"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(DmfrError, match="garbage.pt"):
        load_checkpoint(garbage)
    with pytest.raises(DmfrError, match="missing.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(DmfrError, match="evil.pt"):
        load_checkpoint(path)


def test_corrupt_index_is_named(tmp_path):
    (tmp_path / "checkpoints.json").write_text("{not json")
    with pytest.raises(DmfrError, match="checkpoints.json: not a valid checkpoint index"):
        save_checkpoint(tmp_path, 1, training_state(1), keep_last=1)


def _save_as_other_numpy(state, path):
    """torch.save with numpy arrays pickled under the other numpy major's module name
    (numpy 1.x writes numpy.core.multiarray._reconstruct, numpy 2.x numpy._core.multiarray...)."""
    import pickle
    import types

    reconstruct = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
    other = b"numpy.core.multiarray" if reconstruct.__module__.startswith("numpy._core") else b"numpy._core.multiarray"

    class Pickler(pickle._Pickler):
        def save_global(self, obj, name=None):
            if obj is reconstruct:
                self.write(pickle.GLOBAL + other + b"\n_reconstruct\n")
                self.memoize(obj)
                return
            super().save_global(obj, name)

    torch.save(state, path, pickle_module=types.SimpleNamespace(__name__="other_numpy_pickle", Pickler=Pickler))
    return other.decode()


@pytest.mark.parametrize("torch_has_tuple_allowlist", [True, False])
def test_loads_a_checkpoint_written_under_the_other_numpy_major(tmp_path, monkeypatch, torch_has_tuple_allowlist):
    # A run saved on a numpy 1.x host must resume / embed on a numpy 2.x host and back; torch < 2.6
    # (no (fn, name) allowlist entries) takes the forwarding-function path.
    monkeypatch.setattr(ckpt, "_torch_at_least", lambda major, minor: torch_has_tuple_allowlist)
    state = training_state(3)
    path = tmp_path / "other.pt"
    module = _save_as_other_numpy(state, path)
    assert f"{module}._reconstruct" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    loaded = load_checkpoint(path)
    assert loaded["rng"]["numpy"][1].dtype == np.uint32
    np.testing.assert_array_equal(loaded["rng"]["numpy"][1], state["rng"]["numpy"][1])


def test_loads_without_the_safe_globals_context_manager(tmp_path, monkeypatch):
    # torch 2.4 has add_safe_globals but not safe_globals (2.5): the allowlist is restored after.
    monkeypatch.delattr(torch.serialization, "safe_globals")
    before = list(torch.serialization.get_safe_globals())
    path = save_checkpoint(tmp_path, 1, training_state(1), keep_last=1)
    assert load_checkpoint(path)["rng"]["numpy"][1].dtype == np.uint32
    # torch >= 2.5 keeps the allowlist in a set: compare contents, not order
    assert set(torch.serialization.get_safe_globals()) == set(before)


def test_resume_falls_back_past_a_truncated_newest_checkpoint(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, training_state(step), keep_last=3)
    newest = tmp_path / "step-00000006.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk or a torn copy
    state, used, skipped = ckpt.load_for_resume(newest)
    assert used == tmp_path / "step-00000004.pt" and state["step"] == 4
    assert [p for p, _ in skipped] == [newest]
    assert "step-00000006.pt: corrupt, truncated or not a checkpoint" in skipped[0][1]
    # A valid requested file is used as it is, nothing skipped; newer files are never taken.
    state, used, skipped = ckpt.load_for_resume(tmp_path / "step-00000002.pt")
    assert used.name == "step-00000002.pt" and state["step"] == 2 and skipped == []


def test_resume_with_no_loadable_checkpoint_names_every_file_tried(tmp_path):
    for step in (2, 4):
        path = save_checkpoint(tmp_path, step, training_state(step), keep_last=2)
        path.write_bytes(b"\x00" * 64)
    with pytest.raises(DmfrError, match=r"no checkpoint to resume from loads: .*step-00000004\.pt.*step-00000002\.pt"):
        ckpt.load_for_resume(tmp_path / "step-00000004.pt")


KILLED_WRITER = """
import sys, time
from pathlib import Path
from dmfr.checkpoint import atomic_write, checkpoint_name
def write(f):
    f.write(b"x" * 4096); f.flush()
    print("writing", flush=True)
    time.sleep(600)
atomic_write(Path(sys.argv[1]) / checkpoint_name(8), write)
"""


def test_temporaries_of_a_killed_write_are_removed_when_a_trainer_starts(tmp_path):
    import signal
    import subprocess
    import sys

    from dmfr.trainer import Trainer
    from tiny_data import TinyFaceDataset, tiny_config

    save_checkpoint(tmp_path, 4, training_state(4), keep_last=2)
    # A real writer process SIGKILLed in the middle of its write (no `except` or `finally` runs).
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    (tmp_path / ".checkpoints.json.abc123.tmp").write_text("{")  # the index's temporary, likewise
    stale = sorted(p.name for p in tmp_path.glob(".*.tmp"))
    assert len(stale) == 2 and stale[1].startswith(".step-00000008.pt.")
    Trainer(tiny_config(), TinyFaceDataset(), rank=1, checkpoint_dir=tmp_path)  # not the writer: leaves them
    assert len(list(tmp_path.glob(".*.tmp"))) == 2
    Trainer(tiny_config(), TinyFaceDataset(), rank=0, checkpoint_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoints.json", "step-00000004.pt"]
