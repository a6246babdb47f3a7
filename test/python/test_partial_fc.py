"""Partial FC on 2 real torchrun ranks (gloo, CPU) equals the full margin head."""
from pathlib import Path

import pytest

from ranks import run_ranks

HERE = Path(__file__).parent


def test_partial_fc_two_ranks_equals_full_head():
    proc = run_ranks(HERE / "partial_fc_ranks.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "partial fc ok" in proc.stdout


def test_partial_fc_needs_process_group():
    from dmfr.partial_fc import PartialFC

    with pytest.raises(RuntimeError, match="process group"):
        PartialFC(8, 10, sample_rate=0.5)


def test_shard_range_covers_all_classes():
    from dmfr.partial_fc import shard_range

    for classes in (1, 7, 10, 11, 1000):
        for world in (1, 2, 3, 8):
            ranges = [shard_range(classes, world, r) for r in range(world)]
            covered = [c for start, n in ranges for c in range(start, start + n)]
            assert covered == list(range(classes))


def test_checkpoint_gathers_every_shard_and_resumes(tmp_path):
    proc = run_ranks(HERE / "pfc_checkpoint_ranks.py", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("pfc checkpoint ok") == 2
    import numpy as np
    import torch

    from dmfr.checkpoint import load_checkpoint

    full = next(v for k, v in load_checkpoint(sorted(tmp_path.glob("step-*.pt"))[-1])["method"].items()
                if k.endswith("weight") and v.shape[0] == 10)
    shards = np.concatenate([np.load(tmp_path / "shard0.npy"), np.load(tmp_path / "shard1.npy")])
    assert torch.equal(full, torch.from_numpy(shards))
