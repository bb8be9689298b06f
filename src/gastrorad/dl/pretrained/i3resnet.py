"""An inflated ResNet-152 (I3ResNet) whose state dict matches Merlin's and Astra's image encoder.

The architecture is a torchvision ResNet-152 (bottleneck v1.5: the stride sits in the 3x3
convolution) with every 2D kernel inflated to 3D, as described for Merlin (Blankemeier et
al., 2024, "Merlin: a vision language foundation model for 3D computed tomography") and
in the MIT-licensed reference code (github.com/StanfordMIMI/Merlin, ``merlin/models/i3res.py``):

- stem: ``conv1`` 3x7x7 kernel, stride (1, 2, 2), padding (1, 3, 3), no bias; ``bn1``; ReLU;
  a 3x3x3 max-pool with stride 2 and padding 1;
- ``layer1..layer4``: 3, 8, 36 and 3 bottlenecks of widths 64, 128, 256, 512 (outputs four
  times wider); 1x1x1 / 3x3x3 / 1x1x1 convolutions, the 3x3x3 one strided by 2 in every axis
  in the first block of layers 2-4, with a strided 1x1x1 projection (``downsample.0``,
  ``downsample.1``) where the shape changes;
- no pooling and no classifier: the pretrained files hold the image backbone only.

The first convolution takes three channels; a one-channel CT volume is repeated three times
(as the reference does), so published weights load unchanged.

Axis convention of this module (the published one, see :mod:`gastrorad.dl.pretrained`):
``forward`` and ``forward_features`` take ``[B, 1, X, Y, Z]`` (RAS, 0..1) and convolve in the
internal order ``[B, C, Z, X, Y]``, so the "depth" axis of every kernel is Z (slices) and
the stem keeps the slice resolution. Feature maps are returned in the input's order.

``spatial_dims=2`` builds the same network with 2D kernels (same state-dict keys, kernels
without the depth axis); see :func:`collapse_depth` (experimental).

Written for gastrorad from the published description; no code of other packages is copied.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

RESNET152_LAYERS = (3, 8, 36, 3)
STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")
STAGE_CHANNELS = (64, 256, 512, 1024, 2048)


def _ops(spatial_dims: int):
    if spatial_dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convolutions with batch norm and an identity or projected shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, spatial_dims: int):
        super().__init__()
        conv, bn, _ = _ops(spatial_dims)
        out = planes * self.expansion
        self.conv1 = conv(in_planes, planes, 1, bias=False)
        self.bn1 = bn(planes)
        self.conv2 = conv(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = bn(planes)
        self.conv3 = conv(planes, out, 1, bias=False)
        self.bn3 = bn(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(conv(in_planes, out, 1, stride=stride, bias=False), bn(out))
                           if stride != 1 or in_planes != out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class I3ResNet(nn.Module):
    """Inflated ResNet (default: ResNet-152) image encoder with Merlin/Astra state-dict keys.

    Args:
        layers: Bottlenecks per stage; ``(3, 8, 36, 3)`` is ResNet-152 (the pretrained one).
            Smaller tuples build depth-reduced variants of the same class (tests).
        in_channels: Channels of the input. 1 (a CT volume) is repeated to the three channels
            of the pretrained stem; any other count gets a stem with that many channels, whose
            pretrained kernel is adapted on loading (:func:`gastrorad.dl.pretrained.registry.load_weights`).
        spatial_dims: 3 (the published network) or 2 (experimental, :func:`collapse_depth`).

    Example:
        >>> net = I3ResNet(layers=(1, 1, 1, 1)).eval()
        >>> [f.shape[1] for f in net.forward_features(torch.zeros(1, 1, 32, 32, 16))]
        [64, 256, 512, 1024, 2048]
    """

    def __init__(self, *, layers: Sequence[int] = RESNET152_LAYERS, in_channels: int = 1, spatial_dims: int = 3):
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers needs four positive block counts, got {tuple(layers)}")
        conv, bn, pool = _ops(spatial_dims)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        stem_in = 3 if in_channels == 1 else in_channels
        if spatial_dims == 3:
            self.conv1 = conv(stem_in, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        else:
            self.conv1 = conv(stem_in, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = pool(3, stride=2, padding=1)
        in_planes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(in_planes, planes, 2 if (j == 0 and i > 0) else 1, spatial_dims))
                in_planes = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = in_planes
        self.stage_channels = STAGE_CHANNELS
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation as torchvision's ResNet; matters only without pretrained weights.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _to_internal(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected a {self.spatial_dims + 2}D tensor [B, C, ...], got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got {x.shape[1]}")
        if self.in_channels == 1:
            x = x.expand(-1, 3, *x.shape[2:])
        # [B, C, X, Y, Z] -> [B, C, Z, X, Y]: the kernels' depth axis is the slice axis.
        return x.permute(0, 1, 4, 2, 3) if self.spatial_dims == 3 else x

    def _from_internal(self, f: torch.Tensor) -> torch.Tensor:
        return f.permute(0, 1, 3, 4, 2) if self.spatial_dims == 3 else f

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every stage, in :data:`STAGE_NAMES` order (stem before the max-pool).

        ``x``: ``[B, C, X, Y, Z]`` (3D) or ``[B, C, X, Y]`` (2D). Each map comes back in the
        input's axis order, e.g. ``[B, 2048, X/32, Y/32, Z/16]`` for layer4.
        """
        h = self.relu(self.bn1(self.conv1(self._to_internal(x))))
        out = [h]
        h = self.maxpool(h)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            h = layer(h)
            out.append(h)
        return [self._from_internal(f) for f in out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (no pooling, no head)."""
        return self.forward_features(x)[-1]


def collapse_depth(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn a 3D I3ResNet state dict into a 2D one by summing every kernel over its depth axis.

    **Experimental.** For an input that is constant along depth, a 3D convolution with depth
    padding equals the 2D convolution with the depth-summed kernel at every slice whose
    depth neighbourhood lies inside the volume; the 2D network therefore reproduces the 3D
    one on a thick, depth-constant volume away from its top and bottom slices, and is an
    approximation for real 2D slices. Batch-norm tensors are unchanged.
    """
    return {k: (v.sum(dim=2) if v.ndim == 5 else v) for k, v in state_dict.items()}


def i3resnet2d_from_3d(net3d: I3ResNet) -> I3ResNet:
    """**Experimental**: a 2D ResNet whose kernels are ``net3d``'s summed over depth.

    Input ``[B, C, X, Y]`` in the same in-plane convention as the 3D network (an axial
    slice with X to the patient's right and Y anterior, 0..1); see :func:`collapse_depth`.
    """
    layers = tuple(len(getattr(net3d, f"layer{i}")) for i in range(1, 5))
    net2d = I3ResNet(layers=layers, in_channels=net3d.in_channels, spatial_dims=2)
    net2d.load_state_dict(collapse_depth(net3d.state_dict()), strict=True)
    return net2d.train(net3d.training)
