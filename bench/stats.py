"""Benchmark: DeLong CI + paired test and the 2000-resample bootstrap AUC CI, gastrorad vs pROC.

For n = 2,813 and n = 100,000 synthetic patients (two correlated scores, 30 % cases),
both sides start from the raw vectors:

- DeLong: gastrorad ``delong_compare`` (AUC + CI of both scores, paired test) vs pROC
  ``roc`` x 2, ``ci.auc(method="delong")`` x 2, ``roc.test(method="delong")``;
- bootstrap: gastrorad ``auc_ci_bootstrap(n_boot=2000)`` vs pROC ``roc`` +
  ``ci.auc(method="bootstrap", boot.n=2000, boot.stratified=TRUE)``.

R runs in the same command (``Rscript``, when present). Times are medians of repeats
(DeLong) or one run (bootstrap). Prints both times, the ratio, and both results.

    python bench/stats.py [--sizes 2813 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

R_SCRIPT = r"""
suppressPackageStartupMessages(library(pROC)); library(jsonlite)
args <- commandArgs(trailingOnly = TRUE); d <- read.csv(args[1]); reps <- as.integer(args[2])
tm <- function(expr) { t0 <- proc.time()[["elapsed"]]; force(expr); proc.time()[["elapsed"]] - t0 }
delong_once <- function() {
  r1 <- roc(d$y, d$a, direction = "<", levels = c(0, 1), quiet = TRUE)
  r2 <- roc(d$y, d$b, direction = "<", levels = c(0, 1), quiet = TRUE)
  c1 <- ci.auc(r1, method = "delong"); c2 <- ci.auc(r2, method = "delong")
  t <- roc.test(r1, r2, method = "delong", paired = TRUE)
  list(ci = as.numeric(c1)[c(1, 3)], p = t$p.value)
}
times <- c(); for (i in seq_len(reps)) { t0 <- proc.time()[["elapsed"]]; res <- delong_once(); times <- c(times, proc.time()[["elapsed"]] - t0) }
set.seed(1)
t0 <- proc.time()[["elapsed"]]
r1 <- roc(d$y, d$a, direction = "<", levels = c(0, 1), quiet = TRUE)
bci <- ci.auc(r1, method = "bootstrap", boot.n = 2000, boot.stratified = TRUE, progress = "none")
tb <- proc.time()[["elapsed"]] - t0
cat(toJSON(list(delong_s = median(times), delong_ci = res$ci, delong_p = res$p, boot_s = tb,
                boot_ci = as.numeric(bci)[c(1, 3)]), digits = NA, auto_unbox = TRUE))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2813, 100_000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from gastrorad.stats import auc_ci_bootstrap, delong_compare
    rscript = shutil.which("Rscript")
    if not rscript:
        print("Rscript not found: install r-base-core and r-cran-proc to compare with pROC")
    for n in args.sizes:
        rng = np.random.default_rng(n)
        y = (rng.uniform(size=n) < 0.3).astype(int)
        a = y * 1.0 + rng.normal(size=n) * 1.5
        b = 0.5 * a + y * 0.3 + rng.normal(size=n)
        delong_compare(y, {"a": a, "b": b})  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            table = delong_compare(y, {"b": b, "a": a}, reference="b").set_index("model")
            times.append(time.perf_counter() - t0)
        py_delong = float(np.median(times))
        t0 = time.perf_counter()
        bci = auc_ci_bootstrap(y, a, n_boot=2000, seed=1)
        py_boot = time.perf_counter() - t0
        print(f"\nn = {n:,} ({y.sum():,} cases)")
        print(f"  gastrorad DeLong CI x2 + paired test: {py_delong * 1000:9.1f} ms   "
              f"CI a [{table.loc['a', 'lower']:.6f}, {table.loc['a', 'upper']:.6f}], P {table.loc['a', 'p']:.3g}")
        print(f"  gastrorad bootstrap CI (2000):        {py_boot * 1000:9.1f} ms   [{bci.lower:.4f}, {bci.upper:.4f}]")
        if not rscript:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            csv, script = Path(tmp) / "d.csv", Path(tmp) / "b.R"
            np.savetxt(csv, np.column_stack([y, a, b]), delimiter=",", header="y,a,b", comments="", fmt="%.17g")
            script.write_text(R_SCRIPT)
            out = subprocess.run([rscript, str(script), str(csv), str(args.repeats)], capture_output=True, text=True,
                                 check=True).stdout
        r = json.loads(out)
        print(f"  pROC DeLong CI x2 + paired test:      {r['delong_s'] * 1000:9.1f} ms   "
              f"CI a [{r['delong_ci'][0]:.6f}, {r['delong_ci'][1]:.6f}], P {r['delong_p']:.3g}")
        print(f"  pROC bootstrap CI (2000):             {r['boot_s'] * 1000:9.1f} ms   "
              f"[{r['boot_ci'][0]:.4f}, {r['boot_ci'][1]:.4f}]")
        print(f"  ratio pROC / gastrorad: DeLong {r['delong_s'] / py_delong:.1f}x, bootstrap {r['boot_s'] / py_boot:.1f}x")


if __name__ == "__main__":
    main()
