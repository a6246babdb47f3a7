"""`meta`: meta-learning-based DMFR (paper, "Meta-learning-based DMFR").

Each step the sampler holds one generative domain out as meta-test (`batch.meta_test`); the real
domain and the other generative domains form meta-train. With prototypes w and features f = H(x):

    L_tr = CE(w; f_train)                    the margin loss on meta-train samples
    w'   = w − α ∇_w L_tr                    inner step, kept differentiable (create_graph)
    L    = λ L_tr + (1 − λ) L_te(w'; f_test)  paper: "argmin_θ λ L_tr(θ, w) + (1 − λ) L_te(θ, w − α∇_w L_tr)"

so the meta-gradient of L_te reaches both the backbone θ (through f_test and, via ∇_w L_tr, through
f_train) and w. One backbone pass covers the whole shard, so BatchNorm sees meta-train and
meta-test samples together. Under DDP each rank takes its inner step on its own shard's L_tr
(as each of the paper's 8 GPUs would) and DDP averages the resulting gradients.

A shard without meta-test samples (or `meta_test` None) has objective L_tr; one without meta-train
samples has objective L_te(w) (∇_w of an empty loss is 0, so w' = w). The absent term is logged as 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dmfr.errors import ConfigError
from dmfr.heads import MarginHead, build_head

from .base import Batch, Method


def _margin_ce(head: MarginHead, features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # head.logits, not head.forward: forward casts to float32, which would break float64 checks.
    return F.cross_entropy(head.logits(features.to(weight.dtype), labels, weight), labels)


def meta_objective(head: MarginHead, features: torch.Tensor, labels: torch.Tensor, test_mask: torch.Tensor,
                   lambda_meta: float, alpha: float, second_order: bool = True) -> dict[str, torch.Tensor]:
    """The meta objective on one shard. `test_mask` marks the meta-test samples.

    `second_order=False` drops the create_graph term (first-order MAML); only the tests use it,
    to show the finite-difference check tells the two apart.
    """
    train_mask = ~test_mask
    has_train, has_test = bool(train_mask.any()), bool(test_mask.any())
    if not (has_train or has_test):
        raise ValueError("meta: empty batch")
    w = head.weight
    zero = features.new_zeros(())
    # `meta_step_ratio` = ‖α ∇_w L_tr‖ / ‖w‖, the inner step's size relative to the prototypes
    # (issue #10: is α large enough to matter?); 0 when no inner step is taken.
    if not has_test:
        l_tr = _margin_ce(head, features[train_mask], labels[train_mask], w)
        return {"loss": l_tr, "L_tr": l_tr, "L_te": zero, "meta_step_ratio": zero}
    if not has_train:
        l_te = _margin_ce(head, features[test_mask], labels[test_mask], w)
        return {"loss": l_te, "L_tr": zero, "L_te": l_te, "meta_step_ratio": zero}
    outer_grad = torch.is_grad_enabled()
    # The inner step needs a graph even when the caller evaluates under no_grad.
    with torch.enable_grad():
        l_tr = _margin_ce(head, features[train_mask], labels[train_mask], w)
        (grad_w,) = torch.autograd.grad(l_tr, w, create_graph=second_order and outer_grad, retain_graph=outer_grad)
    if not (second_order and outer_grad):
        grad_w = grad_w.detach()
    w_prime = w - alpha * grad_w
    l_te = _margin_ce(head, features[test_mask], labels[test_mask], w_prime)
    loss = lambda_meta * l_tr + (1.0 - lambda_meta) * l_te
    with torch.no_grad():
        ratio = alpha * torch.linalg.vector_norm(grad_w.float()) / torch.linalg.vector_norm(w.float()).clamp_min(1e-12)
    return {"loss": loss, "L_tr": l_tr, "L_te": l_te, "meta_step_ratio": ratio}


class MetaDMFR(Method):
    terms = ("L_tr", "L_te")

    def __init__(self, config: dict, num_classes: int):
        super().__init__(config, num_classes)
        self.head = build_head(config["head"], self.embedding_size, num_classes)
        if not isinstance(self.head, MarginHead):  # the inner step needs all of w on every rank
            raise ConfigError("method meta needs a replicated head: set head.partial_fc_sample_rate to 1")
        self.lambda_meta = float(config["method"]["lambda_meta"])  # paper: 0.5
        self.alpha = float(config["method"]["meta_alpha"])

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        features = self.backbone(batch.images)
        if batch.meta_test is None:
            test_mask = torch.zeros_like(batch.domains, dtype=torch.bool)
        else:
            test_mask = batch.domains == batch.meta_test
        return meta_objective(self.head, features, batch.labels, test_mask, self.lambda_meta, self.alpha)
