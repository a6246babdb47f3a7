"""One training rank: `torchrun --standalone --nproc-per-node N -m dmfr.worker`.

With a controller (the default): hello → config → join the DDP group, build data and method →
ready (+ rank 0's dataset tables) → credit → train on the plans → metrics/heartbeats/
checkpoint-saved → bye (docs/protocol.md). Exit codes: 0 completed or stopped, 1 error,
3 controller lost, 143 SIGTERM.

`--local-plans --config FILE`: the same training loop fed by plans made in-process and no
controller at all (bench/controller_overhead.ts compares the two); rank 0 prints one JSON summary
line on stdout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import signal
import socket
import sys
import threading
import time
import traceback
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dmfr.data.registry import build_dataset
from dmfr.errors import ConfigError, DataError, DmfrError
from dmfr.trainer import PlanChunk, Trainer, local_plans, resolve_device
from dmfr.wire import ControllerLost, Endpoints, RankLink

log = logging.getLogger("dmfr.worker")

EXIT_OK, EXIT_ERROR, EXIT_CONTROLLER_LOST, EXIT_SIGTERM = 0, 1, 3, 143


# What gloo/NCCL raise when a peer process disappears mid-collective.
PEER_LOST_PATTERNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
                      "NCCL communicator was aborted", "Connection refused")
PEER_LOST_REPORT_DELAY_S = 3.0


def _is_peer_lost(e: BaseException) -> bool:
    network_error = getattr(dist, "DistNetworkError", None)
    return (network_error is not None and isinstance(e, network_error)) or \
        any(p in str(e) for p in PEER_LOST_PATTERNS)


class Terminated(BaseException):
    """SIGTERM arrived (from the controller's stop escalation or torchrun)."""


def _on_sigterm(signum, frame):
    # Leave promptly even if the main thread is stuck in a collective the exception cannot reach.
    timer = threading.Timer(5.0, os._exit, args=(EXIT_SIGTERM,))
    timer.daemon = True
    timer.start()
    raise Terminated()


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _setup_runtime(config: dict, world_size: int) -> None:
    threads = config["runtime"].get("threads_per_rank", 0)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // max(1, local_world)))
    if config["train"].get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)


def _join_group(device: torch.device, world_size: int) -> None:
    if "MASTER_ADDR" not in os.environ or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=5))


def _leave_group() -> None:
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - peers may be gone already
            pass


def _hello_device(local_rank: int) -> str:
    """The device named in `hello`, before the config has arrived: DMFR_DEVICE when the controller
    sets it from runtime.device, else what `auto` would pick."""
    setting = os.environ.get("DMFR_DEVICE", "auto")
    try:
        return str(resolve_device(setting, local_rank))
    except ConfigError:
        return "cpu"


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _ready_body(rank: int, dataset, start_step: int) -> tuple[dict, dict | None]:
    body = {"rank": rank, "num_samples": len(dataset), "num_classes": int(dataset.num_classes),
            "domains": [{k: v for k, v in vars(d).items() if v is not None} for d in dataset.domain_info],
            "start_step": start_step}
    buffers = None
    if rank == 0:
        buffers = {"labels": np.asarray(dataset.labels, dtype=np.int32),
                   "domains": np.asarray(dataset.domains, dtype=np.int16),
                   "pair": np.asarray(dataset.pair, dtype=np.int32)}
    return body, buffers


def _plan_source(link: RankLink, start_step: int, first_credit: int):
    """Plan chunks from the controller, granting one credit per chunk taken (docs/protocol.md)."""
    link.send("credit", {"chunks": first_credit})
    expected = start_step
    while True:
        t0 = time.perf_counter()
        while True:
            stop = link.stop_requested
            if stop is not None and stop["final_step"] < expected:
                return
            msg = link.recv(timeout=0.5)
            if msg is not None and msg.type == "plan":
                break
            if msg is not None and msg.type == "config":
                log.warning("ignoring a second config message")
        chunk = PlanChunk.from_message(msg.body, msg.buffers)
        chunk.wait_s = time.perf_counter() - t0
        if log.isEnabledFor(logging.DEBUG):
            log.debug("plan steps %d..%d, shard %d, indices crc32 %08x", chunk.first_step,
                      chunk.first_step + chunk.num_steps - 1, chunk.shard_size, zlib.crc32(chunk.indices.tobytes()))
        if chunk.first_step > expected:
            raise RuntimeError(f"plan gap: expected step {expected}, got a chunk from step {chunk.first_step}")
        link.send("credit", {"chunks": 1})
        if chunk.first_step + chunk.num_steps <= expected:
            continue  # entirely before the resume point
        expected = chunk.first_step + chunk.num_steps
        yield chunk
        if chunk.last:
            return


