"""The training loop (python/dmfr/trainer.py) on a tiny in-memory dataset."""
import numpy as np
import pytest
import torch
from torch import nn

from dmfr.trainer import Trainer, flip_mask, local_plans
from tiny_data import TinyFaceDataset, one_thread, params, tiny_config  # noqa: F401 - one_thread: autouse fixture


def test_loss_falls():
    config = tiny_config(train={"steps": 40, "batch_size": 16})
    ds = TinyFaceDataset()
    trainer = Trainer(config, ds)
    logged = []
    result = trainer.run(local_plans(config, ds.labels, 0, 1), on_metrics=logged.append)
    assert result.reason == "completed" and result.last_step == 39
    assert [s.step for s in logged] == list(range(1, 41))  # steps completed
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.5 * first, (first, last)
    assert all(s.samples_per_s > 0 and s.step_time_s > 0 and "L_cls" in s.terms for s in logged)


def freeze_bn(trainer):
    for m in trainer.method.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def test_grad_accumulation_of_two_halves_equals_one_full_step():
    # BatchNorm statistics of a half batch differ from the full batch's, so BN normalises with its
    # running statistics here (see test_ddp.py); clipping is off so it cannot hide a wrong scale.
    # One step, comparing the gradients the optimizer used: that is what accumulation must get right.
    batch = np.random.default_rng(5).permutation(64)[:16].astype(np.int32)
    results = []
    for accum in (1, 2):
        trainer = Trainer(tiny_config(optim={"clip_grad_norm": 0}, train={"grad_accum": accum}), TinyFaceDataset())
        freeze_bn(trainer)
        terms = trainer.train_step(0, batch, np.zeros(16, np.int16))
        grads = {k: p.grad.detach().clone() for k, p in trainer.method.named_parameters() if p.grad is not None}
        results.append((grads, terms["loss"]))
    (full, loss_full), (accum, loss_accum) = results
    # The two paths are the same sums in another order (16 samples at once, or 8 + 8 then added),
    # and the kernels may also reduce in another order for a batch of 8 than of 16. In float32
    # (u = 2**-24), any order of a sum of n terms is within γ_n = n·u / (1 − n·u) of the exact
    # value, relative to the terms' magnitude (Higham, Accuracy and Stability of Numerical
    # Algorithms, 2nd ed., §4.2), whatever order this machine's kernels and thread count pick.
    # The longest reduction here is a first-layer weight gradient over all 16 × 32 × 32 input
    # positions, so n = 16384 and γ_n ≈ 9.8e-4, taken relative to each gradient's largest
    # element. Wrong accumulation is far outside it: a missing 1/grad_accum doubles the gradient,
    # a lost micro-batch halves it (relative error 1 or 0.5).
    u = 2.0 ** -24
    n = 16 * 32 * 32
    gamma = n * u / (1 - n * u)
    assert full.keys() == accum.keys() and full
    for k in full:
        scale = float(full[k].abs().max())
        assert scale > 0, k
        assert float((full[k] - accum[k]).abs().max()) <= gamma * scale, k
    assert loss_accum == pytest.approx(loss_full, rel=gamma)


def test_grad_accum_must_divide_the_shard():
    trainer = Trainer(tiny_config(train={"grad_accum": 3}), TinyFaceDataset())
    with pytest.raises(Exception, match="grad_accum=3"):
        trainer.train_step(0, np.arange(16, dtype=np.int32), np.zeros(16, np.int16))


def test_gradient_is_clipped():
    trainer = Trainer(tiny_config(optim={"clip_grad_norm": 1e-3, "momentum": 0, "weight_decay": 0, "lr": 1.0}),
                      TinyFaceDataset())
    before = params(trainer)
    trainer.train_step(0, np.arange(16, dtype=np.int32), np.zeros(16, np.int16))
    after = params(trainer)
    # plain SGD with lr 1: the update is the clipped gradient, of norm ≤ 1e-3
    norm = torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before))
    assert 0 < float(norm) <= 1e-3 * 1.0001


def test_resume_from_a_checkpoint_continues_bitwise(tmp_path):
    config = tiny_config(train={"steps": 6, "checkpoint_every": 3, "batch_size": 16},
                         optim={"schedule": "step", "milestones": [4], "warmup_steps": 2})
    ds = TinyFaceDataset()
    saved = []
    whole = Trainer(config, ds, checkpoint_dir=tmp_path / "a")
    whole.run(local_plans(config, ds.labels, 0, 1), on_checkpoint=lambda *a: saved.append(a))
    assert [s[0] for s in saved] == [3, 6]  # (steps completed, path, bytes)
    assert [s[1].name for s in saved] == ["step-00000003.pt", "step-00000006.pt"]  # the same number
    from dmfr.checkpoint import load_checkpoint

    state = load_checkpoint(saved[0][1])
    assert state["step"] == 3 and state["sampler"] == {"next_step": 3} and state["version"] == 1
    resumed = Trainer(config, ds, checkpoint_dir=tmp_path / "b")
    start = resumed.load_state_dict(state)
    assert start == 3
    resumed.run(local_plans(config, ds.labels, 0, 1, start_step=start), start)
    a, b = params(whole), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.scheduler.get_last_lr() == whole.scheduler.get_last_lr()


