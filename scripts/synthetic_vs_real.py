"""Figure: axial slices of a synthetic patient (arterial and venous, with the ROI) next to
the real CT of ../shared/data (TotalSegmentator example, Apache-2.0), same window.

    python scripts/synthetic_vs_real.py [--out docs/images/synthetic_vs_real.png] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from gastrorad.io import read_image, read_mask  # noqa: E402
from gastrorad.synth import synthesize  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "totalsegmentator" / "example_ct_sm.nii.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/images/synthetic_vs_real.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synthesize("s5", tmp, n=6, seed=args.seed, workers=2)
        m = pd.read_csv(Path(tmp) / "manifest.csv")
        truth = pd.read_csv(Path(tmp) / "truth.csv")
        pid = truth.sort_values("tumour_voxels").patient_id.iloc[-1]  # the most visible tumour
        rows = m[m.patient_id == pid].set_index("phase")
        panels = []
        for phase in ("arterial", "venous"):
            img = read_image(Path(tmp) / rows.loc[phase, "image"])
            mask = sitk.GetArrayFromImage(read_mask(Path(tmp) / rows.loc[phase, "mask"], img))
            k = int(np.argmax(mask.sum(axis=(1, 2))))
            panels.append((f"synthetic, {phase} (tumour ROI)", sitk.GetArrayFromImage(img)[k], mask[k],
                           img.GetSpacing()))
        mid = sitk.GetArrayFromImage(img)[int(img.GetSize()[2] * 0.3)]
        panels.append(("synthetic, venous, kidneys", mid, None, img.GetSpacing()))
    if REAL.exists():
        real = read_image(REAL)
        panels.append(("real CT (TotalSegmentator example)", sitk.GetArrayFromImage(real)[22], None, real.GetSpacing()))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4))
    for ax, (title, sl, mk, sp) in zip(axes, panels):
        extent = (0, sl.shape[1] * sp[0], sl.shape[0] * sp[1], 0)
        ax.imshow(sl, cmap="gray", vmin=-160, vmax=240, extent=extent)
        if mk is not None:
            ax.contour(np.linspace(0, extent[1], sl.shape[1]), np.linspace(0, extent[2], sl.shape[0]), mk, [0.5],
                       colors="red", linewidths=0.8)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle("W 400 / L 40 HU; radiological convention (patient's right on the left)", fontsize=9)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
