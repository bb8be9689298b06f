"""Resampling statistics on parallel processes give the serial numbers for a seed: bootstrap
CIs, optimism-corrected validation, time-dependent AUC bands and the CV folds of LASSO.

The work threshold is set to 0 so that two loky processes really run the replicates (the
first test checks that they do); every other test compares n_jobs=2 with n_jobs=1 exactly.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from gastrorad import stats as S
from gastrorad.stats import resample


@pytest.fixture
def always_parallel(monkeypatch):
    from gastrorad.models import lasso
    monkeypatch.setattr(resample, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(lasso, "_LOGISTIC_PARALLEL_SECONDS", 0.0)


def _pid(_):
    return os.getpid()


def test_replicates_go_to_other_processes_above_the_threshold_only(always_parallel, monkeypatch):
    pids = resample.map_replicates(_pid, range(12), n_jobs=2)
    assert len(pids) == 12 and pids[0] == os.getpid() and set(pids[1:]) - {os.getpid()}
    monkeypatch.setattr(resample, "MIN_SECONDS", 60.0)  # twelve microsecond replicates: not worth a process
    assert set(resample.map_replicates(_pid, range(12), n_jobs=2)) == {os.getpid()}
    assert resample.map_replicates(lambda k: k * k, range(30), n_jobs=2, min_seconds=0) == [k * k for k in range(30)]


def _binary(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x @ [1.0, -0.5, 0.0] + rng.logistic(size=n) > 0).astype(int)
    return pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=y)


def _brier(y, p):
    return float(np.mean((p - y) ** 2))


def test_bootstrap_ci_is_identical_on_two_processes(always_parallel):
    d = _binary()
    p = 1 / (1 + np.exp(-d.a.to_numpy()))
    one = S.bootstrap_ci(d.y, _brier, p, n_boot=300, seed=5, n_jobs=1)
    two = S.bootstrap_ci(d.y, _brier, p, n_boot=300, seed=5, n_jobs=2)
    assert np.array_equal(one.replicates, two.replicates) and (one.lower, one.upper) == (two.lower, two.upper)
    other = S.bootstrap_ci(d.y, _brier, p, n_boot=300, seed=6, n_jobs=2)
    assert not np.array_equal(one.replicates, other.replicates)  # the seed, not the processes, decides


def _logistic_procedure(frame):
    import statsmodels.api as sm
    cols = ["a", "b", "c"]
    beta = sm.Logit(frame.y.to_numpy(float), sm.add_constant(frame[cols].to_numpy(float))).fit(disp=0).params

    def predict(new):
        return sm.add_constant(new[cols].to_numpy(float), has_constant="add") @ beta
    return predict


def test_optimism_corrected_validation_is_identical_on_two_processes(always_parallel):
    d = _binary()
    one = S.bootstrap_validate(d, _logistic_procedure, outcome="y", n_boot=40, seed=2, n_jobs=1)
    two = S.bootstrap_validate(d, _logistic_procedure, outcome="y", n_boot=40, seed=2, n_jobs=2)
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    assert one.loc["AUC", "optimism"] > 0


def test_time_dependent_auc_bootstrap_is_identical_on_two_processes(always_parallel):
    from gastrorad.evaluation.survival import _time_auc_ci
    rng = np.random.default_rng(1)
    s = rng.normal(size=80)
    t = rng.exponential(np.exp(-s)) * 10
    d = (rng.uniform(size=80) < 0.7).astype(int)
    one = _time_auc_ci(t, d, s, [5.0, 10.0], 60, seed=3, n_jobs=1)
    two = _time_auc_ci(t, d, s, [5.0, 10.0], 60, seed=3, n_jobs=2)
    pd.testing.assert_frame_equal(one, two, check_exact=True)
    assert (one.lower < one.auc).all()


def test_lasso_cross_validation_folds_are_identical_on_two_processes(always_parallel):
    from gastrorad.models.lasso import cv_lasso_cox, cv_lasso_logistic
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(90, 6)), columns=[f"x{j}" for j in range(6)])
    lp = X.x0 - 0.7 * X.x1
    y = (lp + rng.logistic(size=90) > 0).astype(int).to_numpy()
    one = cv_lasso_logistic(X, y, nfolds=5, seed=4, nlambda=20, n_jobs=1)
    two = cv_lasso_logistic(X, y, nfolds=5, seed=4, nlambda=20, n_jobs=2)
    assert np.array_equal(one.cvm, two.cvm) and np.array_equal(one.coef_min, two.coef_min)
    time = rng.exponential(np.exp(-lp))
    event = (rng.uniform(size=90) < 0.8).astype(int)
    one = cv_lasso_cox(X, time, event, nfolds=5, seed=4, nlambda=20, n_jobs=1)
    two = cv_lasso_cox(X, time, event, nfolds=5, seed=4, nlambda=20, n_jobs=2)
    assert np.array_equal(one.cvm, two.cvm) and np.array_equal(one.cvsd, two.cvsd)
    assert np.array_equal(one.coef_1se, two.coef_1se) and one.selected() == two.selected()
