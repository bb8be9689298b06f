"""Grad-CAM and guided Grad-CAM (MONAI) for 2D and 3D models, and overlays on the CT.

The guided map is Grad-CAM times the guided-backpropagation gradient (Selvaraju et al.
2017), as S1 shows. :func:`roi_focus` measures how much of a map falls in the ROI, the
numeric check used on synthetic data (the lesion should draw more of the map than the
background).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from gastrorad.io.safe_paths import inside

CAM_LAYERS = {"resnet": "backbone.layer4", "densenet": "backbone.features_", "efficientnet": "backbone.bn1",
              "seresnext": "backbone.layer4", "vgg": "backbone.features_", "tiny": "backbone.body"}


def cam_layer(net) -> str:
    for prefix, layer in CAM_LAYERS.items():
        if net.name.startswith(prefix):
            return layer
    raise KeyError(f"no Grad-CAM layer known for backbone '{net.name}'")


def _minmax(x):
    """Per-image min-max scaling to [0, 1] (MONAI's default normaliser flips the scale)."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1).values.reshape(-1, *[1] * (x.ndim - 1))
    hi = flat.max(dim=1).values.reshape(-1, *[1] * (x.ndim - 1))
    return (x - lo) / (hi - lo + 1e-8)


def grad_cam(net, x: torch.Tensor, *, guided: bool = False) -> np.ndarray:
    """Class-activation maps (B, *spatial) in [0, 1] (1 = most evidence for the output)."""
    from monai.visualize import GradCAM
    net.eval()
    cam = GradCAM(nn_module=net, target_layers=cam_layer(net), postprocessing=_minmax)
    maps = cam(x=x.clone().requires_grad_(True), class_idx=0).detach().cpu().numpy()[:, 0]
    if guided:
        from monai.visualize import GuidedBackpropGrad
        g = GuidedBackpropGrad(net)(x.clone().requires_grad_(True), index=0).detach().cpu().numpy()
        g = np.abs(g).max(axis=1)
        g = g / (g.max(axis=tuple(range(1, g.ndim)), keepdims=True) + 1e-8)
        maps = maps * g
        maps = maps / (maps.max(axis=tuple(range(1, maps.ndim)), keepdims=True) + 1e-8)
    return maps


def roi_focus(cam: np.ndarray, mask: np.ndarray) -> float:
    """Mean map value inside the ROI divided by the mean outside (> 1: the ROI draws more)."""
    inside, outside = cam[mask > 0.5], cam[mask <= 0.5]
    return float(inside.mean() / max(outside.mean(), 1e-8))


def save_overlay(image: np.ndarray, cam: np.ndarray, path: str | Path, *, mask: np.ndarray | None = None,
                 title: str = "") -> Path:
    """A CT slice with the heat map and the ROI contour, as PNG (atomically)."""
    from gastrorad.figures.style import new_figure, save_figure, styled

    @styled
    def draw():
        fig, ax = new_figure(3.0, 3.0)
        ax.imshow(image, cmap="gray")
        ax.imshow(cam, cmap="jet", alpha=0.35, vmin=0, vmax=1)
        if mask is not None and mask.any():
            ax.contour(mask, [0.5], colors="white", linewidths=0.8)
        ax.set_title(title, fontsize=8, parse_math=False)  # study IDs are drawn as typed, never as math
        ax.axis("off")
        return fig

    png, svg = save_figure(draw(), Path(path).with_suffix(""), dpi=150)
    svg.unlink()
    return png


def explain_study(cfg, *, checkpoint: str | Path | None = None, limit: int = 12, guided: bool = True):
    """Grad-CAM overlays for up to ``limit`` patients per cohort, into ``<output>/explain/``.

    Returns a table (patient_id, cohort, png, roi_focus) where roi_focus uses the patch's
    mask channel when it has one. Patients are independent tasks (one patch through the
    network each), so they run where the study's ``compute:`` section says; each worker
    loads the network once.
    """
    import json

    import pandas as pd

    from gastrorad.dl.data import load_sample_table
    from gastrorad.dl.train import model_dir
    from gastrorad.io.atomic import atomic_write_text
    from gastrorad.io.compute import Compute, map_patients

    if checkpoint is None:
        checkpoint = json.loads((model_dir(cfg) / "models.json").read_text(encoding="utf-8"))["checkpoints"][0]
    samples = load_sample_table(cfg)
    out_dir = cfg.output_dir / "explain"
    first = samples.frame.drop_duplicates("patient_id")
    tasks = [(i, str(checkpoint), r.path, int(r.index), str(r.patient_id), str(cohort),
              str(inside(out_dir, str(cohort), f"{r.patient_id}.png")), guided)
             for i, (cohort, r) in enumerate((c, r) for c, g in first.groupby("cohort", sort=True)
                                             for r in g.head(limit).itertuples())]
    compute = Compute.from_settings(cfg.compute, default_workers=cfg.preprocess.workers)
    rows = sorted(map_patients(explain_patient, tasks, compute), key=lambda r: r.pop("order"))
    table = pd.DataFrame(rows)
    atomic_write_text(out_dir / "gradcam.csv", table.to_csv(index=False))
    return table


def explain_patient(task: tuple) -> dict:
    """One patient's Grad-CAM overlay (a task of :func:`explain_study`)."""
    from gastrorad.preprocess.cache import load_patches

    order, checkpoint, patch_path, index, patient_id, cohort, png, guided = task
    net = _network(checkpoint, *_stamp(checkpoint))
    arr, channels, _ = load_patches(patch_path)
    x = arr[index] if index >= 0 else arr
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)[None]
    cam = grad_cam(net, xt, guided=guided)[0]
    centre = channels.index("slice+0") if "slice+0" in channels else x.shape[0] // 2
    image = x[centre] if x.ndim == 3 else x[0, x.shape[1] // 2]
    if cam.ndim == 3:
        cam = cam[cam.shape[0] // 2]
    mask = x[channels.index("mask")] if "mask" in channels else None
    png = save_overlay(image, cam, png, mask=mask, title=f"{patient_id} ({cohort})")
    return {"order": order, "patient_id": patient_id, "cohort": cohort, "png": str(png),
            "roi_focus": roi_focus(cam, mask) if mask is not None and mask.any() else np.nan}


def _stamp(path: str) -> tuple[int, int]:
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _network(checkpoint: str, size: int, mtime_ns: int):
    """The network of a checkpoint file, loaded once per process (and again when the file changes)."""
    from gastrorad.dl.train import load_checkpoint
    return load_checkpoint(checkpoint)
