"""`disentangle`: disentangle-based DMFR (paper, "Disentangle-based DMFR" and "Architecture").

The paper takes an intermediate map M (13×13×1024 in its net), feeds it to two trunks ending in
fully connected layers, f_entangle and f_non-id (d = 512 each), classifies f_id = f_entangle − f_non-id
and rebuilds M from f_entangle with a deconvolution decoder:

    L = L_cls(f_id) + λ_disen ‖M_recons − M‖₂

Here M is the output map of IResNet stage `method.disentangle_stage` (default 3). Trunk 1 is the
backbone's own remaining stages and head (fc + BN, so f_entangle is what a plain model would
embed); trunk 2 is a freshly initialised copy of the same layers (a copy of trunk 1's weights would
give f_id = 0 at the start, where the cosine head has no gradient direction). ‖·‖₂ is the per-sample
Euclidean norm over the map, averaged over the batch (its gradient has unit length per sample, so
λ_disen = 1 does not depend on the map size). M is detached as the target: the paper asks that
f_entangle be "capable of recovering the original feature map", i.e. M is what is recovered; letting
L_recons also move M would reward the encoder for shrinking M towards something easy to decode.
"""
from __future__ import annotations

import torch
from torch import nn

from dmfr.errors import ConfigError
from dmfr.heads import build_head
from dmfr.models import get_model

from .base import Batch, Method


class NonIdTrunk(nn.Module):
    """Stages `stage`+1..4 and the embedding head of a fresh IResNet: M → f_non-id."""

    def __init__(self, donor: nn.Module, stage: int):
        super().__init__()
        self.layers = nn.Sequential(*donor.stages[stage:])
        self.bn2, self.dropout, self.fc, self.features = donor.bn2, donor.dropout, donor.fc, donor.features

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.bn2(self.layers(m)), 1))
        with torch.autocast(device_type=x.device.type, enabled=False):  # as IResNet.head
            return self.features(self.fc(x.float()))


def _stage_shapes(backbone: nn.Module, input_size: int) -> list[tuple[int, int]]:
    """(channels, side) of each stage's output map; each stage halves with a stride-2 3×3 conv."""
    shapes, side = [], input_size
    for stage in backbone.stages:
        side = (side - 1) // 2 + 1
        shapes.append((stage[-1].bn3.num_features, side))
    return shapes


class MapDecoder(nn.Module):
    """Deconvolution decoder (paper, "Architecture"): f_entangle → the map M of stage `stage`.

    A linear layer to the last stage's map, then one stride-2 transposed conv per stage back up to
    `stage` (channels mirror the backbone's), then a 3×3 transposed conv with a linear output
    (M is a residual sum, any sign).
    """

    def __init__(self, embedding_size: int, shapes: list[tuple[int, int]], stage: int):
        super().__init__()
        channels, side = shapes[-1]
        self.start = (channels, side)
        self.fc = nn.Linear(embedding_size, channels * side * side)
        layers: list[nn.Module] = [nn.BatchNorm2d(channels), nn.PReLU(channels)]
        for j in range(len(shapes) - 1, stage - 1, -1):  # 0-based stage j back to stage j − 1
            (c_in, s_in), (c_out, s_out) = shapes[j], shapes[j - 1]
            output_padding = 1 if s_out % 2 == 0 else 0  # (s_in − 1)·2 − 2 + 3 + p = s_out
            assert 2 * s_in - 1 + output_padding == s_out
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=output_padding, bias=False),
                       nn.BatchNorm2d(c_out), nn.PReLU(c_out)]
        c_map = shapes[stage - 1][0]
        layers.append(nn.ConvTranspose2d(c_map, c_map, 3, stride=1, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        channels, side = self.start
        return self.body(self.fc(f).view(-1, channels, side, side))


def reconstruction_loss(m_recons: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """L_recons = ‖M_recons − M‖₂ per sample, batch mean; M is the (detached) target."""
    diff = m_recons.float() - m.detach().float()
    return torch.linalg.vector_norm(diff.flatten(1), dim=1).mean()


class DisentangleDMFR(Method):
    terms = ("L_cls", "L_recons")

    def __init__(self, config: dict, num_classes: int):
        super().__init__(config, num_classes)
        cfg, model = config["method"], config["model"]
        self.stage = int(cfg["disentangle_stage"])
        if not 1 <= self.stage <= 4:
            raise ConfigError(f"method.disentangle_stage: expected 1..4, got {self.stage}")
        self.lambda_disen = float(cfg["lambda_disen"])  # paper: 1.0
        donor = get_model(model["arch"], num_features=self.embedding_size, dropout=model["dropout"],
                          width=model["width"], input_size=config["data"]["image_size"])
        self.non_id_trunk = NonIdTrunk(donor, self.stage)
        self.decoder = MapDecoder(self.embedding_size, _stage_shapes(self.backbone, config["data"]["image_size"]), self.stage)
        self.head = build_head(config["head"], self.embedding_size, num_classes)

    def parts(self, images: torch.Tensor, decode: bool = True) -> dict[str, torch.Tensor]:
        """Every intermediate: M, f_entangle, f_non_id, f_id and (with `decode`) M_recons."""
        bb = self.backbone
        m = bb.stem(images)
        for stage in bb.stages[: self.stage]:
            m = stage(m)
        x = m
        for stage in bb.stages[self.stage:]:
            x = stage(x)
        f_entangle = bb.head(x)
        f_non_id = self.non_id_trunk(m)
        out = {"M": m, "f_entangle": f_entangle, "f_non_id": f_non_id, "f_id": f_entangle - f_non_id}
        if decode:
            out["M_recons"] = self.decoder(f_entangle)
        return out

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.parts(batch.images)
        l_cls = self.head(p["f_id"], batch.labels)
        l_recons = reconstruction_loss(p["M_recons"], p["M"])
        loss = l_cls + self.lambda_disen * l_recons
        return {"loss": loss, "L_cls": l_cls, "L_recons": l_recons}

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.parts(images, decode=False)["f_id"]
