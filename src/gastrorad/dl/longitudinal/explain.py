"""Grad-CAM per ROI for S3's LDLM: which part of each lesion, at each time point, pushed the
patient's predicted risk up.

The gradient of the patient's log-risk flows back through the OH-former and the TH-former to
every ROI's last feature map; each ROI's map is the ReLU of its channels weighted by their
mean gradient (Selvaraju et al. 2017), upsampled to the patch and scaled to [0, 1]. One
figure per patient: lesions in rows, time points in columns.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from gastrorad.io.atomic import atomic_write_text
from gastrorad.io.safe_paths import inside


def roi_grad_cams(net, batch: dict, layer: torch.nn.Module) -> torch.Tensor:
    """Maps (L, T, H, W) for one patient (``batch`` with a leading batch axis of 1)."""
    store = {}

    def hook(_module, _inp, out):
        out.retain_grad()
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        net.eval()
        net.zero_grad()
        # the input asks for a gradient, so the maps get one even when the extractor's weights are frozen
        batch = {**batch, "x": batch["x"].detach().clone().requires_grad_(True)}
        out = net(batch)
        out.sum().backward()
    finally:
        handle.remove()
    a, g = store["a"], store["a"].grad
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    size = batch["x"].shape[-2:]
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = cam.reshape(cam.shape[0], -1)
    cam = (cam - flat.min(1).values[:, None, None]) / (flat.max(1).values - flat.min(1).values + 1e-8)[:, None, None]
    mask = batch["mask"][0]
    maps = torch.zeros((*mask.shape, *size))
    maps[mask] = cam.detach()
    return maps


def _feature_layer(net) -> torch.nn.Module:
    from gastrorad.dl.explain import cam_layer
    backbone = net.extractor.backbone
    module = backbone
    for part in cam_layer(backbone).split("."):
        module = getattr(module, part)
    # a Sequential's output is its last child's: hook that, which also fires when a frozen extractor
    # runs the backbone stage by stage (slices of the Sequential, not the Sequential itself)
    while isinstance(module, torch.nn.Sequential) and len(module):
        module = module[-1]
    return module


def explain_longitudinal(cfg, *, limit: int = 6) -> pd.DataFrame:
    """Grid figures of Grad-CAM per ROI for up to ``limit`` patients per cohort (the first
    seed's LDLM, with every follow-up it may use); ``<output>/explain/gradcam.csv``."""
    from gastrorad.dl.longitudinal.data import SequenceDataset
    from gastrorad.dl.longitudinal.train import _clinical, load_two_level, sequences
    from gastrorad.figures.style import save_figure, styled
    lc = cfg.longitudinal
    meta = json.loads((cfg.output_dir / "models" / "longitudinal.json").read_text(encoding="utf-8"))
    net, _ = load_two_level(cfg, meta["ldlm"][0])
    clinical = _clinical(cfg)
    seq = sequences(cfg, "ldlm", clinical)
    layer = _feature_layer(net)
    setting = max(lc.apply_followups.values()) if lc.apply_followups else lc.max_timepoints - 1
    rows = []
    for cohort, g in clinical.groupby("cohort", sort=True):
        patients = [p for p in g.patient_id if seq.items.get(p)][:limit]
        ds = SequenceDataset(seq, patients, None, max_objects=lc.max_lesions, max_timepoints=lc.max_timepoints,
                             followups=setting)
        for i, pid in enumerate(patients):
            item = ds[i][0]
            batch = {"x": item["x"][None].clone().requires_grad_(False), "mask": item["mask"][None]}
            maps = roi_grad_cams(net, batch, layer).numpy()
            obs = item["mask"].numpy()
            lesions = [k for k in range(obs.shape[0]) if obs[k].any()]
            times = [t for t in range(obs.shape[1]) if obs[:, t].any()]
            names = seq.objects[pid]

            @styled
            def draw():
                import matplotlib.pyplot as plt
                fig, axes = plt.subplots(len(lesions), len(times), figsize=(1.6 * len(times), 1.6 * len(lesions)),
                                         squeeze=False)
                for r, k in enumerate(lesions):
                    for c, t in enumerate(times):
                        ax = axes[r][c]
                        ax.axis("off")
                        if not obs[k, t]:
                            continue
                        img = item["x"][k, t].numpy()
                        ax.imshow(img[img.shape[0] // 2], cmap="gray")
                        ax.imshow(maps[k, t], cmap="jet", alpha=0.35, vmin=0, vmax=1)
                        ax.set_title(f"{names[k][1] or names[k][0]}, t{t}", fontsize=6)
                fig.suptitle(f"{pid} ({cohort})", fontsize=8, parse_math=False)
                return fig

            png, svg = save_figure(draw(), inside(cfg.output_dir / "explain", str(cohort), str(pid)), dpi=120)
            svg.unlink()
            rows.append({"patient_id": pid, "cohort": cohort, "png": str(png), "roi_focus": np.nan})
    table = pd.DataFrame(rows, columns=["patient_id", "cohort", "png", "roi_focus"])
    atomic_write_text(cfg.output_dir / "explain" / "gradcam.csv", table.to_csv(index=False))
    return table
