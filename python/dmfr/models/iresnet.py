"""IResNet backbones with insightface arcface_torch's exact module names and shapes.

Mirrors `recognition/arcface_torch/backbones/iresnet.py` (block counts, BN eps 1e-5, PReLU,
the BN-Conv-BN-PReLU-Conv-BN basic block, `fc` + `features` BatchNorm1d with a frozen weight),
so an arcface_torch `backbone.pth` loads with `strict=True`. Two additions for small machines,
neither of which changes names: `width` scales every stage's channels, and `input_size` sets the
final feature-map size (112 → 7×7 as in arcface_torch).
"""
from __future__ import annotations

import torch
from torch import nn

# arcface_torch's get_model: r18/r34/r50/r100/r200 block counts.
# (arcface_torch's backbones/__init__.py: iresnet18 … iresnet200.)
LAYERS = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
    "r_tiny": (1, 1, 1, 1),  # dmfr's CPU smoke-test depth; not an arcface_torch architecture
}


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class IBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


def _stage_output_size(size: int) -> int:
    # conv3x3, stride 2, padding 1: out = floor((n - 1) / 2) + 1, four times.
    for _ in range(4):
        size = (size - 1) // 2 + 1
    return size


class IResNet(nn.Module):
    def __init__(
        self,
        layers: tuple[int, int, int, int],
        num_features: int = 512,
        dropout: float = 0.0,
        width: float = 1.0,
        input_size: int = 112,
    ):
        super().__init__()
        planes = [max(4, int(round(c * width))) for c in (64, 64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.input_size = input_size
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(planes[1], layers[0], stride=2)
        self.layer2 = self._make_layer(planes[2], layers[1], stride=2)
        self.layer3 = self._make_layer(planes[3], layers[2], stride=2)
        self.layer4 = self._make_layer(planes[4], layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(planes[4], eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc_scale = _stage_output_size(input_size) ** 2
        self.fc = nn.Linear(planes[4] * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False  # as arcface_torch: the last BN only shifts
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes, eps=1e-05))
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn1(self.conv1(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """From layer4's output map to the embedding.

        As arcface_torch, `fc` and `features` run in float32 outside autocast (its forward closes
        the autocast block before `self.fc(x.float())`).
        """
        x = torch.flatten(self.bn2(x), 1)
        x = self.dropout(x)
        kind = x.device.type
        if kind in ("cuda", "cpu") and torch.is_autocast_enabled(kind):
            with torch.autocast(device_type=kind, enabled=False):
                return self.features(self.fc(x.float()))
        return self.features(self.fc(x.float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def get_model(name: str, num_features: int = 512, dropout: float = 0.0, width: float = 1.0, input_size: int = 112) -> IResNet:
    if name not in LAYERS:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(LAYERS)}")
    return IResNet(LAYERS[name], num_features=num_features, dropout=dropout, width=width, input_size=input_size)
