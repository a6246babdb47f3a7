"""SGD parameter groups and the LR schedules (python/dmfr/optim.py)."""
import pytest
import torch
from torch import nn

from dmfr.optim import LRFactor, build_optimizer, build_scheduler, param_groups
from tiny_data import tiny_config


def lrs(config, steps):
    model = nn.Linear(2, 2)
    opt = build_optimizer(config, model)
    sched = build_scheduler(config, opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_decay_at_milestones_after_warmup():
    config = tiny_config(optim={"lr": 0.01, "schedule": "step", "milestones": [5, 7, 8], "gamma": 0.1,
                                "warmup_steps": 2})
    assert lrs(config, 10) == pytest.approx([0, 0.005, 0.01, 0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-5, 1e-5])


def test_poly_decay_follows_arcface_torch():
    # arcface_torch PolyScheduler: base_lr·k/warmup, then base_lr·(1 − (k − warmup)/(T − warmup))²
    config = tiny_config(optim={"lr": 0.1, "schedule": "poly", "warmup_steps": 4}, train={"steps": 20})
    got = lrs(config, 20)
    want = [0.1 * k / 4 if k < 4 else 0.1 * (1 - (k - 4) / 16) ** 2 for k in range(20)]
    assert got == pytest.approx(want)
    assert got[4] == pytest.approx(0.1) and got[19] < got[10] < got[4]


def test_constant_with_and_without_warmup():
    assert lrs(tiny_config(optim={"lr": 0.3, "schedule": "constant"}), 3) == pytest.approx([0.3] * 3)
    assert lrs(tiny_config(optim={"lr": 0.3, "schedule": "constant", "warmup_steps": 3}), 5) == \
        pytest.approx([0, 0.1, 0.2, 0.3, 0.3])


def test_bad_schedule_settings_are_named():
    with pytest.raises(ValueError, match="optim.schedule"):
        LRFactor("cosine", 10)
    with pytest.raises(ValueError, match="optim.milestones"):
        LRFactor("step", 10, milestones=[5, 3])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.prelu = nn.PReLU(4)
        self.fc = nn.Linear(4, 2)


def test_no_bn_decay_exempts_batchnorm_and_biases():
    net = Net()
    groups = param_groups(net, 5e-4, no_bn_decay=True)
    decay, exempt = ({id(p) for p in g["params"]} for g in groups)
    assert groups[1]["weight_decay"] == 0.0
    assert decay == {id(net.conv.weight), id(net.prelu.weight), id(net.fc.weight)}
    assert exempt == {id(net.bn.weight), id(net.bn.bias), id(net.fc.bias)}
    assert len(param_groups(net, 5e-4, no_bn_decay=False)) == 1


def test_weight_decay_applies_where_configured():
    def after_zero_grad_step(no_bn_decay):
        torch.manual_seed(0)
        net = Net()
        opt = build_optimizer(tiny_config(optim={"lr": 1.0, "weight_decay": 0.1, "momentum": 0.9,
                                                 "no_bn_decay": no_bn_decay}), net)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        return net

    exempt = after_zero_grad_step(True)
    assert torch.equal(exempt.bn.weight, torch.ones(4))  # decay of a weight 1 would move it to 0.9
    assert torch.allclose(after_zero_grad_step(False).bn.weight, torch.full((4,), 0.9))
