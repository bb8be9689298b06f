"""Benchmark: LASSO logistic and LASSO-Cox cross-validation, gastrorad vs R's cv.glmnet.

Matrices shaped like real studies' feature tables, generated deterministically with numpy:
columns driven by a few latent factors (as CNN features are: low rank plus noise, softplus
so they are skewed and non-negative), the outcome planted on three of the factors:

- ``bagged``: 400 patients x 2,560 features as 8 bagged network copies of 400 x 320
  (the copies share the latent factors, with perturbed loadings): one cross-validation per
  copy, as ``bagged_lasso_signature`` runs them; times are the sum over the 8 copies;
- ``small``: 150 x 100; ``large``: 2,000 x 500.

Both sides get the same matrices and the same 10 fold ids; R runs in the same command
(``Rscript bench/lasso_glmnet.R``: ``cv.glmnet(foldid=, nlambda=100, standardize=TRUE)``,
binomial and cox), timed inside R around ``cv.glmnet`` only; gastrorad's time is around
``cv_lasso_logistic`` / ``cv_lasso_cox`` only, on one process (``n_jobs=1``) and on
``--jobs`` processes. The first call's compile / cache-load cost of the numba solvers is
timed separately, on a tiny problem, before anything else. Prints per case and family:
our seconds, R's, the ratio R / ours (above 1: we are faster), lambda.min of each, and the
largest absolute coefficient difference at lambda.min (original scale).

    python bench/lasso.py [--cases bagged small large] [--jobs 2] [--no-r]
"""

from __future__ import annotations

from pathlib import Path

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CASES = {"bagged": (400, 320, 8), "small": (150, 100, 1), "large": (2000, 500, 1)}
R_SCRIPT = Path(__file__).resolve().parent / "lasso_glmnet.R"


