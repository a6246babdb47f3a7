"""bench/gpu_bench.py's CPU smoke mode runs end to end (its figures are not checked: they say
nothing about a GPU), so the GPU benchmark's code path (Trainer with bf16 autocast and
channels_last, the plain loop, the FLOP count, the JSON report) cannot rot unnoticed between
the rare runs on a CUDA machine."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_smoke_run_reports_both_loops(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_bench.py"), "--device", "cpu", "--tiny",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    assert report["args"]["amp"] == "bf16" and report["args"]["channels_last"] is True
    (row,) = report["results"]
    assert row["arch"] == "r_tiny" and row["gflops_per_step"] > 0
    for loop in ("plain", "dmfr"):
        assert row[loop]["samples_per_s"] > 0 and row[loop]["tflops"] > 0
        assert row[loop]["peak_mem_gib"] is None and row[loop]["mfu"] is None  # no GPU figures on a CPU
    assert row["dmfr_over_plain"] > 0
    assert "dmfr/plain samples/s ratio" in proc.stdout


def test_cuda_mode_without_a_gpu_says_how_to_smoke_test():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the real benchmark is `bash bench/gpu.sh`")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_bench.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "no CUDA device: run with --device cpu --tiny" in proc.stderr
