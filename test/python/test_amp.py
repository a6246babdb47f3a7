"""Mixed precision (`train.amp`) and `train.channels_last` in the trainer, on the CPU.

CPU autocast takes bf16 and fp16 and torch.amp.GradScaler("cpu") exists, so the code paths a GPU
run takes (arcface_torch: fp16 + GradScaler) train here for real.
"""
import numpy as np
import pytest
import torch
from torch import nn

from dmfr.checkpoint import load_checkpoint
from dmfr.errors import ConfigError
from dmfr.trainer import Trainer, local_plans
from tiny_data import TinyFaceDataset, one_thread, params, tiny_config  # noqa: F401 - one_thread: autouse fixture

# A step the GradScaler skips (inf/NaN gradients) leaves the optimizer unstepped while the
# scheduler still steps, as in arcface_torch; torch warns about that order the first time.
skipped_step_warning = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")


def watch_convs(trainer):
    """Records (input is channels_last, output dtype) of every Conv2d forward."""
    seen = []

    def hook(module, inputs, output):
        seen.append((inputs[0].is_contiguous(memory_format=torch.channels_last), output.dtype))

    for m in trainer.method.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    return seen


def test_bf16_with_channels_last_trains_in_bf16_on_nhwc_maps():
    config = tiny_config(train={"steps": 20, "amp": "bf16", "channels_last": True})
    ds = TinyFaceDataset()
    trainer = Trainer(config, ds)
    assert trainer.scaler is None  # bf16 needs no loss scaling
    seen = watch_convs(trainer)
    result = trainer.run(local_plans(config, ds.labels, 0, 1))
    assert result.reason == "completed" and len(result.losses) == 20
    assert np.all(np.isfinite(result.losses))
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.5 * first, (first, last)
    convs = sum(isinstance(m, nn.Conv2d) for m in trainer.method.modules())
    assert len(seen) == 20 * convs
    assert all(channels_last for channels_last, _ in seen)  # the images and every feature map
    assert {dtype for _, dtype in seen} == {torch.bfloat16}
    assert {p.dtype for p in trainer.method.parameters()} == {torch.float32}  # float32 master weights
    assert trainer.method.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@skipped_step_warning
def test_fp16_trains_with_a_grad_scaler():
    config = tiny_config(train={"steps": 12, "amp": "fp16"})
    ds = TinyFaceDataset()
    trainer = Trainer(config, ds)
    assert isinstance(trainer.scaler, torch.amp.GradScaler) and trainer.scaler.is_enabled()
    seen = watch_convs(trainer)
    result = trainer.run(local_plans(config, ds.labels, 0, 1))
    assert result.reason == "completed" and np.all(np.isfinite(result.losses))
    assert {dtype for _, dtype in seen} == {torch.float16}
    assert not any(channels_last for channels_last, _ in seen)  # channels_last is off by default
    assert {p.dtype for p in trainer.method.parameters()} == {torch.float32}
    assert np.mean(result.losses[-4:]) < 0.5 * result.losses[0]


@skipped_step_warning
def test_fp16_resume_restores_the_scaler_and_continues_bitwise(tmp_path):
    # The default initial scale (65536) overflows the tiny model's fp16 gradients for the first
    # steps, so by step 8 the scale has backed off and its growth tracker counts: a resume that
    # started the scaler afresh would skip step 8 and diverge.
    config = tiny_config(train={"steps": 12, "checkpoint_every": 8, "amp": "fp16", "channels_last": True},
                         optim={"schedule": "step", "milestones": [10], "warmup_steps": 2})
    ds = TinyFaceDataset()
    saved, scales = [], {}
    whole = Trainer(config, ds, checkpoint_dir=tmp_path / "a")
    whole.run(local_plans(config, ds.labels, 0, 1), on_checkpoint=lambda *a: saved.append(a),
              on_step=lambda k: scales.setdefault(k, whole.scaler.state_dict()))
    assert [s[0] for s in saved] == [8, 12]  # steps completed (docs/protocol.md, "Step numbering")
    state = load_checkpoint(saved[0][1])
    assert state["step"] == 8
    assert state["scaler"] == scales[7]  # on_step gets the 0-based index: the 8th step is index 7
    assert state["scaler"]["scale"] < 65536 and state["scaler"]["_growth_tracker"] > 0

    resumed = Trainer(config, ds, checkpoint_dir=tmp_path / "b")
    start = resumed.load_state_dict(state)
    assert start == 8 and resumed.scaler.state_dict() == state["scaler"]
    resumed.run(local_plans(config, ds.labels, 0, 1, start_step=start), start)
    a, b = params(whole), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.scaler.state_dict() == whole.scaler.state_dict()
    assert resumed.scheduler.get_last_lr() == whole.scheduler.get_last_lr()


@skipped_step_warning
def test_fp16_step_with_inf_gradients_is_skipped_and_the_scale_halves():
    trainer = Trainer(tiny_config(train={"amp": "fp16"}), TinyFaceDataset())
    # A scale near float32's maximum makes the scaled loss, hence the gradients, infinite: the
    # overflow the GradScaler exists to catch.
    huge = 2.0 ** 127
    trainer.scaler.load_state_dict({**trainer.scaler.state_dict(), "scale": huge})
    batch = np.arange(16, dtype=np.int32)
    before = params(trainer)
    terms = trainer.train_step(0, batch, np.zeros(16, np.int16))
    assert np.isfinite(terms["loss"])  # the loss itself is finite; only its scaled gradient is not
    after = params(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.scaler.get_scale() == huge / 2
    assert not trainer.optimizer.state  # SGD never stepped: no momentum buffers yet

    trainer.scaler.load_state_dict({**trainer.scaler.state_dict(), "scale": 1024.0})
    trainer.train_step(1, batch, np.zeros(16, np.int16))  # a sane scale: this step updates
    stepped = params(trainer)
    assert any(not torch.equal(after[k], stepped[k]) for k in after)
    assert all(torch.isfinite(v).all() for v in stepped.values())
    assert trainer.scaler.get_scale() == 1024.0


def test_an_amp_dtype_torch_cannot_autocast_is_a_config_error(monkeypatch):
    # torch disables autocast (with a warning) for a dtype the device lacks; the trainer refuses
    # rather than train float32 unasked. Simulated (both dtypes autocast on this CPU): an autocast
    # that casts nothing, then one that raises as CUDA does for bf16 on a GPU without it.
    import contextlib

    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())
    with pytest.raises(ConfigError, match=r"train\.amp=bf16: .* no bf16 autocast on cpu"):
        Trainer(tiny_config(train={"amp": "bf16"}), TinyFaceDataset())

    def refuses(*a, **k):
        raise RuntimeError("Current CUDA Device does not support bfloat16")

    monkeypatch.setattr(torch, "autocast", refuses)
    with pytest.raises(ConfigError, match=r"train\.amp=fp16: .* no fp16 autocast on cpu"):
        Trainer(tiny_config(train={"amp": "fp16"}), TinyFaceDataset())
