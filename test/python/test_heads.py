"""Margin heads against arcface_torch's losses.py formulas (re-derived here independently)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dmfr.heads import MarginHead, build_head, margin_logits


def arcface_torch_reference(cosine, labels, s, m):
    """losses.ArcFace: cos θ cos m − sin θ sin m where cos θ > cos(π − m), else cos θ − sin(π − m)·m."""
    out = cosine.clone()
    idx = torch.arange(len(labels))
    t = cosine[idx, labels]
    sin_t = torch.sqrt(1.0 - t * t)
    exact = t * math.cos(m) - sin_t * math.sin(m)
    out[idx, labels] = torch.where(t > math.cos(math.pi - m), exact, t - math.sin(math.pi - m) * m)
    return out * s


def cosines(n=64, c=10):
    g = torch.Generator().manual_seed(0)
    cos = torch.rand(n, c, generator=g) * 2 - 1
    cos[:8, 0] = torch.linspace(-0.999, -0.9, 8)  # θ + m past π: the fallback branch
    labels = torch.randint(0, c, (n,), generator=g)
    labels[:8] = 0
    return cos, labels


def test_arcface_exact_margin_and_fallback_match_arcface_torch():
    cos, labels = cosines()
    ours = margin_logits(cos, labels, "arcface", s=64.0, m=0.5)
    torch.testing.assert_close(ours, arcface_torch_reference(cos, labels, 64.0, 0.5), rtol=1e-5, atol=1e-4)
    # the fallback rows really are on the fallback branch
    assert (cos[:8, 0] < math.cos(math.pi - 0.5)).all()


def test_cosface_and_combined():
    cos, labels = cosines()
    idx = torch.arange(len(labels))
    expected = cos.clone()
    expected[idx, labels] -= 0.4
    torch.testing.assert_close(margin_logits(cos, labels, "cosface", s=64.0, m=0.4), expected * 64)
    # combined (1, 0.5, 0) is ArcFace; (1, 0, 0.4) is CosFace
    torch.testing.assert_close(margin_logits(cos, labels, "combined", 64.0, 0.0, 1.0, 0.5, 0.0),
                               margin_logits(cos, labels, "arcface", 64.0, 0.5))
    torch.testing.assert_close(margin_logits(cos, labels, "combined", 64.0, 0.0, 1.0, 0.0, 0.4), expected * 64)
    # m1 ≠ 1 (SphereFace-style multiplicative term) inside the valid range
    c = torch.tensor([[0.9, 0.1]])
    out = margin_logits(c, torch.tensor([0]), "combined", 1.0, 0.0, 1.2, 0.1, 0.05)
    assert out[0, 0].item() == pytest.approx(math.cos(1.2 * math.acos(0.9) + 0.1) - 0.05, abs=1e-6)


def test_straight_through_arcface_value_and_gradient():
    cos, labels = cosines()
    # only θ + m < π rows: arcface_torch's CombinedMarginLoss has no fallback branch
    keep = cos[torch.arange(len(labels)), labels] > math.cos(math.pi - 0.5)
    cos, labels = cos[keep], labels[keep]
    a = cos.clone().requires_grad_(True)
    b = cos.clone().requires_grad_(True)
    st = margin_logits(a, labels, "arcface", 64.0, 0.5, straight_through=True)
    exact = margin_logits(b, labels, "arcface", 64.0, 0.5)
    torch.testing.assert_close(st, exact, rtol=1e-5, atol=1e-4)  # same forward value
    F.cross_entropy(st, labels).backward()
    F.cross_entropy(exact, labels).backward()
    # straight-through: d logit / d cos = s for the target too (no d cos(θ+m)/d cos θ factor)
    p = torch.softmax(st.detach(), 1)
    p[torch.arange(len(labels)), labels] -= 1
    torch.testing.assert_close(a.grad, p * 64.0 / len(labels), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(a.grad, b.grad)


def test_ignored_rows_get_no_margin():
    cos = torch.tensor([[0.5, 0.2], [0.3, 0.1]])
    out = margin_logits(cos, torch.tensor([0, -1]), "cosface", 1.0, 0.4)
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.2], [0.3, 0.1]]))


def test_build_head_and_loss():
    head = build_head({"type": "arcface", "s": 32.0, "m": 0.5, "straight_through": True}, 8, 5)
    assert isinstance(head, MarginHead) and head.straight_through
    emb = torch.randn(4, 8, requires_grad=True)
    loss = head(emb, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert loss.item() > 0 and emb.grad is not None
    soft = build_head({"type": "softmax"}, 8, 5)
    assert soft.logits(emb, torch.tensor([0, 1, 2, 3])).shape == (4, 5)
    with pytest.raises(ValueError, match="unknown margin head 'sphere'"):
        build_head({"type": "sphere"}, 8, 5)(emb, torch.tensor([0, 1, 2, 3]))
