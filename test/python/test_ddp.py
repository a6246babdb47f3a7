"""DDP correctness: optimizer steps on 2 real torchrun ranks (gloo, CPU) equal single-process steps
on the concatenated batch, parameters within 1e-5.

BatchNorm is the one layer that couples the samples of a batch. SyncBatchNorm needs CUDA in this
torch (it refuses CPU tensors), and arcface_torch trains with plain BatchNorm under DDP, so each
rank normalises with its shard's statistics. The test therefore checks honest equalities:
- frozen_bn: BN normalises with running statistics (eval mode): the 2-rank steps equal the steps
  on the whole concatenated batch — the literal statement;
- ghost_bn: BN in training mode: the 2-rank steps equal single-process steps on the concatenated
  batch split into the same two micro-batches (train.grad_accum = 2), which is what DDP computes.
- ghost_bn_accum: as ghost_bn with train.grad_accum = 2 on each rank (DDP's no_sync path).
All use two steps, so SGD momentum and weight decay enter too. Also: with a
Partial FC head each rank keeps its own block of class centres, and gradient clipping and fp16
overflow skips are decided for all ranks alike.
"""
from pathlib import Path

import numpy as np
import torch

from ddp_common import GLOBAL_BATCHES, make_trainer
from ranks import run_ranks

HERE = Path(__file__).resolve().parent


def single_process(mode: str, grad_accum: int) -> dict[str, torch.Tensor]:
    trainer = make_trainer(mode, grad_accum=grad_accum)
    for step, batch in enumerate(GLOBAL_BATCHES):
        trainer.train_step(step, batch, np.zeros(len(batch), np.int16))
    return {k: v.detach() for k, v in trainer.method.named_parameters()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_rank_steps_equal_single_process_steps(tmp_path):
    proc = run_ranks(HERE / "ddp_step_ranks.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.set_num_threads(1)
    initial = {k: v.detach().clone() for k, v in make_trainer("frozen_bn").method.named_parameters()}
    # ghost_bn_accum: each rank accumulates 2 micro-batches of 4 (no_sync on the first), the
    # reference the whole batch in 4 micro-batches of 4.
    for mode, grad_accum in (("frozen_bn", 1), ("ghost_bn", 2), ("ghost_bn_accum", 4)):
        rank0 = torch.load(tmp_path / f"{mode}-rank0.pt")
        rank1 = torch.load(tmp_path / f"{mode}-rank1.pt")
        assert max_diff(rank0, rank1) == 0.0, f"{mode}: DDP ranks diverged"
        reference = single_process(mode, grad_accum)
        assert max_diff(rank0, initial) > 1e-3, f"{mode}: the steps did not move the parameters"
        assert max_diff(rank0, reference) < 1e-5, mode
    # Partial FC: the backbone stays replicated, each rank's block of class centres is its own.
    # Both blocks start from the same values (same seed on every rank, as arcface_torch); had DDP
    # averaged their gradients they would still be equal after the step.
    pfc = [torch.load(tmp_path / f"partial_fc-rank{r}.pt") for r in (0, 1)]
    assert max_diff(pfc[0]["backbone"], pfc[1]["backbone"]) == 0.0
    assert all(not torch.equal(p["before"], p["after"]) for p in pfc)
    assert not torch.equal(pfc[0]["after"], pfc[1]["after"])
    # Clipping with Partial FC: one norm over the replicated gradients and both ranks' centres,
    # so the backbone stays replicated; the clip was active (the step differs from unclipped).
    clipped = [torch.load(tmp_path / f"partial_fc_clip-rank{r}.pt") for r in (0, 1)]
    assert max_diff(clipped[0], clipped[1]) == 0.0, "Partial FC + clipping: ranks diverged"
    assert max_diff(clipped[0], pfc[0]["backbone"]) > 1e-6
    # fp16 with Partial FC: only rank 0's centres overflowed, and both ranks skipped and backed off.
    fp16 = [torch.load(tmp_path / f"partial_fc_fp16-rank{r}.pt") for r in (0, 1)]
    for r, result in enumerate(fp16):
        assert max_diff(result["before"], result["after"]) == 0.0, f"rank {r} stepped despite rank 0's overflow"
        assert result["scale"] == 0.5, r
    # The two BatchNorm modes are really different computations: the check would notice a mix-up.
    assert max_diff(single_process("frozen_bn", 1), single_process("ghost_bn", 2)) > 1e-4


def test_ranks_agree_to_stop_when_only_one_has_heard_the_stop(tmp_path):
    import json

    proc = run_ranks(HERE / "ddp_stop_ranks.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"stop-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["last_step"] for r in results] == [5, 5]
    assert [r["reason"] for r in results] == ["stopped", "stopped"]
    assert results[0]["losses"] == results[1]["losses"] and len(results[0]["losses"]) == 1  # step 3 logged


def test_resume_on_another_rank_count_continues_the_same_run(tmp_path):
    """2 ranks stop at step 3 with a checkpoint; one process resumes it with grad_accum 2 (its two
    micro-batches are the two ranks' shards, so BatchNorm sees the same statistics) and ends with
    the parameters of the uninterrupted 2-rank run."""
    proc = run_ranks(HERE / "resume_ranks.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from dmfr.checkpoint import load_checkpoint
    from dmfr.trainer import Trainer, local_plans
    from resume_ranks import CONFIG
    from tiny_data import TinyFaceDataset, tiny_config

    state = load_checkpoint(sorted((tmp_path / "ckpt").glob("step-*.pt"))[-1])
    assert state["step"] == 3
    config = tiny_config(**{**CONFIG, "train": {**CONFIG["train"], "nproc": 1, "grad_accum": 2}})
    ds = TinyFaceDataset()
    resumed = Trainer(config, ds)
    start = resumed.load_state_dict(state)
    resumed.run(local_plans(config, ds.labels, 0, 1, start_step=start), start, final_checkpoint=False)
    whole = torch.load(tmp_path / "whole.pt")
    for name, p in resumed.method.named_parameters():
        assert torch.allclose(p.detach(), whole[name], atol=1e-6, rtol=0), name
