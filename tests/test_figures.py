"""Every figure renders to PNG and SVG, shows what it should, and writes atomically."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import shared_path
from gastrorad import figures as F
from gastrorad.stats.survival import fit_cox


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=300) < 0.35).astype(int)
    a = 1 / (1 + np.exp(-(y * 1.5 - 0.8 + rng.normal(size=300))))
    b = 1 / (1 + np.exp(-(y * 0.6 - 0.6 + rng.normal(size=300))))
    return y, {"integrated": a, "clinical": b}


def _check(paths):
    png, svg = paths
    assert png.suffix == ".png" and svg.suffix == ".svg"
    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape[0] > 300 and img.std() > 10  # a real drawing, not a blank canvas
    assert "<svg" in svg.read_text(encoding="utf-8")[:500]  # SVG is UTF-8 XML, whatever the locale


def test_binary_figures(tmp_path, binary):
    y, models = binary
    _check(F.save_figure(F.plot_roc(y, models, n_boot=50, readers={"reader 1": (0.7, 0.6)}), tmp_path / "roc"))
    _check(F.save_figure(F.plot_precision_recall(y, models), tmp_path / "pr"))
    _check(F.save_figure(F.plot_calibration(y, models), tmp_path / "cal"))
    _check(F.save_figure(F.plot_decision_curve(y, models, n_boot=30), tmp_path / "dca"))


def test_survival_figures(tmp_path):
    d = pd.read_csv(shared_path("clinical", "lung.csv")).dropna(subset=["ph.ecog"])
    d["event"] = (d.status == 2).astype(int)
    fit = fit_cox(d, "time", "event", ["age", "sex", "ph.ecog"])
    lp = fit.linear_predictor(d)
    group = np.where(lp >= np.median(lp), "high", "low")
    _check(F.save_figure(F.plot_kaplan_meier(d.time, d.event, group, hr=(2.0, 1.4, 2.9), time_label="Days"),
                         tmp_path / "km"))
    _check(F.save_figure(F.plot_time_auc(d.time, d.event, {"cox": lp}, [180, 365, 540]), tmp_path / "tauc"))
    _check(F.save_figure(F.plot_forest(fit.table), tmp_path / "forest"))


def test_nomogram_figure(tmp_path):
    from gastrorad.models.nomogram import build_nomogram
    d = pd.read_csv(shared_path("clinical", "aSAH.csv"))
    nomo = build_nomogram({"age": 0.035, "s100b": 1.5, "gender": {"Male": 0.99}}, d, intercept=-4.0)
    _check(F.save_figure(F.plot_nomogram(nomo, title="test"), tmp_path / "nomo"))
    lung = pd.read_csv(shared_path("clinical", "lung.csv")).dropna(subset=["ph.ecog"])
    cox = build_nomogram({"age": 0.011, "ph.ecog": 0.46}, lung, kind="cox", baseline_survival={1: 0.6, 3: 0.3})
    _check(F.save_figure(F.plot_nomogram(cox), tmp_path / "nomo_cox"))