def run_with_controller(run_dir: str | None) -> int:
    rank, local_rank, world_size = _dist_env()
    endpoints = Endpoints.from_env()
    link = RankLink(endpoints, rank).start()
    step_box = {"step": -1}
    scalars = None  # rank 0's TensorBoard writer (train.tensorboard)
    try:
        link.send("hello", {"rank": rank, "local_rank": local_rank, "world_size": world_size,
                            "host": socket.gethostname(), "pid": os.getpid(), "device": _hello_device(local_rank),
                            "torch_version": torch.__version__.split("+")[0],
                            "python_version": platform.python_version()})
        while True:
            msg = link.recv(timeout=0.5)
            if msg is not None and msg.type == "config":
                break
            if link.stop_requested is not None:
                link.send("bye", {"reason": "stopped", "last_step": -1})
                return EXIT_OK
        config, resume = msg.body["config"], msg.body.get("resume")
        rt = config["runtime"]
        link.configure(rt.get("heartbeat_s", 1.0), rt.get("controller_timeout_s", 15.0))
        _setup_runtime(config, world_size)
        device = resolve_device(rt.get("device", "auto"), local_rank)
        _join_group(device, world_size)
        dataset = build_dataset(config)
        run_dir = run_dir or os.environ.get("DMFR_RUN_DIR")
        trainer = Trainer(config, dataset, device, rank, world_size,
                          checkpoint_dir=Path(run_dir) / "checkpoints" if run_dir else None)
        start_step = 0
        if resume:
            from dmfr.checkpoint import load_for_resume

            state, used, skipped = load_for_resume(resume["checkpoint"])
            for path, why in skipped:
                log.warning("rank %d: resume skips %s: %s", rank, path, why)
            if skipped:
                log.warning("rank %d: resuming from %s instead of %s", rank, used, resume["checkpoint"])
            start_step = trainer.load_state_dict(state)
        step_box["step"] = start_step - 1
        link.last_step = start_step - 1
        body, buffers = _ready_body(rank, dataset, start_step)
        link.send("ready", body, buffers)
        if rank == 0 and run_dir and config["train"].get("tensorboard", True):
            from dmfr.tensorboard_log import RunScalars  # starts its own thread; returns at once

            scalars = RunScalars(run_dir, resume_step=start_step)

        def on_step(step: int) -> None:
            step_box["step"] = link.last_step = step
            if link.lost.is_set():
                raise ControllerLost("the controller went silent")

        def on_metrics(s) -> None:
            if rank == 0:
                # JSON has no NaN/Infinity: a non-finite value travels as null (ts/wire/schemas.ts)
                body = {"step": s.step, "loss": _finite(s.loss), "lr": s.lr,
                        "samples_per_s": s.samples_per_s, "plan_wait_s": s.plan_wait_s,
                        "step_time_s": s.step_time_s, "terms": {k: _finite(v) for k, v in s.terms.items()}}
                link.send("metrics", body)
                if scalars is not None:
                    scalars.metrics(body)

        def on_checkpoint(step: int, path: Path, size: int) -> None:
            link.send("checkpoint-saved", {"step": step, "path": str(path), "bytes": size})

        def stop_at() -> int | None:
            return None if link.stop_requested is None else int(link.stop_requested["final_step"])

        def final_checkpoint(result) -> bool:
            return result.reason == "completed" or bool((link.stop_requested or {}).get("checkpoint"))

        result = trainer.run(_plan_source(link, start_step, config["sampler"].get("credit", 4)), start_step,
                             on_metrics=on_metrics, on_checkpoint=on_checkpoint, on_step=on_step,
                             stop_at=stop_at, final_checkpoint=final_checkpoint)
        log.info("rank %d %s after %d steps: %.1f samples/s, %.3f s waiting for plans", rank, result.reason,
                 result.last_step, result.samples_per_s, result.plan_wait_s)
        link.send("bye", {"reason": result.reason, "last_step": result.last_step, "train_time_s": result.train_time_s})
        return EXIT_OK
    except ControllerLost as e:
        log.error("rank %d: %s; exiting", rank, e)
        link.send("bye", {"reason": "controller_lost", "last_step": step_box["step"]})  # in case it is only slow
        return EXIT_CONTROLLER_LOST
    except Terminated:
        log.warning("rank %d: SIGTERM; exiting", rank)
        link.send("bye", {"reason": "stopped", "last_step": step_box["step"]})
        return EXIT_SIGTERM
    except BaseException as e:  # noqa: BLE001 - reported to the controller, then exit 1
        if link.lost.is_set():
            log.error("rank %d: %r after the controller was lost", rank, e)
            return EXIT_CONTROLLER_LOST
        tb = traceback.format_exc()
        log.error("rank %d failed: %s", rank, tb if not isinstance(e, DmfrError) else e)
        message, kind = str(e) or type(e).__name__, type(e).__name__
        if _is_peer_lost(e):
            # Another rank went away mid-collective: that rank's death is the cause, not this
            # error. Give the controller (and torchrun) time to see it first, then report.
            message, kind = f"another rank went away during a collective: {message}", "PeerLost"
            time.sleep(PEER_LOST_REPORT_DELAY_S)
        # A ConfigError/DataError fails the same way on every launch: say so, so it is not retried.
        link.send("error", {"message": message, "type": kind, "traceback": tb, "step": step_box["step"] + 1,
                            "input_error": isinstance(e, (ConfigError, DataError))})
        link.send("bye", {"reason": "error", "last_step": step_box["step"]})
        return EXIT_ERROR
    finally:
        if scalars is not None:
            scalars.close()
        link.close(flush=not link.lost.is_set())
        _leave_group()


