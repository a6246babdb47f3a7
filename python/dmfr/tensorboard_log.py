"""TensorBoard event files of a run: `<run_dir>/tensorboard/`, written by rank 0.

Where arcface_torch (`utils_logging` + `torch.utils.tensorboard.SummaryWriter`) and TFace users
look at a run: `tensorboard --logdir runs/` shows every run under its directory name. Scalars, by
steps completed (docs/protocol.md, "Step numbering"): `loss`, `terms/<name>` for each of the
method's loss terms (the same nesting as the metrics records), `lr`, `throughput/samples_per_s`,
`time/step_time_s`, `time/plan_wait_s`; evaluation results as `eval/<protocol>/<name>` at the step
of the checkpoint they evaluated (dmfr.cli.eval).

Rank 0 hands each metrics body to a thread of its own (RunScalars), which imports TensorBoard and
feeds SummaryWriter (whose EventFileWriter thread writes the files), so the training loop never
waits on either.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from dmfr.errors import ConfigError

log = logging.getLogger("dmfr.tensorboard")
DIR_NAME = "tensorboard"


def _summary_writer(log_dir: Path, purge_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch imports the `tensorboard` package lazily
        raise ConfigError(f"train.tensorboard is on but TensorBoard cannot be imported ({exc}); "
                          "install the `tensorboard` package (requirements.txt) or set train.tensorboard=false") from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step, flush_secs=10)


class RunScalars:
    """Scalars of one run, written by a thread of its own: `metrics` only queues the body, and
    importing TensorBoard (seconds on a busy host) happens on that thread too, so neither the
    training loop nor the rank's first steps wait for it. `resume_step`: the steps completed at a
    resume; TensorBoard then drops the earlier attempt's values past it (purge_step), so a resumed
    run shows one curve."""

    def __init__(self, run_dir: str | os.PathLike, resume_step: int = 0):
        import importlib.util
        import queue
        import threading

        if importlib.util.find_spec("tensorboard") is None:  # fail up front, cheaply
            raise ConfigError("train.tensorboard is on but the `tensorboard` package is not installed "
                              "(requirements.txt); install it or set train.tensorboard=false")
        self.log_dir = Path(run_dir) / DIR_NAME
        self._purge_step = resume_step + 1 if resume_step > 0 else None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.writer = None
        self._thread = threading.Thread(target=self._run, name="dmfr-tensorboard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.writer = _summary_writer(self.log_dir, self._purge_step)
        except Exception as exc:  # noqa: BLE001 - never fail the training over its event files
            log.error("TensorBoard event files disabled: %s", exc)
            return
        while (body := self._queue.get()) is not None:
            self._write(body)
        self.writer.close()  # flushes and ends SummaryWriter's own writer thread

    def _scalar(self, tag: str, value, step: int) -> None:
        if value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, float(value), global_step=step)

    def metrics(self, body: dict) -> None:
        """One `metrics` message body (docs/protocol.md): `step` is the steps completed."""
        self._queue.put(body)

    def _write(self, body: dict) -> None:
        step = int(body["step"])
        self._scalar("loss", body.get("loss"), step)
        for name, value in (body.get("terms") or {}).items():
            self._scalar(f"terms/{name}", value, step)
        self._scalar("lr", body.get("lr"), step)
        self._scalar("throughput/samples_per_s", body.get("samples_per_s"), step)
        self._scalar("time/step_time_s", body.get("step_time_s"), step)
        self._scalar("time/plan_wait_s", body.get("plan_wait_s"), step)

    def close(self, timeout_s: float = 120.0) -> None:
        """Writes what is queued and closes the files (waits at most `timeout_s`)."""
        self._queue.put(None)
        self._thread.join(timeout_s)


def write_evaluation(run_dir: str | os.PathLike, step: int, protocol: str, values: dict[str, float]) -> Path:
    """Appends an evaluation's numbers to the run's event files at `step` (steps completed)."""
    log_dir = Path(run_dir) / DIR_NAME
    writer = _summary_writer(log_dir, None)
    try:
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                writer.add_scalar(f"eval/{protocol}/{name}", float(value), global_step=step)
    finally:
        writer.close()
    return log_dir


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under `log_dir`, read back with TensorBoard's own reader
    (what `tensorboard --logdir` uses): {tag: [(step, value), …]} in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def checkpoint_run(checkpoint: str | os.PathLike) -> tuple[Path, int] | None:
    """(run_dir, step) of a checkpoint inside a run directory that writes event files
    (`<run_dir>/checkpoints/step-%08d.pt` with `<run_dir>/tensorboard/`), else None."""
    import re

    path = Path(checkpoint).resolve()
    m = re.fullmatch(r"step-(\d{8})\.pt", path.name)
    if not m or path.parent.name != "checkpoints" or not (path.parent.parent / DIR_NAME).is_dir():
        return None
    return path.parent.parent, int(m.group(1))
