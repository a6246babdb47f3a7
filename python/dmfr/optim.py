"""SGD and the learning-rate schedules of the `optim` config section.

SGD with momentum 0.9 and weight decay 5e-4 is arcface_torch's and the paper's choice (paper §4.1:
lr 0.01, ×0.1 at 50k/70k/80k iterations → schedule `step`). `poly` is arcface_torch's
PolyScheduler (lr · (1 − t/T)², after a linear warm-up from 0). Every schedule takes the same
linear warm-up: lr · k / warmup_steps for the first `warmup_steps` steps (arcface_torch).
"""
from __future__ import annotations

import bisect

import torch
from torch import nn

# arcface_torch's PolyScheduler uses power 2.
POLY_POWER = 2.0


def param_groups(module: nn.Module, weight_decay: float, no_bn_decay: bool) -> list[dict]:
    """One group, or two when BatchNorm parameters and biases are exempt from weight decay."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not no_bn_decay:
        return [{"params": params, "weight_decay": weight_decay}]
    exempt: set[int] = set()
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            exempt.update(id(p) for p in sub.parameters(recurse=False))
        bias = getattr(sub, "bias", None)
        if isinstance(bias, nn.Parameter):
            exempt.add(id(bias))
    decay = [p for p in params if id(p) not in exempt]
    no_decay = [p for p in params if id(p) in exempt]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(config: dict, module: nn.Module) -> torch.optim.SGD:
    o = config["optim"]
    return torch.optim.SGD(param_groups(module, o["weight_decay"], o.get("no_bn_decay", False)),
                           lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])


class LRFactor:
    """The multiplier of the base lr at optimizer step k (0-based); a plain object so that
    LambdaLR's state_dict records its settings."""

    def __init__(self, schedule: str, total_steps: int, warmup_steps: int = 0,
                 milestones: list[int] | tuple[int, ...] = (), gamma: float = 0.1):
        if schedule not in ("step", "poly", "constant"):
            raise ValueError(f"optim.schedule: unknown schedule {schedule!r}; expected step, poly or constant")
        if list(milestones) != sorted(milestones):
            raise ValueError(f"optim.milestones must be increasing, got {list(milestones)}")
        self.schedule = schedule
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.milestones = list(milestones)
        self.gamma = gamma

    def __call__(self, k: int) -> float:
        if k < self.warmup_steps:
            return k / self.warmup_steps
        if self.schedule == "step":
            return self.gamma ** bisect.bisect_right(self.milestones, k)
        if self.schedule == "poly":
            span = max(1, self.total_steps - self.warmup_steps)
            return max(0.0, 1.0 - (k - self.warmup_steps) / span) ** POLY_POWER
        return 1.0


def build_scheduler(config: dict, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Call `.step()` once after every optimizer step; step k then runs at base_lr · factor(k)."""
    o = config["optim"]
    factor = LRFactor(o["schedule"], config["train"]["steps"], o.get("warmup_steps", 0),
                      o.get("milestones", []), o.get("gamma", 0.1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