def make_case(name: str):
    """(list of X copies, y, time, event, foldid) for a case, from a seed fixed by its name."""
    n, p, copies = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    k = 12
    Z = rng.normal(size=(n, k))
    lp = 1.0 * Z[:, 0] - 0.7 * Z[:, 1] + 0.5 * Z[:, 2]
    base = rng.normal(size=(k, p)) * (0.85 ** np.arange(k))[:, None]
    Xs = []
    for _ in range(copies):
        L = base + 0.3 * rng.normal(size=(k, p))
        X = Z @ L + 0.8 * rng.normal(size=(n, p))
        X[:, :3] += 0.8 * lp[:, None] + 0.5 * rng.normal(size=(n, 3))  # a few features carry the signal directly
        Xs.append(np.round(np.logaddexp(0.0, X), 6))
    y = (lp + rng.logistic(size=n) > 0).astype(int)
    t = rng.exponential(np.exp(-lp)) * 24
    c = rng.uniform(6, 72, size=n)
    time_, event = np.round(np.minimum(t, c), 4), (t <= c).astype(int)
    foldid = (np.arange(n) % 10 + 1)[rng.permutation(n)]
    return Xs, y, time_, event, foldid


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--families", nargs="+", default=["binomial", "cox"], choices=["binomial", "cox"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--copies", type=int, default=8, help="bagged copies to fit (R's Cox takes minutes per copy)")
    ap.add_argument("--no-r", action="store_true", help="skip R (our times only)")
    args = ap.parse_args()
    from gastrorad.models.lasso import cv_lasso_cox, cv_lasso_logistic

    # first calls: numba's compile (or its on-disk cache's load) and imports, on a tiny problem
    rng = np.random.default_rng(0)
    Xt = pd.DataFrame(rng.normal(size=(40, 4)), columns=list("abcd"))
    yt = (Xt.a + rng.logistic(size=40) > 0).astype(int).to_numpy()
    jit_l, _ = _timed(lambda: cv_lasso_logistic(Xt, yt, nfolds=5, nlambda=10))
    jit_c, _ = _timed(lambda: cv_lasso_cox(Xt, rng.exponential(size=40), np.ones(40, int), nfolds=5, nlambda=10))
    print(f"first call (numba compile or cache load, imports): logistic {jit_l:.2f} s, Cox {jit_c:.2f} s")

    rscript = None if args.no_r else shutil.which("Rscript")
    if not args.no_r and not rscript:
        print("Rscript not found: apt-get install r-base-core r-cran-glmnet r-cran-survival r-cran-jsonlite")
    data = {name: make_case(name) for name in args.cases}
    if "bagged" in data:
        data["bagged"] = (data["bagged"][0][:args.copies], *data["bagged"][1:])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if rscript:
            rows = []
            for name, (Xs, y, time_, event, foldid) in data.items():
                n, p, copies = CASES[name][0], CASES[name][1], len(Xs)
                rows.append({"name": name, "n": n, "p": p, "copies": copies})
                pd.DataFrame({"y": y, "time": time_, "event": event, "foldid": foldid}).to_csv(
                    folder / f"{name}.csv", index=False)
                for c, X in enumerate(Xs):
                    np.asfortranarray(X).astype("<f8").T.tofile(folder / f"{name}_{c}.bin")  # column-major
            pd.DataFrame(rows).to_csv(folder / "cases.csv", index=False)
            subprocess.run([rscript, str(R_SCRIPT), str(folder), *args.families], check=True)
        header = (f"{'case':<28}{'family':<10}{'ours s':>8}{f'ours s j{args.jobs}':>11}{'R s':>8}{'R/ours':>8}"
                  f"{'lambda.min ours':>17}{'lambda.min R':>14}{'same lmin':>10}{'max|db|':>10}{'j1==j2':>8}")
        print("\n" + header + "\n" + "-" * len(header))
        for name, (Xs, y, time_, event, foldid) in data.items():
            n, p, copies = CASES[name][0], CASES[name][1], len(Xs)
            label = f"{name} {n}x{p * copies}" + (f" ({copies}x{p})" if copies > 1 else "")
            for family in args.families:
                ours, ours_j, r_s, same_lmin, dmax, identical = 0.0, 0.0, 0.0, 0, 0.0, True
                lmin_ours = lmin_r = None
                for c, X in enumerate(Xs):
                    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(p)])
                    if family == "binomial":
                        def run(jobs, frame=frame):
                            return cv_lasso_logistic(frame, y, foldid=foldid, nlambda=100, n_jobs=jobs)
                    else:
                        def run(jobs, frame=frame):
                            return cv_lasso_cox(frame, time_, event, foldid=foldid, nlambda=100, n_jobs=jobs)
                    s1, cv1 = _timed(lambda: run(1))
                    s2, cv2 = _timed(lambda: run(args.jobs))
                    ours, ours_j = ours + s1, ours_j + s2
                    identical &= bool(np.array_equal(cv1.cvm, cv2.cvm) and np.array_equal(cv1.coef_min, cv2.coef_min))
                    if c == 0:
                        lmin_ours = cv1.lambda_min
                    if rscript:
                        r = json.loads((folder / f"{name}_{c}_{family}.json").read_text())
                        r_s += r["seconds"]
                        same_lmin += bool(np.isclose(cv1.lambda_min, r["lambda_min"], rtol=1e-6))
                        theirs = np.asarray(r["coef_min"], float)
                        mine = cv1.coef_min if family == "binomial" else cv1.coef_min[1:]
                        dmax = max(dmax, float(np.abs(mine - theirs).max()))
                        if c == 0:
                            lmin_r = r["lambda_min"]
                r_cols = (f"{r_s:>8.2f}{r_s / ours:>8.2f}" if rscript else f"{'-':>8}{'-':>8}")
                print(f"{label:<28}{family:<10}{ours:>8.2f}{ours_j:>11.2f}{r_cols}{lmin_ours:>17.6g}"
                      + (f"{lmin_r:>14.6g}{f'{same_lmin}/{copies}':>10}{dmax:>10.2e}" if rscript else f"{'-':>14}"
                         f"{'-':>10}{'-':>10}") + f"{str(identical):>8}")
    if len(data.get("bagged", [[]])[0]) > 1:
        print(f"\nbagged: times are summed over the {len(data['bagged'][0])} copies; lambda.min shown for copy 1, 'same lmin' counts the copies "
              "whose lambda.min equals R's, max|db| is over all copies")


if __name__ == "__main__":
    main()
