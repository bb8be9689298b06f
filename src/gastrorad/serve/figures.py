"""Pictures the page shows and downloads: the nomogram with one patient's points, and the
one-page PNG summary. pyplot is not thread-safe, so drawing is serialised by the house style's
lock (:data:`gastrorad.figures.style.DRAW_LOCK`), which Grad-CAM overlays of concurrent jobs hold too."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np

from gastrorad.figures.style import DRAW_LOCK as _DRAW
from gastrorad.serve.registry import ServedModel


def nomogram_of(model: ServedModel):
    """The bundle's nomogram (:class:`gastrorad.models.nomogram.Nomogram`) from fit.json, or None."""
    from gastrorad.models.nomogram import Axis, Nomogram

    name = model.info.get("nomogram_model")
    spec = model.fit["models"].get(name or "", {})
    if "nomogram" not in spec:
        return None
    n = spec["nomogram"]
    axes = [Axis(a["name"], a["values"], np.asarray(a["xbeta"], float), a["categorical"], a["coef"])
            for a in n["axes"]]
    return Nomogram(axes, n["intercept"], n["sc"], spec["kind"],
                    {float(t): s for t, s in spec.get("baseline_survival", {}).items()})


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def nomogram_png(model: ServedModel, points: dict | None) -> bytes | None:
    from gastrorad.figures.nomogram import plot_nomogram
    nomo = nomogram_of(model)
    if nomo is None:
        return None
    with _DRAW:
        fig = plot_nomogram(nomo, title=f"Nomogram: {model.info['nomogram_model']}", patient=points,
                            time_unit=model.info.get("time_unit", ""))
        return _png(fig)


def _result_lines(model: ServedModel, result: dict) -> list[str]:
    unit = model.info.get("time_unit", "")
    lines = []
    for name, r in result["models"].items():
        if r["score"] is None:
            lines.append(f"{name}: needs the image signature (image job)")
            continue
        what = (f"probability {r['probability']:.3f}" if "probability" in r else
                "; ".join(f"{float(t):g}-{unit} survival {s:.3f}" for t, s in r.get("survival", {}).items())
                or f"linear predictor {r['lp']:.3f}")
        lines.append(f"{name}: {what}; risk group {r['risk_group'].upper()} (locked cut-off {r['cutoff']:.3f})")
    return lines


def summary_png(model: ServedModel, result: dict, values: dict, *, kind: str, gradcam: Path | None,
                created: str) -> bytes:
    """One page (A4 portrait proportions): model and bundle hash, inputs, results, flags,
    the nomogram with the patient's points and the Grad-CAM overlay when there is one."""
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    from gastrorad.figures.style import RC

    nomo_bytes = nomogram_png(model, (result.get("nomogram") or {}).get("points"))
    with _DRAW, plt.rc_context(RC):
        fig = plt.figure(figsize=(8.27, 11.69))
        text = fig.add_axes([0.06, 0.52, 0.88, 0.45])
        text.axis("off")
        body = [f"gastrorad: {model.card.get('title', model.info['study'])}  ({kind})",
                f"Study ID: {result['patient_id']}    {created} UTC",
                f"Bundle SHA-256: {model.bundle_hash}",
                f"Outcome: {model.card.get('outcome', model.info['outcome'])}", "",
                "Inputs: " + ", ".join(f"{k} = {v}" for k, v in values.items()), "", "Results:"]
        body += ["  " + ln for ln in _result_lines(model, result)]
        if result.get("signature"):
            body.append("  image signature: " + ", ".join(f"{k} = {v:.4f}" for k, v in result["signature"].items()
                                                          if v is not None))
        perf = model.card.get("performance") or []
        metric = model.card.get("metric", "")
        for name in result["models"]:
            rows = [r for r in perf if r["model"] == name and r.get("auc_or_c") is not None]
            cells = [f"{r['cohort']} {r['auc_or_c']:.3f}" + (f" ({r['lower']:.3f}-{r['upper']:.3f})"
                                                              if r.get("lower") is not None else "") for r in rows]
            if cells:
                body += textwrap.wrap(f"{name} {metric} (95% CI): " + "; ".join(cells), 100,
                                      initial_indent="  ", subsequent_indent="    ")
        flags = result.get("flags") or []
        if flags:
            body += ["", "Flags:"] + [f"  {f['variable']}: {f['reason']}" for f in flags]
        body += ["", textwrap.fill("Intended use: " + model.card.get("intended_use", "not stated in this bundle"),
                                   110)]
        # parse_math off: a study ID such as "P$x$" is drawn as typed, never as math text
        text.text(0, 1, "\n".join(body), va="top", ha="left", fontsize=8, family="monospace", parse_math=False)
        panels = [b for b in (nomo_bytes, gradcam.read_bytes() if gradcam and gradcam.exists() else None) if b]
        for i, data in enumerate(panels):
            ax = fig.add_axes([0.04 + i * 0.48, 0.03, 0.46 if len(panels) > 1 else 0.92, 0.47])
            ax.imshow(mpimg.imread(io.BytesIO(data), format="png"))
            ax.axis("off")
        return _png(fig)
