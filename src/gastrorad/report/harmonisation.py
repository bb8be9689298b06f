"""The report's "Centre effects and harmonisation" section: how much the features differ by
centre before (and after) ComBat, from what the signature stage recorded (``signatures.json``
``centre_effects`` and ``harmonize``, ``centre_effects.csv``), with the PCA figures."""

from __future__ import annotations

import html
import json

import pandas as pd

from gastrorad.config.study import StudyConfig

_TABLES = {"deep": "Deep features", "handcrafted": "Handcrafted (IBSI) features"}


def _share(s: dict | None) -> str:
    if not s or not s.get("tested"):
        return "&ndash;"
    return f"{s['significant']}/{s['tested']} ({100 * s['significant'] / s['tested']:.1f}%)"


def _centres(d: dict) -> str:
    return ", ".join(f"{html.escape(str(c))} (n={n})" for c, n in d.items()) or "&ndash;"


def centre_effects_section(cfg: StudyConfig) -> str:
    """The section's HTML ("" when the run recorded no centre effect: one centre, or no features);
    draws ``figures/centre_effects/<table>_<phase>.png`` (and .svg)."""
    from gastrorad.figures import plot_centre_effects, save_figure
    from gastrorad.report.html import _figure
    out = cfg.output_dir
    path = out / "signatures.json"
    if not path.exists():
        return ""
    info = json.loads(path.read_text(encoding="utf-8"))
    effects, harm = info.get("centre_effects") or {}, info.get("harmonize") or {}
    if not effects:
        return ""
    pcs_path = out / "centre_effects.csv"
    pcs = pd.read_csv(pcs_path, dtype={"patient_id": str, "centre": str}) if pcs_path.exists() else None
    rows = ["<table><caption>Features whose distribution differs across centres: Kruskal-Wallis test per feature "
            "on every patient with features, Benjamini-Hochberg FDR &lt; 5%</caption><thead><tr>",
            "".join(f"<th>{c}</th>" for c in ["Features", "Phase", "Centres", "Before", "After harmonisation",
                                               "Centres in training", "Adapted (label-free)", "Left as they are"]),
            "</tr></thead><tbody>"]
    figs = []
    for kind, phases in effects.items():
        for phase, s in phases.items():
            rec = harm.get(kind, {}).get(phase, {})
            key = f"centre_effects|{kind}|{phase}"
            cells = [_TABLES.get(kind, kind), html.escape(phase), html.escape(", ".join(s["before"]["centres"])),
                     f'<span data-metric="{key}|before">{_share(s.get("before"))}</span>',
                     f'<span data-metric="{key}|after">{_share(s.get("after"))}</span>' if "after" in s
                     else "not harmonised", _centres(rec.get("centres_seen", {})) if rec else "&ndash;",
                     _centres(rec.get("adapted", {})) if rec else "&ndash;",
                     _centres(rec.get("left_as_is", {})) if rec else "&ndash;"]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            if pcs is not None:
                d = pcs[(pcs.table == kind) & (pcs.phase == phase)]
                if not d.empty:
                    stem = out / "figures" / "centre_effects" / f"{kind}_{phase}"
                    stem.parent.mkdir(parents=True, exist_ok=True)
                    save_figure(plot_centre_effects(d, s, title=f"{_TABLES.get(kind, kind)}, {phase}"), stem)
                    figs.append(_figure(stem.with_suffix(".png"), f"{_TABLES.get(kind, kind)} ({phase}): first two "
                                        "principal components of the standardised features, by centre"))
    rows.append("</tbody></table>")
    h = cfg.harmonize
    if h.enabled:
        note = (f"ComBat ({'parametric' if h.parametric else 'non-parametric'} empirical Bayes, as sva::ComBat) "
                f"fitted on the training cohort by centre"
                + (f", keeping the effect of {', '.join(h.covariates)}" if h.covariates else "")
                + "; applied to every patient of a training centre with the training estimates. ")
        if any(rec.get("adapted") for t in harm.values() if isinstance(t, dict) for rec in t.values()
               if isinstance(rec, dict)):
            note += (f"A centre absent from training with at least {h.new_centre_min} patients was adapted label-free: "
                     "its location and scale were estimated from its own features (never its outcomes), so its "
                     "patients were not processed one at a time as new patients would be; report this under "
                     "TRIPOD+AI item 7 (data preparation). ")
        note += "Features constant, or with one value in more than half of a centre's patients, are left as they are."
    else:
        note = ("No harmonisation (harmonize.method: none). A large share of features differing by centre suggests "
                "harmonize: {method: combat}; see docs/how-to/harmonisation.md.")
    notes = [n for t in harm.values() if isinstance(t, dict) for rec in t.values() if isinstance(rec, dict)
             for n in rec.get("notes", [])]
    detail = ("<details><summary>Notes of the harmonisation</summary><ul>"
              + "".join(f"<li>{html.escape(n)}</li>" for n in dict.fromkeys(notes)) + "</ul></details>"
              if notes else "")
    return "".join(rows) + f"<p class='note'>{html.escape(note)}</p>" + detail + \
        (f'<div class="figs">{"".join(figs)}</div>' if figs else "")
