"""`python -m dmfr.worker` as a real subprocess against a stand-in controller on real sockets.

One rank without torchrun (the 2-rank path runs in test_ddp.py and in the TypeScript end-to-end
test): the protocol sequence, `stop`, an error, a silent controller (exit 3) and SIGTERM.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dmfr.wire import RANK_CONTROL_TYPES, RANK_EVENT_TYPES, decode
from test_wire import KEY, RUN, controller  # noqa: F401 - the fixture: a real ROUTER + PULL pair
from tiny_data import tiny_config

REPO = Path(__file__).resolve().parents[2]


def start_worker(controller, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO / "python"), OMP_NUM_THREADS="1", DMFR_CONTROL_ENDPOINT=controller.endpoints.control,
               DMFR_EVENTS_ENDPOINT=controller.endpoints.events, DMFR_RUN_ID=RUN, DMFR_KEY=KEY.hex(),
               DMFR_RUN_DIR=str(tmp_path), DMFR_DEVICE="cpu")
    return subprocess.Popen([sys.executable, "-m", "dmfr.worker", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running_worker(controller, tmp_path, *args):
    """A `python -m dmfr.worker` process and the controller's session with it; killed on the way out."""
    proc = start_worker(controller, tmp_path, *args)
    try:
        yield proc, Session(controller)
    finally:
        proc.kill()


def config(steps=6, **sections):
    """A tiny run config. The stand-in controller sends heartbeats only while draining events, and
    the rank's own start-up after the config (dataset, model) counts as controller silence: on a
    busy box that exceeded tiny_config's 15 s, so these sessions allow 300 s unless a test sets it."""
    cfg = tiny_config(train={"steps": steps, "batch_size": 8, "log_every": 1}, **sections)
    if "runtime" not in sections:
        cfg["runtime"]["controller_timeout_s"] = 300
    return cfg


class Session:
    """The controller's side of one rank's conversation, recording every event."""

    def __init__(self, controller):
        self.c = controller
        self.identity = None
        self.events: list = []
        self.num_samples = 0

    def control(self, timeout=60.0):
        identity, msg = self.c.recv_control(timeout)
        self.identity = identity
        return msg

    def handshake(self, cfg, resume=None):
        hello = self.control()
        assert hello.type == "hello" and hello.body["device"] == "cpu" and hello.body["world_size"] == 1
        self.c.send(self.identity, "config", {"config": cfg, "resume": resume})
        ready = self.control()
        assert ready.type == "ready"
        self.num_samples = ready.body["num_samples"]
        credit = self.control()
        assert credit.type == "credit" and credit.body["chunks"] == cfg["sampler"]["credit"]
        return ready

    def plan(self, first, steps, last, shard=8):
        n = self.num_samples
        idx = np.stack([np.random.default_rng(k).permutation(n)[:shard] for k in range(first, first + steps)])
        self.c.send(self.identity, "plan", {"first_step": first, "num_steps": steps, "shard_size": shard,
                                            "last": last, "meta_test": None},
                    {"indices": idx.astype(np.int32), "domains": np.zeros_like(idx, dtype=np.int16)})

    def drain_events(self, until_type="bye", timeout=60.0):
        """Collect the rank's events until one of `until_type`, heartbeating it every second as the
        controller does (heartbeat_s): a rank slower than runtime.controller_timeout_s between the
        last plan and its bye (a loaded box) would otherwise take the silence for a lost controller."""
        deadline = time.monotonic() + timeout
        beat = time.monotonic()
        while time.monotonic() < deadline:
            if self.identity is not None and time.monotonic() - beat >= 1.0:
                self.c.send(self.identity, "heartbeat", {})
                beat = time.monotonic()
            if self.c.pull.poll(100):
                msg = decode(KEY, self.c.pull.recv_multipart(), run_id=RUN, allowed=RANK_EVENT_TYPES)
                self.events.append(msg)
                if msg.type == until_type:
                    return msg
            if self.c.router.poll(0):  # credits keep arriving
                identity, *frames = self.c.router.recv_multipart()
                decode(KEY, frames, run_id=RUN, allowed=RANK_CONTROL_TYPES, identity=identity)
        raise AssertionError(f"no {until_type} event; got {[m.type for m in self.events]}")

    def of(self, msg_type):
        return [m.body for m in self.events if m.type == msg_type]