def _read_config(path: str) -> dict:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def run_local(config_path: str, steps: int | None) -> int:
    rank, local_rank, world_size = _dist_env()
    config = _read_config(config_path)
    if steps:
        config["train"]["steps"] = steps
    _setup_runtime(config, world_size)
    device = resolve_device(config["runtime"].get("device", "auto"), local_rank)
    try:
        _join_group(device, world_size)
        dataset = build_dataset(config)
        trainer = Trainer(config, dataset, device, rank, world_size)

        def timed(chunks):
            while True:
                t0 = time.perf_counter()
                chunk = next(chunks, None)
                if chunk is None:
                    return
                chunk.wait_s = time.perf_counter() - t0
                yield chunk

        result = trainer.run(timed(local_plans(config, dataset.labels, rank, world_size)), 0, final_checkpoint=False)
        if rank == 0:
            print(json.dumps({"mode": "local-plans", "status": result.reason, "world_size": world_size,
                              "steps": result.last_step + 1, "samples_per_s": result.samples_per_s,
                              "steps_per_s": (result.last_step + 1) / max(result.train_time_s, 1e-9),
                              "train_time_s": result.train_time_s, "plan_wait_s": result.plan_wait_s,
                              "final_loss": result.losses[-1] if result.losses else None}), flush=True)
        return EXIT_OK
    finally:
        _leave_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmfr.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--local-plans", action="store_true", help="no controller: plans made in-process")
    parser.add_argument("--config", help="resolved run config (JSON or YAML), for --local-plans")
    parser.add_argument("--steps", type=int, help="override train.steps (--local-plans)")
    parser.add_argument("--run-dir", help="run directory for checkpoints (default: $DMFR_RUN_DIR)")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    level = os.environ.get("DMFR_LOG_LEVEL", "info").upper()  # shared with the TypeScript side (pino: lower case)
    known = isinstance(logging.getLevelName(level), int)  # (getLevelNamesMapping needs Python 3.11)
    logging.basicConfig(level=level if known else "INFO",
                        format=f"%(asctime)s rank{rank} %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.local_plans:
            if not args.config:
                parser.error("--local-plans needs --config FILE")
            return run_local(args.config, args.steps)
        return run_with_controller(args.run_dir)
    except Terminated:
        return EXIT_SIGTERM
    except (DmfrError, ValueError) as e:
        print(f"dmfr.worker: {e}", file=sys.stderr)
        return EXIT_ERROR


def exit_now(code: int) -> None:
    """Leave without interpreter teardown once everything is sent and closed: under load, gloo's
    and ZeroMQ's background threads have aborted a finished process from static destructors
    ("terminate called without an active exception"), turning a completed rank into a failed one."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