def test_stop_at_final_step_and_log_every():
    config = tiny_config(train={"steps": 20, "log_every": 3}, optim={"schedule": "step", "milestones": [4],
                                                                       "warmup_steps": 2, "lr": 0.2})
    ds = TinyFaceDataset()
    logged = []
    result = Trainer(config, ds).run(local_plans(config, ds.labels, 0, 1), on_metrics=logged.append,
                                     stop_at=lambda: 7)
    assert result.reason == "stopped" and result.last_step == 7
    assert [s.step for s in logged] == [3, 6]  # steps completed
    # warm-up 0.2·k/2 for k < 2, then 0.2, ×0.1 from step 4: the lr each logged step ran at
    assert [s.lr for s in logged] == pytest.approx([0.2, 0.02])


def test_flip_mask_is_seeded_per_sample_and_step():
    idx = np.arange(4000, dtype=np.int32)
    m = flip_mask(0, 5, idx)
    assert 0.45 < m.mean() < 0.55
    assert np.array_equal(m, flip_mask(0, 5, idx))
    assert np.array_equal(m[1000:2000], flip_mask(0, 5, idx[1000:2000]))  # independent of the shard split
    assert not np.array_equal(m, flip_mask(0, 6, idx)) and not np.array_equal(m, flip_mask(1, 5, idx))


def test_both_sides_of_a_pair_share_one_flip():
    # Issue #10: L_flt must see a pair differ only by the modality, never by a mirror image. A shard
    # of 8 Δc = 0 pairs (positions 2q, 2q+1, as the filter sampler lays them out) and 8 unpaired
    # samples, over 64 steps: every pair's two images are flipped alike, while unpaired samples
    # (and the pairs as a whole) still flip about half the time.
    ds = TinyFaceDataset()
    trainer = Trainer(tiny_config(), ds)
    indices = np.random.default_rng(1).permutation(len(ds))[:24].astype(np.int32)
    pair = np.full(24, -1, np.int32)
    pair[0:16:2], pair[1:16:2] = np.arange(1, 16, 2), np.arange(0, 16, 2)
    raw = ds.load(indices)
    flipped = []
    for step in range(64):
        images = trainer.load_shard(step, indices, pair)
        was = np.array([not torch.equal(images[q], raw[q]) for q in range(24)])
        assert all(torch.equal(images[q], raw[q].flip(-1)) for q in np.flatnonzero(was))
        assert np.array_equal(was[0:16:2], was[1:16:2]), f"step {step}: a pair flipped apart"
        flipped.append(was)
    rate = np.mean(flipped, axis=0)
    # 64 fair coin flips per sample: P(a count outside [12, 52]) < 1e-6 each
    assert rate.min() > 12 / 64 and rate.max() < 52 / 64, rate


def test_local_plans_cover_each_epoch_once_in_equal_shards():
    labels = np.zeros(50, np.int32)
    config = tiny_config(train={"steps": 9, "batch_size": 12}, sampler={"chunk_steps": 2})
    shards = [list(local_plans(config, labels, r, 3)) for r in range(3)]
    assert [c.first_step for c in shards[0]] == [0, 2, 4, 6, 8] and shards[0][-1].last
    steps = [np.concatenate([np.concatenate([c.indices[i] for c in shards[r]
                                             for i in range(c.num_steps)]) for r in range(3)])]
    by_step = {}
    for r in range(3):
        for c in shards[r]:
            assert c.indices.shape == (c.num_steps, 4)
            for i in range(c.num_steps):
                by_step.setdefault(c.first_step + i, []).append(c.indices[i])
    epoch0 = np.concatenate([np.concatenate(by_step[k]) for k in range(4)])  # 50 // 12 = 4 steps per epoch
    assert len(set(epoch0.tolist())) == 48
    assert len(steps[0]) == 9 * 12


def test_train_init_starts_from_a_pretrained_backbone(tmp_path):
    ds = TinyFaceDataset()
    config = tiny_config(train={"steps": 2})
    pretrained = Trainer(config, ds, checkpoint_dir=tmp_path)
    pretrained.run(local_plans(config, ds.labels, 0, 1))
    from dmfr.checkpoint import latest_checkpoint

    init = tiny_config(train={"steps": 2, "init": str(latest_checkpoint(tmp_path))}, seed=7)
    fresh = Trainer(init, ds)
    a, b = pretrained.method.state_dict(), fresh.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("backbone."))
    assert not torch.equal(a["head.weight"], b["head.weight"])  # heads start fresh


def test_a_plan_index_outside_the_dataset_is_named():
    trainer = Trainer(tiny_config(), TinyFaceDataset())
    with pytest.raises(ValueError, match="sample index 64 is outside the dataset's 64 samples"):
        trainer.train_step(3, np.array([1, 64], dtype=np.int32), np.zeros(2, np.int16))


def test_prefetching_loader_threads_train_identically():
    ds = TinyFaceDataset()
    results = []
    for workers in (0, 2):
        config = tiny_config(train={"steps": 7, "batch_size": 16}, data={"num_workers": workers},
                             sampler={"chunk_steps": 3})
        trainer = Trainer(config, ds)
        res = trainer.run(local_plans(config, ds.labels, 0, 1))
        results.append((params(trainer), res.losses))
    (a, la), (b, lb) = results
    assert la == lb and len(la) == 7
    assert all(torch.equal(a[k], b[k]) for k in a)
