"""``gastrorad report``: one self-contained HTML file (inline CSS, figures as embedded PNG),
that opens offline, built only from what the run wrote (``metrics/metrics.json``, the CSVs,
the figures, ``models/fit.json``), so the report cannot disagree with the metrics.

Every headline number carries ``data-metric="<table>|<cohort>|<model>|<column>"`` so a
reader (or a test) can trace it to its JSON record.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from pathlib import Path

import pandas as pd

from gastrorad.config.study import StudyConfig
from gastrorad.errors import InputError, Problem
from gastrorad.evaluation.frame import signature_display
from gastrorad.io.atomic import atomic_write_text
from gastrorad.models.pipeline import file_stem
from gastrorad.report.tripod import tripod_checklist
from gastrorad.report.versions import software_versions

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 32px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;border-bottom:2px solid #2a6f97;padding-bottom:4px;margin-top:36px}
h3{font-size:16px;margin-top:22px}.meta{color:#555;font-size:13px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:12.5px}
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#eef3f7;text-align:center}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0;width:360px}
.figs img{width:100%;border:1px solid #eee}.wide img{width:100%;max-width:900px}
figcaption{font-size:12px;color:#444;text-align:center}
nav{font-size:13px;margin:12px 0}nav a{margin-right:10px;color:#2a6f97}
.note{background:#f4f8fb;border-left:4px solid #2a6f97;padding:6px 12px;font-size:13px}
.gallery figure{width:170px}.ok{color:#217a3c}.todo{color:#a05a00}
details{margin:8px 0}pre{font-size:11.5px;background:#f6f6f6;padding:8px;overflow-x:auto}
"""


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&ndash;"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _p(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "&ndash;"
    return "&lt;0.001" if v < 0.001 else f"{v:.3f}"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _figure(path: Path, caption: str) -> str:
    if not path.exists():
        return ""
    return (f'<figure><img alt="{html.escape(caption)}" src="{_img(path)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(df: pd.DataFrame, caption: str = "", digits: int = 3, p_cols=("p",)) -> str:
    if df is None or df.empty:
        return ""
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns) + "</tr></thead><tbody>")
    for rec in df.to_dict("records"):
        cells = []
        for c, v in rec.items():
            cells.append(f"<td>{_p(v) if c in p_cols or str(c).endswith('_p') else _fmt(v, digits)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


class _Report:
    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.out = cfg.output_dir
        path = self.out / "metrics" / "metrics.json"
        if not path.exists():
            raise InputError(Problem(str(path), "no metrics: run `gastrorad evaluate` first"))
        self.m = json.loads(path.read_text(encoding="utf-8"))
        fit_path = self.out / "models" / "fit.json"
        self.fit = json.loads(fit_path.read_text(encoding="utf-8")) if fit_path.exists() else {}
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, body)

    def table(self, name: str) -> pd.DataFrame:
        return pd.DataFrame(self.m["tables"].get(name, []))

    def csv(self, name: str) -> pd.DataFrame:
        p = self.out / "metrics" / f"{name}.csv"
        return pd.read_csv(p) if p.exists() and p.stat().st_size > 1 else pd.DataFrame()

    def figs(self, kind: str, caption: str, css: str = "figs") -> str:
        items = [_figure(self.out / rel, f"{caption}: {Path(rel).stem.split('_', 1)[-1]}")
                 for rel in self.m.get("figures", {}).get(kind, [])]
        return f'<div class="{css}">{"".join(items)}</div>' if items else ""

    def add(self, anchor: str, title: str, body: str) -> None:
        if body.strip():
            self.sections.append((anchor, title, body))

    # -- sections ---------------------------------------------------------------------------------------------
    def summary(self) -> None:
        cfg = self.cfg
        co = self.table("cohorts")
        if cfg.cohorts.column:
            rule = f"cohorts taken from the clinical column <code>{html.escape(cfg.cohorts.column)}</code>"
        else:
            sp = cfg.cohorts.split
            who = f"centre(s) {', '.join(sp.centers)}" if sp.centers else "all patients (one centre)"
            parts = [f"{who} split {':'.join(str(int(v)) if float(v).is_integer() else str(v) for v in sp.ratio.values())} "
                     f"into {', '.join(sp.ratio)} ({'stratified by outcome, ' if sp.stratify else ''}seed {cfg.seed})"]
            if cfg.cohorts.external:
                parts.append("; ".join(f"centre {k} &rarr; {v}" for k, v in cfg.cohorts.external.items()))
            if cfg.cohorts.prospective:
                parts.append(f"prospective: {html.escape(cfg.cohorts.prospective.column)}")
            rule = "; ".join(parts)
        o = cfg.outcome
        outcome = (f"binary (<code>{o.label}</code>)" if o.kind == "binary"
                   else f"survival (<code>{o.time}</code>, <code>{o.event}</code>, {o.time_unit})")
        flow = " &rarr; ".join(f"{html.escape(str(r['cohort']))} (n={r['patients']})" for r in self.m["tables"]["cohorts"])
        body = (f"<p>Outcome: {outcome}. Cohorts: {rule}.</p><p class='note'>Cohort flow: {flow}. Models, selection, "
                f"imputation, normalisation and cut-offs were fitted on the training cohort only and applied "
                f"unchanged to the others.</p>" + _table(co, "Cohorts", digits=1))
        self.add("summary", "Study summary and cohort flow", body)

    def table_one(self) -> None:
        from gastrorad.models.pipeline import _clinical_with_cohorts
        from gastrorad.stats.table1 import table_one, table_one_by_cohort, table_one_html
        cfg = self.cfg
        variables = [v for v in cfg.clinical.variables]
        if not variables:
            return
        clin = _clinical_with_cohorts(cfg)
        try:
            if cfg.outcome.kind == "binary":
                t = table_one_by_cohort(clin, cfg.outcome.label, "cohort", variables, categorical=cfg.clinical.categorical)
                t.columns = [" ".join(str(x) for x in c) for c in t.columns]
                t = t.reset_index()
                atomic_write_text(self.out / "metrics" / "table1.csv", t.to_csv(index=False))
                body = _table(t, "Table 1: characteristics by outcome within each cohort (Mann-Whitney U / "
                                 "chi-square or Fisher)", digits=3, p_cols=[c for c in t.columns if c.endswith(" p")])
            else:
                t = table_one(clin, "cohort", variables, categorical=cfg.clinical.categorical)
                atomic_write_text(self.out / "metrics" / "table1.csv", t.to_csv(index=False))
                body = table_one_html(t, "Table 1: characteristics by cohort")
        except (ValueError, KeyError) as exc:
            body = f"<p class='todo'>Table 1 could not be computed: {html.escape(str(exc))}</p>"
        self.add("table1", "Table 1", body)

    def models_table(self) -> None:
        m = self.m
        perf = self.table("performance")
        if perf.empty:
            return
        oracle = {r["cohort"]: r for r in m["tables"].get("oracle", [])}
        stat = "AUC" if m["outcome"] == "binary" else "C-index"
        ref = m["reference_model"]
        cols = ["Cohort", "Model", "n", f"{stat} (95% CI)", f"P vs {ref}"]
        has_nri = "nri" in perf.columns
        if has_nri:
            cols += [f"NRI vs {ref} (95% CI)", "P (NRI)", f"IDI vs {ref} (95% CI)", "P (IDI)"]
        if oracle:
            cols.append(f"Oracle {stat}")
        rows = ["<table><caption>Model performance per cohort (DeLong CI and paired test; NRI/IDI as "
                "Hmisc::improveProb)" if m["outcome"] == "binary" else
                "<table><caption>Model performance per cohort (Harrell C with CI; difference by the joint "
                "jackknife of survival::concordance)", "</caption><thead><tr>",
                "".join(f"<th>{html.escape(c)}</th>" for c in cols), "</tr></thead><tbody>"]
        for r in m["tables"]["performance"]:
            key = f"performance|{r['cohort']}|{r['model']}"
            cells = [html.escape(str(r["cohort"])), html.escape(str(r["model"])), str(r["n"]),
                     f'<span data-metric="{key}|auc_or_c">{_fmt(r["auc_or_c"])}</span> '
                     f'({_fmt(r["lower"])}&ndash;{_fmt(r["upper"])})', _p(r["p"])]
            if has_nri:
                cells += [f'{_fmt(r.get("nri"))} ({_fmt(r.get("nri_lower"))}&ndash;{_fmt(r.get("nri_upper"))})',
                          _p(r.get("nri_p")),
                          f'{_fmt(r.get("idi"))} ({_fmt(r.get("idi_lower"))}&ndash;{_fmt(r.get("idi_upper"))})',
                          _p(r.get("idi_p"))]
            if oracle:
                o = oracle.get(r["cohort"])
                cells.append(f'<span data-metric="oracle|{r["cohort"]}||oracle">{_fmt(o["oracle"])}</span>'
                             if o else "&ndash;")
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        rows.append("</tbody></table>")
        note = ("<p class='note'>Oracle: the planted true risk of the synthetic study (truth table), on the same "
                "patients: the best any model could reach.</p>" if oracle else "")
        self.add("models", "Models: discrimination per cohort", "".join(rows) + note)

    def deep_vs_handcrafted(self) -> None:
        t = self.table("signature_comparison")
        if t.empty:
            return
        stat = "AUC" if self.m["outcome"] == "binary" else "C-index"
        test = ("DeLong paired test (pROC::roc.test)" if self.m["outcome"] == "binary" else
                "difference of Harrell's C by the joint jackknife (survival::concordance)")
        how = ""
        settings = self.out / "radiomics.json"
        if settings.exists():
            r = json.loads(settings.read_text(encoding="utf-8"))
            how = f"; {r['features']}: {r['why']}; {r['library']}, bin width {r['settings']['bin_width']:g} HU"
        rows = [f"<table><caption>Deep signature vs the handcrafted radiomics reference (IBSI features of the same "
                f"ROI{html.escape(how)}; LASSO on training): {stat} and {html.escape(test)}</caption><thead><tr>",
                "".join(f"<th>{c}</th>" for c in ["Cohort", "Deep signature", stat, "Handcrafted", stat,
                                                   "Difference", "P", "n"]), "</tr></thead><tbody>"]
        for r in self.m["tables"]["signature_comparison"]:
            key = f"signature_comparison|{r['cohort']}|{r['deep']}"
            cells = [html.escape(str(r["cohort"])), html.escape(str(r["deep"])),
                     f'<span data-metric="{key}|deep_value">{_fmt(r["deep_value"])}</span>',
                     html.escape(str(r["handcrafted"])), _fmt(r["handcrafted_value"]), _fmt(r["difference"]),
                     _p(r["p"]), str(r["n"])]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        rows.append("</tbody></table><p class='note'>A deep signature earns its place only where it beats this "
                    "reference; both are fitted on the training cohort only.</p>")
        self.add("deep-vs-handcrafted", "Deep vs handcrafted radiomics", "".join(rows))

    def centre_effects(self) -> None:
        from gastrorad.report.harmonisation import centre_effects_section
        self.add("centre-effects", "Centre effects and harmonisation", centre_effects_section(self.cfg))

    def classification(self) -> None:
        cls = self.table("classification")
        if cls.empty:
            return
        cls["value"] = [f"{e:.3f} ({lo:.3f}-{hi:.3f})" if e is not None and e == e else "-"
                        for e, lo, hi in zip(cls.estimate, cls.lower, cls.upper)]
        wide = cls.pivot_table(index=["cohort", "model", "cutoff"], columns="metric", values="value",
                               aggfunc="first").reset_index()
        order = {c: i for i, c in enumerate(self.m["cohorts"])}
        wide = wide.sort_values("cohort", key=lambda s: s.map(order), kind="stable")
        wide = wide[["cohort", "model", "cutoff", *[c for c in ("accuracy", "sensitivity", "specificity", "ppv", "npv")
                                                     if c in wide.columns]]]
        conf = self.table("confusion")
        body = _table(wide, "At the cut-off locked on training (Youden unless stated), exact binomial CIs", digits=4)
        body += _table(conf, "Confusion matrices (positive = score >= cut-off)", digits=4)
        self.add("classification", "Classification at the locked cut-offs", body)

    def binary_figures(self) -> None:
        self.add("roc", "ROC and precision-recall curves",
                 self.figs("roc", "ROC (bootstrap 95% band)") + self.figs("pr", "Precision-recall")
                 + _table(self.table("precision_recall"), "Average precision"))
        cal = self.table("calibration")
        self.add("calibration", "Calibration", self.figs("calibration", "Calibration")
                 + _table(cal, "Calibration (rms::val.prob) and Hosmer-Lemeshow (g groups, g-2 df)"))
        self.add("dca", "Decision curves", self.figs("decision_curve", "Net benefit"))
        sub = self.table("subgroups")
        self.add("subgroups", "Subgroups", _table(sub, "AUC (DeLong CI) within subgroups"))
        rg = self.table("risk_groups")
        if not rg.empty:
            self.add("km", "Survival by risk group", self.figs("km", "Kaplan-Meier")
                     + _table(rg, "HR (high vs low, Cox) and log-rank at the locked cut-off"))

    def survival_figures(self) -> None:
        rg = self.table("risk_groups")
        self.add("km", "Kaplan-Meier by risk group", self.figs("km", "Kaplan-Meier by the locked risk groups")
                 + _table(rg, "HR (high vs low risk, Cox Efron) and log-rank at the cut-off locked on training"))
        ta = self.table("time_auc")
        self.add("time_auc", "Time-dependent AUC", self.figs("time_auc", "Cumulative/dynamic AUC(t)")
                 + _table(ta, "AUC at the evaluation horizons (IPCW)"))
        cal = self.table("calibration")
        self.add("calibration", "Calibration at the horizon",
                 _table(cal, "Observed/expected and Hosmer-Lemeshow on the t-year status (patients censored "
                             "before t left out)")
                 + _table(self.csv("calibration_groups"), "Observed (Kaplan-Meier) vs predicted survival by group"))

    def longitudinal(self) -> None:
        rep = self.table("reproducibility")
        body = _table(rep, "C-index over training seeds (mean and SD)") if not rep.empty else ""
        body += self.figs("attention", "Attention", css="figs wide")
        sites, times = self.table("attention_sites"), self.table("attention_time")
        if not sites.empty:
            body += _table(sites, "Attention over lesion sites (OH-former), mean weight by risk group")
        if not times.empty:
            body += _table(times, "Attention over time points (TH-former), mean weight by risk group")
        self.add("longitudinal", "Longitudinal models: reproducibility and attention", body)

    def fitted_models(self) -> None:  # noqa: C901 - one section, read top to bottom
        body = []
        sel = self.fit.get("selection", {})
        if sel and not self.cfg.has_clinical:
            body.append("<p>Image-only study: no clinical variables, so no clinical model.</p>")
        if sel and self.cfg.has_clinical:
            body.append(f"<p>Clinical terms kept: <b>{html.escape(', '.join(sel.get('clinical_terms', [])) or 'none')}"
                        f"</b> ({selection_rule(self.cfg.clinical.selection)}).</p>")
        if sel:
            for name, why in sel.get("nomograms_skipped", {}).items():
                body.append(f"<p class='todo'>Nomogram of <b>{html.escape(name)}</b> {html.escape(why)}.</p>")
            for name, why in sel.get("skipped_models", {}).items():
                body.append(f"<p class='todo'>Model <b>{html.escape(name)}</b> was not fitted: {html.escape(why)}.</p>")
            if sel.get("screen"):
                body.append(_table(pd.DataFrame(sel["screen"]), "Univariable screen (training)"))
        values = self.fit.get("signature_training_values", {})
        pre = [signature_display(c) for c, v in values.items() if v.startswith("pre-validated")]
        ins = [signature_display(c) for c, v in values.items() if v == "in-sample"]
        if pre:
            body.append(f"<p>Fusion models took each training patient's value of {html.escape(', '.join(pre))} "
                        "from the signature fitted without that patient's fold (pre-validation, Tibshirani and "
                        "Efron 2002), so a signature fitted on these patients does not take the weight of the "
                        "clinical terms; new patients get the signature fitted on all of training.</p>")
        if ins:
            body.append(f"<p class='todo'>{html.escape(', '.join(ins))} entered the fusion models with in-sample "
                        "training values (no out-of-fold value: e.g. a network trained on one split): their "
                        "weight against the clinical terms is optimistic. k-fold training (training.folds) "
                        "gives out-of-fold values.</p>")
        for name in self.fit.get("models", {}):
            p = self.out / "models" / f"{file_stem(name)}_coefficients.csv"
            if p.exists():
                coefs = pd.read_csv(p)
                for col in {"term", "covariate"} & set(coefs.columns):  # rad_<phase> -> "Deep signature (<phase>)"
                    coefs[col] = coefs[col].astype(str).map(signature_display)
                body.append(_table(coefs, f"{name}: coefficients (fitted on training)", digits=4))
        self.add("fit", "Fitted models and clinical selection", "".join(body))
        drawn = [n for n, spec in self.fit.get("models", {}).items() if "nomogram" in spec]
        figs = "".join(_figure(self.out / "figures" / f"nomogram_{file_stem(n)}.png", f"Nomogram of {n}")
                       for n in drawn)
        if figs:
            self.add("nomogram", "Nomogram" + ("s" if len(drawn) > 1 else ""), f'<div class="figs wide">{figs}</div>')

    def cutoffs(self) -> None:
        self.add("cutoffs", "Locked cut-offs", _table(self.table("cutoffs"), "Cut-offs fitted on training, applied "
                                                      "unchanged to every cohort", digits=6))

    def explain(self) -> None:
        p = self.out / "explain" / "gradcam.csv"
        if not p.exists():
            return
        t = pd.read_csv(p, dtype={"patient_id": str})
        items = []
        for r in t.itertuples():
            png = Path(r.png)
            if not png.is_absolute():
                png = self.out / png
            focus = "" if pd.isna(r.roi_focus) else f", ROI focus {r.roi_focus:.2f}"
            items.append(_figure(png, f"{r.patient_id} ({r.cohort}){focus}"))
        body = (f'<div class="figs gallery">{"".join(items)}</div><p class="note">Guided Grad-CAM of the deep model '
                "on the patch's centre slice; ROI focus = mean map inside the ROI / outside.</p>")
        self.add("gradcam", "Grad-CAM gallery", body)

    def checklist(self) -> None:
        rows = tripod_checklist(self.cfg, self.m, self.fit)
        body = ["<table><caption>TRIPOD+AI items the run can answer</caption><thead><tr><th>Item</th><th>Topic</th>"
                "<th>From this run</th></tr></thead><tbody>"]
        for item, topic, answer in rows:
            cls = "ok" if answer else "todo"
            body.append(f"<tr><td>{html.escape(item)}</td><td>{html.escape(topic)}</td><td class='{cls}'>"
                        f"{html.escape(answer) if answer else 'to be reported by the authors'}</td></tr>")
        body.append("</tbody></table>")
        self.add("tripod", "TRIPOD+AI checklist", "".join(body))

    def warnings(self) -> None:
        """R's warnings of the fits (no convergence, separation, untestable PH), as ``gastrorad run`` recorded them."""
        rows = stage_warnings(self.out)
        if not rows:
            return
        items = "".join(f"<li><b>{html.escape(r['stage'])}</b>: {html.escape(r['message'])}"
                        + (f" (&times;{r['count']})" if r["count"] > 1 else "") + "</li>" for r in rows)
        self.add("warnings", "Warnings from the analysis",
                 "<p class='note'>Raised by the fits of this run (separation, no convergence, a proportional-hazards "
                 "check that cannot be computed), where R's glm, coxph, cox.zph or glmnet warn on the same data; the "
                 f"estimates they name are not to be interpreted.</p><ul>{items}</ul>")

    def versions(self) -> None:
        v = software_versions()
        cfg_text = (self.out / "config.resolved.yaml").read_text(encoding="utf-8") if (self.out / "config.resolved.yaml").exists() \
            else ""
        body = _table(pd.DataFrame(sorted(v.items()), columns=["package", "version"]), "Software versions")
        body += f"<p>Seed: {self.cfg.seed}. Profile: {html.escape(str(self.cfg.profile or 'none'))}.</p>"
        if cfg_text:
            body += f"<details><summary>Resolved study file</summary><pre>{html.escape(cfg_text)}</pre></details>"
        self.add("versions", "Software, seeds and configuration", body)

    def render(self) -> str:
        title = self.cfg.report.title or f"gastrorad report: {self.cfg.name}"
        nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _ in self.sections)
        parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                 f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head>",
                 f"<body><main><h1>{html.escape(title)}</h1><p class='meta'>Study <b>{html.escape(self.cfg.name)}</b>; "
                 f"outcome {html.escape(self.m['outcome'])}; generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} "
                 f"by gastrorad {software_versions().get('gastrorad', '')}.</p><nav>{nav}</nav>"]
        for anchor, t, body in self.sections:
            parts.append(f"<section id='{anchor}'><h2>{html.escape(t)}</h2>{body}</section>")
        # a self-check a reader or a test can read: how many figures loaded, how many are broken
        parts.append("</main><script>window.addEventListener('load',function(){var n=0,b=0;"
                     "document.querySelectorAll('img').forEach(function(i){n++;if(!i.complete||i.naturalWidth===0)"
                     "{b++;}});document.body.setAttribute('data-images',n);"
                     "document.body.setAttribute('data-broken-images',b);});</script></body></html>")
        return "".join(parts)


