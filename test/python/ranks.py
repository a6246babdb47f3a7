"""Starting a test's rank script under a real 2-rank torchrun (gloo, CPU)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PYTHONPATH = f"{HERE.parent.parent / 'python'}:{HERE}"  # the package, and the test helpers


def run_ranks(script: str | Path, *args: str | Path, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc-per-node N SCRIPT ARGS…`, one thread per
    rank; returns the finished process (output captured) for the caller to check."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=PYTHONPATH)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(script), *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