def test_worker_speaks_the_protocol_end_to_end(controller, tmp_path):
    with running_worker(controller, tmp_path) as (proc, s):
        cfg = config(steps=6, sampler={"chunk_steps": 3, "credit": 2})
        ready = s.handshake(cfg)
        assert ready.body["num_samples"] == len(ready.buffers["labels"]) and ready.body["start_step"] == 0
        assert ready.buffers["labels"].dtype == np.int32 and ready.buffers["domains"].dtype == np.int16
        assert ready.body["domains"][0] == {"id": 0, "name": "real", "kind": "real"}
        s.plan(0, 3, last=False)
        s.plan(3, 3, last=True)
        bye = s.drain_events("bye")
        assert proc.wait(60) == 0
    assert bye.body.pop("train_time_s") > 0
    assert bye.body == {"reason": "completed", "last_step": 5}
    metrics = s.of("metrics")
    assert [m["step"] for m in metrics] == list(range(1, 7))  # every step exactly once, as steps completed
    assert all(m["loss"] > 0 and m["lr"] == pytest.approx(0.1) and "L_cls" in m["terms"] for m in metrics)
    saved = s.of("checkpoint-saved")
    assert len(saved) == 1 and saved[0]["step"] == 6 and Path(saved[0]["path"]).stat().st_size == saved[0]["bytes"]
    assert Path(saved[0]["path"]).name == "step-00000006.pt"  # one step number: the event's and the file's
    assert any(m.type == "heartbeat" for m in s.events)
    assert not s.of("error")
    # rank 0's TensorBoard event files, read back with TensorBoard's own reader: every logged
    # value at its step (steps completed), the terms nested as in the metrics records
    from dmfr.tensorboard_log import read_scalars

    scalars = read_scalars(tmp_path / "tensorboard")
    assert {"loss", "terms/L_cls", "lr", "throughput/samples_per_s", "time/step_time_s"} <= set(scalars)
    # event files store float32: compare with the float32 rounding of what was sent
    assert scalars["loss"] == [(m["step"], float(np.float32(m["loss"]))) for m in metrics]
    assert scalars["terms/L_cls"] == [(m["step"], float(np.float32(m["terms"]["L_cls"]))) for m in metrics]


def test_worker_resumes_from_a_checkpoint(controller, tmp_path):
    from dmfr.checkpoint import latest_checkpoint

    cfg = config(steps=4, sampler={"chunk_steps": 2, "credit": 2})
    with running_worker(controller, tmp_path) as (proc, s):
        s.handshake(cfg)
        s.plan(0, 2, last=False)
        s.plan(2, 2, last=True)
        s.drain_events("bye")
        assert proc.wait(60) == 0
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    cfg["train"]["steps"] = 6
    with running_worker(controller, tmp_path) as (proc, s):
        ready = s.handshake(cfg, resume={"checkpoint": str(ckpt)})
        assert ready.body["start_step"] == 4
        s.plan(4, 2, last=True)
        bye = s.drain_events("bye")
        assert proc.wait(60) == 0
    assert bye.body.pop("train_time_s") > 0
    assert bye.body == {"reason": "completed", "last_step": 5}
    assert [m["step"] for m in s.of("metrics")] == [5, 6]
    from dmfr.tensorboard_log import read_scalars

    # both attempts wrote to one tensorboard/ directory; the resume purged nothing it kept (4 < 5)
    assert [step for step, _ in read_scalars(tmp_path / "tensorboard")["loss"]] == [1, 2, 3, 4, 5, 6]