def stage_warnings(output_dir: Path) -> list[dict]:
    """The statistics warnings recorded in the run's stage stamps (``<output>/.run/<stage>.json``,
    written by the runner), in the order the stages finished: ``{stage, message, count}``."""
    stamps = []
    for path in (Path(output_dir) / ".run").glob("*.json"):
        try:
            stamps.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    stamps.sort(key=lambda st: st.get("finished", ""))
    return [{"stage": st.get("stage", ""), **w} for st in stamps for w in st.get("warnings", [])]


def build_report(cfg: StudyConfig) -> Path:
    """Write ``<output>/report.html`` from the run's metrics, tables and figures."""
    r = _Report(cfg)
    r.summary()
    r.warnings()
    r.models_table()
    r.deep_vs_handcrafted()
    r.centre_effects()
    r.table_one()
    r.classification()
    if r.m["outcome"] == "binary":
        r.binary_figures()
    else:
        r.survival_figures()
    r.longitudinal()
    r.fitted_models()
    r.cutoffs()
    r.explain()
    r.checklist()
    r.versions()
    path = cfg.output_dir / "report.html"
    atomic_write_text(path, r.render())
    return path


def selection_rule(sel) -> str:
    """How clinical terms were selected, in words: "univariable screen P < 0.05, then stepwise_aic"."""
    steps = [f"univariable screen P &lt; {sel.screen_p:g}"] if sel.screen_p is not None else ["no univariable screen"]
    steps.append({"none": "no multivariable selection", "stepwise_aic": "backward stepwise AIC",
                  "lasso": "LASSO"}.get(sel.method, sel.method))
    return ", then ".join(steps)
