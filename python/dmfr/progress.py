"""Progress of long Python verbs on stderr (embedding, evaluation, `data synth`, `data pack`), as
`dmfr run` shows it (ts/cli/progress.ts): on a terminal a tqdm bar; elsewhere (CI logs, pipes,
`--json`) plain lines — one at the start, then at most one every `every_s` seconds (10 s), and
one at the end — so a long command is never silent and its log stays short. stdout is untouched.
"""
from __future__ import annotations

import sys
import time


def _fmt(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """`with Progress(total, "embedding", unit="images") as p: … p.update(n)`."""

    def __init__(self, total: int, desc: str, unit: str = "items", every_s: float = 10.0, stream=None,
                 tty: bool | None = None, clock=time.monotonic):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s, self.clock = every_s, clock
        self.done = 0
        self.started = clock()
        self.last_line = self.started
        self._bar = None
        if tty if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)()):
            from tqdm import tqdm  # the field's bar: rate, ETA, terminal width

            self._bar = tqdm(total=self.total, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True)
        else:
            self._line(f"{self.done}/{self.total} {unit}")

    def _line(self, text: str) -> None:
        self.last_line = self.clock()
        self.stream.write(f"{self.desc}: {text}\n")
        self.stream.flush()

    def _describe(self) -> str:
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100 * self.done // self.total if self.total else 100
        eta = _fmt((self.total - self.done) / rate) if rate > 0 else "?"
        return f"{self.done}/{self.total} {self.unit} ({pct}%), {rate:.1f} {self.unit}/s, ETA {eta}"

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.clock() - self.last_line >= self.every_s:
            self._line(self._describe())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.last_line is not None:
            self._line(f"{self.done}/{self.total} {self.unit} in {_fmt(self.clock() - self.started)}")
            self.last_line = None  # once

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
