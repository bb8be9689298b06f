"""The LASSO solvers written after glmnet's algorithm (gastrorad.models.glmnet_cd): the same
path and cross-validation as R's glmnet / cv.glmnet on a wide, collinear table
(r_reference/lasso_logistic_wide.R), and the planted signal recovered, quickly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REF_DIR = Path(__file__).parent / "r_reference"


def test_logistic_path_and_cv_match_glmnet_on_a_wide_table():
    """90 patients x 240 softplus features from 6 latent factors (n < p): the same coordinate
    descent as glmnet at its threshold, so the path, the CV curve and the coefficients at
    lambda.min agree with R's to rounding, not just to glmnet's tolerance."""
    from gastrorad.models.lasso import cv_lasso_logistic, lambda_sequence, logistic_path, logistic_path_length
    ref = json.loads((REF_DIR / "lasso_logistic_wide.json").read_text())
    d = pd.read_csv(REF_DIR / "lasso_logistic_wide.csv")
    X, y = d.drop(columns="y"), d.y.to_numpy()
    lam = lambda_sequence(X.to_numpy(float), y)
    assert lam[:len(ref["lambda"])] == pytest.approx(ref["lambda"], rel=1e-6)
    assert logistic_path_length(X.to_numpy(float), y, lam) == len(ref["lambda"])
    b0, b = logistic_path(X.to_numpy(float), y, ref["lambda"])[29]
    assert np.r_[b0, b] == pytest.approx(ref["coef_path_30"], abs=1e-8)
    cv = cv_lasso_logistic(X, y, foldid=ref["foldid"])
    assert cv.lambdas == pytest.approx(ref["lambda"], rel=1e-6)
    assert np.allclose(cv.cvm, ref["cvm"], atol=1e-6) and np.allclose(cv.cvsd, ref["cvsd"], atol=1e-6)
    assert cv.lambda_min == pytest.approx(ref["lambda_min"]) and cv.lambda_1se == pytest.approx(ref["lambda_1se"])
    assert cv.coef_min == pytest.approx(ref["coef_min"], abs=1e-8)
    assert cv.coef_1se == pytest.approx(ref["coef_1se"], abs=1e-8)


def _planted(n, p, seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 4))
    X = Z @ rng.normal(size=(4, p)) * 0.5 + rng.normal(size=(n, p))  # correlated columns
    lp = 1.2 * X[:, 0] - 1.0 * X[:, 1] + 0.8 * X[:, 2]
    return pd.DataFrame(X, columns=[f"f{j:03d}" for j in range(p)]), lp, rng


def _assert_planted(cv):
    """The three planted columns are selected at lambda.1se, with their signs, as its three
    largest coefficients (the columns are standardised alike), among few others."""
    chosen = cv.selected("1se")
    assert {"f000", "f001", "f002"} <= set(chosen) and len(chosen) <= 20
    b = cv.coef_1se[1:]
    assert b[0] > 0 and b[1] < 0 and b[2] > 0
    assert set(np.argsort(-np.abs(b))[:3]) == {0, 1, 2}


def test_lasso_logistic_recovers_planted_signals():
    from gastrorad.models.lasso import cv_lasso_logistic
    X, lp, rng = _planted(300, 80, 1)
    y = (lp + rng.logistic(size=300) > 0).astype(int)
    cv = cv_lasso_logistic(X, y, nfolds=10, seed=2)
    _assert_planted(cv)


def test_lasso_cox_recovers_planted_signals():
    from gastrorad.models.lasso import cv_lasso_cox
    X, lp, rng = _planted(300, 80, 3)
    t = rng.exponential(np.exp(-lp))
    c = rng.exponential(2.0, size=300)
    cv = cv_lasso_cox(X, np.minimum(t, c), (t <= c).astype(int), nfolds=10, seed=2)
    _assert_planted(cv)


def test_cox_path_fits_meet_the_optimality_conditions():
    """Coordinate descent at glmnet's threshold, finished by Newton steps where it crawls: every
    fit of a wide Cox path is optimal to 1e-6 (lasso_cox_wide.csv, 36 collinear columns)."""
    from gastrorad.models.glmnet_cd import cox_kkt
    from gastrorad.models.lasso import _CoxRisk, _standardize, cox_path, lambda_sequence
    d = pd.read_csv(REF_DIR / "lasso_cox_wide.csv")
    X = d.drop(columns=["time", "status"]).to_numpy(float)
    lam = lambda_sequence(X, kind="cox", time=d.time, event=d.status)[:60]
    path = cox_path(X, d.time, d.status, lam)
    Xs, _, sd = _standardize(X)
    risk = _CoxRisk(d.time, d.status)
    Xf = np.asfortranarray(Xs[risk.order])
    for lam_k, b in zip(lam, path):
        kkt, _ = cox_kkt(Xf, risk.event, risk.start, risk.dcount, risk.ngroup, b * sd, lam_k)
        assert kkt <= 1e-6


def test_cox_path_that_runs_off_ends_instead_of_crashing():
    """44 deep features of 141 S5 training patients (fast profile, 300 patients, seed 1): along the
    full Cox path the linear predictor runs off until a late risk set's sum of exp(eta) underflows
    to 0, which was a ZeroDivisionError in the compiled IRLS and stopped the signature stage. The
    path now ends on the last finite fit and cross-validation chooses among the fits before it."""
    import warnings

    from gastrorad.models.lasso import cv_lasso_cox
    d = pd.read_csv(Path(__file__).parent / "fixtures" / "lasso_cox_underflow.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = cv_lasso_cox(d.drop(columns=["time", "event"]), d.time, d.event, nfolds=5, seed=42, nlambda=20)
    assert np.isfinite(cv.lambda_min) and np.isfinite(cv.coef_min).all()
