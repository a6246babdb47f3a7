"""The training methods (python/dmfr/methods): the properties the paper's equations imply.

Tiny models throughout (r_tiny, width 0.125, 32 px). `make_config` fills the run config with the
defaults of ts/config/schema.ts, so these tests see what a real run sees.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dmfr.errors import ConfigError, DataError
from dmfr.methods import Batch, build_method
from dmfr.methods.classify import Classify
from dmfr.methods.disentangle import reconstruction_loss
from dmfr.methods.filter import delta0_pairs
from dmfr.methods.meta import meta_objective
from tiny_data import BASE_CONFIG

torch.set_num_threads(1)

TINY = {"model": {"arch": "r_tiny", "width": 0.125, "embedding_size": 32}, "data": {"image_size": 32}}
NUM_CLASSES = 10


def make_config(name: str, **overrides) -> dict:
    """Schema defaults (tiny_data.BASE_CONFIG) + the tiny model + `overrides` ({"method": {...}, "head": {...}} or method keys)."""
    config = copy.deepcopy(BASE_CONFIG)
    sections = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if isinstance(value, dict):
            sections.setdefault(key, {}).update(value)
        else:
            sections.setdefault("method", {})[key] = value
    for key, value in sections.items():
        config[key].update(value)
    config["method"]["name"] = name
    return config


def make_batch(seed: int = 0, size: int = 32) -> Batch:
    """8 samples: real 0–3, domain 1 at 4–5, domain 2 at 6–7; (4, 0) and (6, 1) are Δc = 0 pairs."""
    g = torch.Generator().manual_seed(seed)
    return Batch(images=torch.randn(8, 3, size, size, generator=g),
                 labels=torch.tensor([0, 1, 2, 3, 0, 2, 1, 3]),
                 domains=torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]),
                 pair=torch.tensor([-1, -1, -1, -1, 0, -1, 1, -1]),
                 meta_test=2)


def subset(batch: Batch, keep: torch.Tensor) -> Batch:
    return Batch(images=batch.images[keep], labels=batch.labels[keep], domains=batch.domains[keep])


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in module.named_parameters() if p.requires_grad}


def build(method: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_method(make_config(method, **overrides), NUM_CLASSES)


def nonzero(g: dict[str, torch.Tensor], prefix: str) -> bool:
    return any(bool(v.abs().sum() > 0) for n, v in g.items() if n.startswith(prefix))


def all_zero(g: dict[str, torch.Tensor], prefix: str) -> bool:
    selected = [v for n, v in g.items() if n.startswith(prefix)]
    assert selected, f"no parameters under {prefix}"
    return all(bool(v.abs().sum() == 0) for v in selected)


# --- meta --------------------------------------------------------------------------------------

def _tiny_float64_meta(lambda_meta: float = 0.5):
    """MetaDMFR whose backbone is one linear layer on 3×2×2 images, in float64."""
    method = build("meta", lambda_meta=lambda_meta, model={"embedding_size": 6}, head={"s": 8.0})
    method.backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    method.double()
    g = torch.Generator().manual_seed(3)
    batch = Batch(images=torch.randn(8, 3, 2, 2, generator=g, dtype=torch.float64),
                  labels=torch.tensor([0, 1, 2, 3, 4, 0, 1, 2]) % NUM_CLASSES,
                  domains=torch.tensor([0, 0, 0, 1, 1, 2, 2, 2]), meta_test=2)
    return method, batch


def _finite_difference(method: nn.Module, loss_fn, eps: float = 1e-6) -> dict[str, torch.Tensor]:
    out = {}
    with torch.no_grad():
        for name, p in method.named_parameters():
            g = torch.zeros_like(p)
            flat, gflat = p.view(-1), g.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + eps
                up = loss_fn().item()
                flat[i] = old - eps
                down = loss_fn().item()
                flat[i] = old
                gflat[i] = (up - down) / (2 * eps)
            out[name] = g
    return out


def test_meta_gradient_equals_finite_differences():
    method, batch = _tiny_float64_meta()
    out = method(batch)
    out["loss"].backward()
    analytic = grads(method)
    # Finite differences of the whole objective redo the inner step w' = w − α∇L_tr at every point,
    # so they measure the true meta-gradient (second-order term included).
    numeric = _finite_difference(method, lambda: method(batch)["loss"])
    for name in analytic:
        torch.testing.assert_close(analytic[name], numeric[name], rtol=1e-6, atol=1e-8, msg=name)
    # The check tells the meta-gradient from a first-order one (w' treated as a constant shift).
    method.zero_grad()
    test_mask = batch.domains == batch.meta_test
    meta_objective(method.head, method.backbone(batch.images), batch.labels, test_mask, 0.5, 0.1,
                   second_order=False)["loss"].backward()
    first_order = grads(method)
    gap = max(float((first_order[n] - numeric[n]).abs().max()) for n in numeric)
    assert gap > 1e-4


def test_meta_lambda_one_is_plain_training_on_meta_train():
    batch = make_batch()
    meta = build("meta", lambda_meta=1.0)
    plain = Classify(make_config("mix"), NUM_CLASSES)
    plain.load_state_dict(meta.state_dict())
    # Eval-mode BatchNorm: the meta step sees the whole shard, plain training only meta-train.
    meta.eval(), plain.eval()
    out = meta(batch)
    out["loss"].backward()
    train = batch.domains != batch.meta_test
    ref = plain(subset(batch, train))
    ref["loss"].backward()
    assert torch.equal(out["loss"], ref["loss"])
    assert float(out["L_te"]) > 0  # computed and logged, with weight 0
    g_meta, g_plain = grads(meta), grads(plain)
    assert g_meta.keys() == g_plain.keys()
    for name in g_meta:
        torch.testing.assert_close(g_meta[name], g_plain[name], rtol=0, atol=0, msg=name)


def test_meta_lambda_below_one_differs_from_plain_training():
    batch = make_batch()
    meta = build("meta")
    plain = Classify(make_config("mix"), NUM_CLASSES)
    plain.load_state_dict(meta.state_dict())
    meta.eval(), plain.eval()
    meta(batch)["loss"].backward()
    plain(subset(batch, batch.domains != batch.meta_test))["loss"].backward()
    assert not torch.allclose(meta.head.weight.grad, plain.head.weight.grad)


def test_meta_evaluates_under_no_grad():
    batch = make_batch()
    meta = build("meta")
    meta.eval()
    with torch.no_grad():
        quiet = meta(batch)
    torch.testing.assert_close(quiet["loss"], meta(batch)["loss"].detach())


def test_meta_without_meta_test_samples_is_l_tr():
    batch = make_batch()
    meta = build("meta")
    for held_out in (None, 7):  # no held-out domain / a domain absent from the shard
        out = meta(Batch(batch.images, batch.labels, batch.domains, meta_test=held_out))
        assert torch.equal(out["loss"].detach(), out["L_tr"]) and float(out["L_te"]) == 0
    # Without meta-train samples the objective is L_te at w (the inner step on nothing is 0).
    only_test = Batch(batch.images[6:], batch.labels[6:], batch.domains[6:], meta_test=2)
    out = meta(only_test)
    assert torch.equal(out["loss"].detach(), out["L_te"]) and float(out["L_tr"]) == 0


# --- disentangle -------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_disentangle_f_id_is_f_entangle_minus_f_non_id(stage):
    method = build("disentangle", disentangle_stage=stage)
    method.eval()
    images = make_batch().images
    p = method.parts(images)
    assert torch.equal(p["f_id"], p["f_entangle"] - p["f_non_id"])
    assert p["M_recons"].shape == p["M"].shape
    assert torch.equal(method.embed(images), p["f_id"])
    assert not torch.equal(p["f_non_id"], p["f_entangle"])  # trunk 2 is not a copy of trunk 1


def test_disentangle_gradients_reach_the_right_modules():
    batch = make_batch()
    method = build("disentangle")  # stage 3: stages 1–3 shared, stage 4 + head in each trunk
    p = method.parts(batch.images)
    reconstruction_loss(p["M_recons"], p["M"]).backward()
    g = grads(method)
    assert nonzero(g, "decoder.") and nonzero(g, "backbone.layer4.") and nonzero(g, "backbone.fc.")
    assert nonzero(g, "backbone.layer1.")  # through f_entangle (M itself is a detached target)
    assert all_zero(g, "non_id_trunk.") and all_zero(g, "head.")

    method.zero_grad(set_to_none=True)
    method.head(method.parts(batch.images, decode=False)["f_id"], batch.labels).backward()
    g = grads(method)
    assert nonzero(g, "non_id_trunk.") and nonzero(g, "backbone.layer4.") and nonzero(g, "head.")
    assert all_zero(g, "decoder.")

    method.zero_grad(set_to_none=True)
    out = method(batch)
    out["loss"].backward()
    assert set(out) == {"loss", "L_cls", "L_recons"}
    torch.testing.assert_close(out["loss"].detach(), out["L_cls"] + out["L_recons"])


def test_disentangle_rejects_a_bad_stage():
    with pytest.raises(ConfigError, match="disentangle_stage"):
        build("disentangle", disentangle_stage=5)


# --- filter ------------------------------------------------------------------------------------

def test_filter_pairs_are_delta_c_zero_pairs_only():
    batch = make_batch()
    syn, real = delta0_pairs(batch)
    assert syn.tolist() == [4, 6] and real.tolist() == [0, 1]
    # The pair may be given from the real side, or from both; each pair counts once.
    both = Batch(batch.images, batch.labels, batch.domains, pair=torch.tensor([4, 6, -1, -1, 0, -1, -1, -1]))
    assert [t.tolist() for t in delta0_pairs(both)] == [[4, 6], [0, 1]]
    bad = Batch(batch.images, batch.labels, batch.domains, pair=torch.tensor([-1, -1, -1, -1, 5, -1, -1, -1]))
    with pytest.raises(DataError, match=r"pair\[4\]"):
        delta0_pairs(bad)


def test_filter_loss_uses_only_the_pairs():
    batch = make_batch()
    method = build("filter")
    method.eval()  # BatchNorm per sample, so editing one image changes only its own feature
    with torch.no_grad():
        method.filter.fc2.weight.normal_(0, 0.1)  # F ≠ identity
        z = method.backbone(batch.images)
        expected = ((method.filter(z[4:5]) - z[0:1]).norm() + (method.filter(z[6:7]) - z[1:2]).norm()) / 2
        assert torch.allclose(method.filter_loss(z, batch), expected, rtol=1e-6)
        edited = batch.images.clone()
        edited[[2, 3, 5, 7]] = torch.randn(4, 3, 32, 32)  # samples outside every pair
        z2 = method.backbone(edited)
        assert torch.equal(method.filter_loss(z2, batch), method.filter_loss(z, batch))
        edited[4] = torch.randn(3, 32, 32)
        assert not torch.equal(method.filter_loss(method.backbone(edited), batch), method.filter_loss(z, batch))
        no_pairs = Batch(batch.images, batch.labels, batch.domains, pair=torch.full((8,), -1))
        assert float(method.filter_loss(z, no_pairs)) == 0


def _filter_loss_grads(detach_real: bool, trains_backbone: bool):
    batch = make_batch()
    method = build("filter", filter_detach_real=detach_real, filter_trains_backbone=trains_backbone)
    z = method.backbone(batch.images)
    z.retain_grad()
    method.filter_loss(z, batch).backward()
    return grads(method), z.grad


def test_filter_loss_gradients():
    g, zg = _filter_loss_grads(detach_real=True, trains_backbone=True)
    assert nonzero(g, "filter.") and nonzero(g, "backbone.")
    assert all_zero(g, "head.") and all_zero(g, "head_syn.")
    assert zg[[4, 6]].abs().sum() > 0 and zg[[0, 1]].abs().sum() == 0  # real target detached
    assert zg[[2, 3, 5, 7]].abs().sum() == 0

    g, zg = _filter_loss_grads(detach_real=False, trains_backbone=True)
    assert zg[[0, 1]].abs().sum() > 0

    g, zg = _filter_loss_grads(detach_real=False, trains_backbone=False)
    assert nonzero(g, "filter.") and all_zero(g, "backbone.")
    assert zg is None or zg.abs().sum() == 0


def test_filter_classifiers_are_separate_and_synthetic_features_go_through_f():
    batch = make_batch()
    method = build("filter")
    assert method.head_syn is not None and method.head.weight is not method.head_syn.weight
    assert not torch.equal(method.head.weight, method.head_syn.weight)
    real = batch.domains == 0
    method.classification_loss(method.backbone(batch.images[real]), subset(batch, real)).backward()
    g = grads(method)
    assert nonzero(g, "head.") and all_zero(g, "head_syn.") and all_zero(g, "filter.")

    method.zero_grad(set_to_none=True)
    syn = subset(batch, ~real)
    method.classification_loss(method.backbone(syn.images), syn).backward()
    g = grads(method)
    assert all_zero(g, "head.") and nonzero(g, "head_syn.") and nonzero(g, "filter.")

    shared = build("filter", filter_shared_classifier=True)
    assert shared.head_syn is None
    assert sum(p.numel() for p in shared.parameters()) == sum(p.numel() for p in method.parameters()) - method.head_syn.weight.numel()


def test_filter_embed_is_the_backbone_feature():
    method = build("filter")
    method.eval()
    images = make_batch().images
    assert torch.equal(method.embed(images), method.backbone(images))


# --- dul, url ----------------------------------------------------------------------------------

def test_dul_kl_and_embedding():
    batch = make_batch()
    method = build("dul")
    torch.manual_seed(5)
    out = method(batch)
    torch.manual_seed(5)
    mu, log_var = method.distribution(batch.images)
    normal = torch.distributions.Normal
    kl = torch.distributions.kl_divergence(normal(mu, (0.5 * log_var).exp()), normal(0.0, 1.0)).sum(1).mean()
    torch.testing.assert_close(out["KL"], kl.detach())
    torch.testing.assert_close(out["loss"].detach(), out["L_cls"] + 0.01 * out["KL"])
    out["loss"].backward()
    assert nonzero(grads(method), "log_variance.")
    method.eval()
    assert torch.equal(method.embed(batch.images), method.distribution(batch.images)[0])


def test_url_with_one_group_at_start_is_cosface():
    batch = make_batch()
    url = build("url", url_groups=1)
    plain = Classify(make_config("mix"), NUM_CLASSES)
    with torch.no_grad():
        plain.backbone.load_state_dict(url.backbone.state_dict())
        plain.head.weight.copy_(url.weight)
    url.eval(), plain.eval()
    torch.testing.assert_close(url(batch)["loss"], plain(batch)["loss"], rtol=1e-5, atol=1e-5)
    grouped = build("url", url_groups=4)
    with torch.no_grad():
        grouped.backbone.load_state_dict(url.backbone.state_dict())
        grouped.weight.copy_(url.weight)
    grouped.eval()
    assert not torch.allclose(grouped(batch)["loss"], plain(batch)["loss"])


def test_url_decorrelation_terms_and_config_errors():
    method = build("url", url_decorrelation=True)
    assert method.terms == ("L_cls", "L_dec")
    out = method(make_batch())
    out["loss"].backward()
    g = grads(method)
    assert nonzero(g, "variation.") and nonzero(g, "adversary.") and nonzero(g, "confidence.")
    torch.testing.assert_close(out["loss"].detach(), out["L_cls"] + out["L_dec"])
    assert build("url").terms == ("L_cls",)
    with pytest.raises(ConfigError, match="url_groups"):
        build("url", url_groups=5)


# --- mixed precision ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ["real", "mix", "meta", "disentangle", "filter", "dul", "url"])
def test_every_method_trains_under_autocast(name, dtype):
    """train.amp runs each method's forward under autocast (CPU here, CUDA on a GPU host): the
    loss terms stay finite and float32-comparable to the float32 run, and the backward reaches
    the backbone with finite gradients in float32 parameters."""
    batch = make_batch()
    torch.manual_seed(0)
    method = build(name)
    torch.manual_seed(1)
    reference = method(batch)
    method.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=dtype):
        out = method(batch)
    assert set(out) == set(reference)
    for term, value in out.items():
        assert torch.isfinite(value).all(), f"{name}: {term} is {value} under {dtype}"
        assert value.dtype == torch.float32, f"{name}: {term} left in {value.dtype}"
        # half precision changes the numbers a little, not the scale of the loss
        got, want = float(value.detach()), float(reference[term].detach())
        assert abs(got - want) <= 0.02 * abs(want) + 0.01, f"{name}: {term} {got} under {dtype}, {want} in float32"
    out["loss"].backward()
    g = grads(method)
    assert all(torch.isfinite(v).all() for v in g.values()), f"{name}: non-finite gradient under {dtype}"
    assert nonzero(g, "backbone.")
    assert all(p.dtype == torch.float32 for p in method.parameters())