def test_worker_resumes_past_a_truncated_newest_checkpoint(controller, tmp_path):
    """Issue #12, item 2: the newest checkpoint does not load, an older one does: the rank resumes
    from the older one, says which it skipped and why, and the killed write's temporary is gone."""
    cfg = config(steps=4, sampler={"chunk_steps": 2, "credit": 2})
    cfg["train"]["checkpoint_every"] = 2
    cfg["runtime"]["controller_timeout_s"] = 300  # this stand-in sends no heartbeats; the box may be busy
    with running_worker(controller, tmp_path) as (proc, s):
        s.handshake(cfg)
        s.plan(0, 2, last=False)
        s.plan(2, 2, last=True)
        s.drain_events("bye")
        assert proc.wait(60) == 0
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step-*.pt")) == ["step-00000002.pt", "step-00000004.pt"]
    newest = checkpoints / "step-00000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (checkpoints / ".step-00000006.pt.k1ll3d.tmp").write_bytes(b"x" * 4096)  # a write that was killed
    cfg["train"]["steps"] = 6
    with running_worker(controller, tmp_path) as (proc, s):
        ready = s.handshake(cfg, resume={"checkpoint": str(newest)})
        assert ready.body["start_step"] == 2
        s.plan(2, 4, last=True)
        bye = s.drain_events("bye")
        assert proc.wait(60) == 0
        log = proc.stderr.read()
    assert bye.body["reason"] == "completed" and bye.body["last_step"] == 5  # bye: a 0-based index
    assert [m["step"] for m in s.of("metrics")] == [3, 4, 5, 6]  # steps completed
    assert f"resume skips {newest}: {newest}: corrupt, truncated or not a checkpoint" in log
    assert f"resuming from {checkpoints / 'step-00000002.pt'} instead of {newest}" in log
    assert not list(checkpoints.glob(".*.tmp"))


@pytest.mark.parametrize("checkpoint", [False, True])
def test_stop_finishes_the_planned_steps(controller, tmp_path, checkpoint):
    with running_worker(controller, tmp_path) as (proc, s):
        s.handshake(config(steps=40, sampler={"chunk_steps": 4, "credit": 2}))
        s.plan(0, 4, last=False)
        s.plan(4, 4, last=False)
        controller.send(s.identity, "stop", {"reason": "canceled", "final_step": 7, "checkpoint": checkpoint})
        bye = s.drain_events("bye")
        assert proc.wait(60) == 0
    assert bye.body.pop("train_time_s") > 0
    assert bye.body == {"reason": "stopped", "last_step": 7}
    assert [m["step"] for m in s.of("metrics")] == list(range(1, 9))
    # a checkpoint only when the stop asks for one; it resumes at step 8
    assert [c["step"] for c in s.of("checkpoint-saved")] == ([8] if checkpoint else [])
    if checkpoint:
        from dmfr.checkpoint import load_checkpoint

        assert load_checkpoint(s.of("checkpoint-saved")[0]["path"])["step"] == 8


def test_an_exception_is_reported_with_its_traceback(controller, tmp_path):
    with running_worker(controller, tmp_path) as (proc, s):
        s.control()  # hello
        cfg = config()
        cfg["model"]["arch"] = "r_missing"
        controller.send(s.identity, "config", {"config": cfg, "resume": None})
        bye = s.drain_events("bye")
        assert proc.wait(60) == 1
    (error,) = s.of("error")
    assert error["type"] == "ValueError" and "r_missing" in error["message"] and "Traceback" in error["traceback"]
    assert error["input_error"] is False  # not a ConfigError/DataError: a fault the service may retry
    assert bye.body["reason"] == "error"


def test_a_silent_controller_makes_the_rank_exit_with_code_3(controller, tmp_path):
    cfg = config(steps=40, runtime={**config()["runtime"], "controller_timeout_s": 1.0})
    with running_worker(controller, tmp_path) as (proc, s):
        s.handshake(cfg)  # then no plan and no heartbeat ever again
        t0 = time.monotonic()
        code = proc.wait(30)
        took = time.monotonic() - t0
    assert code == 3
    assert took < 6.0, took
    assert "assuming it is gone" in proc.stderr.read()


def test_sigterm_ends_the_rank_promptly(controller, tmp_path):
    with running_worker(controller, tmp_path) as (proc, s):
        s.handshake(config(steps=40))
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = proc.wait(20)
        took = time.monotonic() - t0
        bye = s.drain_events("bye", timeout=5)
    assert code == 143 and took < 6.0
    assert bye.body == {"reason": "stopped", "last_step": -1}


def test_local_plans_prints_a_summary(tmp_path):
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(json.dumps(config(steps=4)))
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "LOCAL_RANK"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-m", "dmfr.worker", "--local-plans", "--config", str(cfg_path)],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["mode"] == "local-plans" and summary["steps"] == 4 and summary["samples_per_s"] > 0
