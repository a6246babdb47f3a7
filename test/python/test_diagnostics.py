"""What explains a result (issue #10): the gradient norms, clip fraction and meta inner-step size
the trainer logs on logged steps as `metrics` terms (docs/methods.md, "Diagnostics")."""
from pathlib import Path

import numpy as np
import pytest
import torch

from diagnostics_common import filter_trainer, paired_dataset, shard_plan
from dmfr.methods.meta import meta_objective
from dmfr.trainer import Trainer, local_plans
from ranks import run_ranks
from test_methods import build, make_batch
from tiny_data import TinyFaceDataset, one_thread, tiny_config  # noqa: F401 - one_thread: autouse fixture

HERE = Path(__file__).resolve().parent


def _norm(grads) -> float:
    # the norm of the per-parameter norms, as torch's clip_grad_norm_ and the trainer compute it
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def test_term_and_total_gradient_norms_are_those_of_autograd():
    idx, doms, pair = shard_plan(0)
    reference, trainer = filter_trainer(), filter_trainer()  # same seed: the same initial weights
    # The reference: the same shard, forward once, each term's and the objective's gradient alone.
    batch = reference._batch(reference.load_shard(0, idx, pair), idx, doms, pair, None)
    out = reference.method(batch)
    params = [p for p in reference.method.parameters() if p.requires_grad]
    expected = {}
    for name in ("L_cls", "L_flt", "loss"):
        grads = torch.autograd.grad(out[name], params, retain_graph=True, allow_unused=True)
        expected[name] = _norm([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
    terms = trainer.train_step(0, idx, doms, pair, diagnostics=True)
    # Both sides run the same float32 operations on the same values; the only difference is the
    # order in which torch sums the total norm (foreach kernels), so a few float32 ulps: rel 1e-6.
    assert terms["grad_norm_L_cls"] == pytest.approx(expected["L_cls"], rel=1e-6)
    assert terms["grad_norm_L_flt"] == pytest.approx(expected["L_flt"], rel=1e-6)
    assert terms["grad_norm"] == pytest.approx(expected["loss"], rel=1e-6)  # before clipping, λ_flt = 1
    assert expected["L_flt"] > 0 and expected["L_cls"] > 0
    assert "clip_fraction" not in terms  # clipping is off
    # Unlogged steps carry none of this.
    assert set(trainer.train_step(1, *shard_plan(1))) == {"loss", "L_cls", "L_flt"}


def test_diagnostics_do_not_change_training():
    a, b = filter_trainer(clip=5), filter_trainer(clip=5)
    for step in range(3):
        a.train_step(step, *shard_plan(step), diagnostics=True)
        b.train_step(step, *shard_plan(step))
    pa, pb = dict(a.method.named_parameters()), dict(b.method.named_parameters())
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_clip_fraction_counts_the_window_since_the_last_logged_step():
    # Run 1 logs every step, so each step's pre-clip norm is known; run 2 (the same trajectory:
    # diagnostics do not change training) logs every 4th step, whose clip_fraction must be the
    # share of its 4 steps whose norm exceeded the threshold.
    ds = TinyFaceDataset()
    runs = {}
    for log_every in (1, 4):
        config = tiny_config(train={"steps": 12, "batch_size": 16, "log_every": log_every},
                             optim={"clip_grad_norm": 2.5})
        logged = []
        Trainer(config, ds).run(local_plans(config, ds.labels, 0, 1), on_metrics=logged.append)
        runs[log_every] = logged
    norms = np.array([s.terms["grad_norm"] for s in runs[1]])
    assert [s.terms["clip_fraction"] for s in runs[1]] == (norms > 2.5).astype(float).tolist()
    windows = [float(np.mean(norms[k:k + 4] > 2.5)) for k in (0, 4, 8)]
    assert [s.terms["clip_fraction"] for s in runs[4]] == windows
    assert 0 < (norms > 2.5).mean() < 1, norms  # the threshold splits the steps: the check can fail
    assert [s.terms["grad_norm"] for s in runs[4]] == pytest.approx(norms[[3, 7, 11]].tolist(), rel=1e-6)


def test_meta_step_ratio_is_the_inner_step_over_the_prototypes():
    method, batch = build("meta"), make_batch()
    out = method(batch)
    features = method.backbone(batch.images)
    train = batch.domains != batch.meta_test
    loss = torch.nn.functional.cross_entropy(method.head.logits(features[train], batch.labels[train]),
                                             batch.labels[train])
    (grad_w,) = torch.autograd.grad(loss, method.head.weight)
    expected = 0.1 * grad_w.norm() / method.head.weight.detach().norm()  # meta_alpha = 0.1 (schema default)
    # The same float32 graph (BatchNorm in train mode sees the same batch): equal to float32 rounding.
    assert float(out["meta_step_ratio"]) == pytest.approx(float(expected), rel=1e-5)
    no_test = meta_objective(method.head, features, batch.labels, torch.zeros_like(train), 0.5, 0.1)
    assert float(no_test["meta_step_ratio"]) == 0.0  # no inner step taken


def test_two_ranks_with_diagnostics_train_as_without(tmp_path):
    proc = run_ranks(HERE / "diagnostics_ranks.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = {(m, r): torch.load(tmp_path / f"{m}-rank{r}.pt") for m in ("plain", "diagnostics") for r in (0, 1)}
    plain, diag = saved[("plain", 0)]["params"], saved[("diagnostics", 0)]["params"]
    assert all(torch.equal(plain[k], diag[k]) for k in plain), "the diagnostics changed the step under DDP"
    assert all(torch.equal(diag[k], saved[("diagnostics", 1)]["params"][k]) for k in diag)
    # the total norm is of DDP's averaged gradient: the same on both ranks; the term norms are each
    # rank's own shard's, so they differ
    t0, t1 = saved[("diagnostics", 0)]["terms"], saved[("diagnostics", 1)]["terms"]
    assert [t["grad_norm"] for t in t0] == [t["grad_norm"] for t in t1]
    assert t0[0]["grad_norm_L_flt"] != t1[0]["grad_norm_L_flt"]


def test_term_norms_come_every_term_grad_norm_every_steps_and_those_steps_are_logged():
    from dmfr.trainer import PlanChunk

    trainer = filter_trainer(steps=6, log_every=2, term_grad_norm_every=3)
    plans = [shard_plan(k) for k in range(6)]
    chunk = PlanChunk(0, 6, 16, True, np.stack([p[0] for p in plans]), np.stack([p[1] for p in plans]),
                      np.stack([p[2] for p in plans]))
    logged = []
    trainer.run(iter([chunk]), on_metrics=logged.append)
    assert [s.step for s in logged] == [2, 3, 4, 6]  # steps completed: every 2nd step, and the 3rd and 6th
    with_terms = [s.step for s in logged if "grad_norm_L_flt" in s.terms and "grad_norm_L_cls" in s.terms]
    assert with_terms == [3, 6]
    assert all("grad_norm" in s.terms for s in logged)
