"""Benchmark: resampling statistics serial (n_jobs=1) vs parallel (n_jobs=N) in the same run.

- bootstrap CI of the Brier score (2000 resamples of n patients): milliseconds per resample,
  stays in one process below the work threshold (the ratio shows the threshold's cost: ~1);
- optimism-corrected validation (``bootstrap_validate``, B refits of a LASSO-Cox selection
  procedure with 5-fold CV);
- LASSO-Cox cross-validation (10 folds) on a wide feature table.

Prints seconds, the ratio serial / parallel and whether the results are identical.

    python bench/resample.py [--jobs 2] [--n 200] [--boot 40]
"""

from __future__ import annotations

import argparse
import time


import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def _brier(y, p):
    return float(np.mean((p - y) ** 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--boot", type=int, default=40)
    args = ap.parse_args()
    from gastrorad.models.lasso import cv_lasso_cox
    from gastrorad.stats import bootstrap_ci, bootstrap_validate
    rng = np.random.default_rng(0)
    n, p = args.n, args.features
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j}" for j in range(p)])
    lp = X.f0 - 0.8 * X.f1 + 0.5 * X.f2
    time_, event = rng.exponential(np.exp(-lp)), (rng.uniform(size=n) < 0.7).astype(int)
    y = (lp + rng.logistic(size=n) > 0).astype(int)
    d = X.assign(time=time_, event=event)
    feats = list(X.columns)

    def procedure(frame):
        cv = cv_lasso_cox(frame[feats], frame.time, frame.event, nfolds=5, seed=1, nlambda=30)
        coef = cv.coef_min[1:]
        return lambda new: new[feats].to_numpy(float) @ coef

    cases = {
        "bootstrap CI (Brier, 2000)": lambda j: bootstrap_ci(y, _brier, 1 / (1 + np.exp(-lp.to_numpy())), n_boot=2000,
                                                             seed=1, n_jobs=j).replicates,
        f"optimism-corrected validation (B={args.boot}, LASSO-Cox)": lambda j: bootstrap_validate(
            d, procedure, kind="survival", n_boot=args.boot, seed=1, n_jobs=j).to_numpy(),
        f"LASSO-Cox CV (10 folds, {p} features)": lambda j: cv_lasso_cox(X, time_, event, nfolds=10, seed=1,
                                                                           n_jobs=j).cvm,
    }
    print(f"n = {n}, jobs = {args.jobs}")
    for name, run in cases.items():
        run(1)  # compile numba code in this process first: both timings start warm
        s1, r1 = _timed(lambda: run(1))
        sj, rj = _timed(lambda: run(args.jobs))
        same = np.array_equal(np.asarray(r1, float), np.asarray(rj, float), equal_nan=True)
        print(f"{name:55s} serial {s1:7.2f} s  parallel {sj:7.2f} s  ratio {s1 / sj:5.2f}  identical {same}")


if __name__ == "__main__":
    main()
