# R side of bench/lasso.py: cv.glmnet (binomial and Cox) on the matrices the Python side wrote.
#   Rscript bench/lasso_glmnet.R <folder> [binomial] [cox]
# The folder holds cases.csv (name, n, p, copies) and per case and copy <name>_<copy>.bin (X as
# little-endian doubles, column-major), plus <name>.csv (y, time, event, foldid). For every fit
# it writes <name>_<copy>_<family>.json: seconds around cv.glmnet only, lambda.min, lambda.1se,
# the lambda sequence and the coefficients at lambda.min (intercept first for binomial).
suppressPackageStartupMessages({library(glmnet); library(survival); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
families <- if (length(args) > 1) args[-1] else c("binomial", "cox")
cases <- read.csv(file.path(dir, "cases.csv"), stringsAsFactors = FALSE)
for (r in seq_len(nrow(cases))) {
  name <- cases$name[r]; n <- cases$n[r]; p <- cases$p[r]
  d <- read.csv(file.path(dir, paste0(name, ".csv")))
  for (copy in seq_len(cases$copies[r]) - 1) {
    con <- file(file.path(dir, sprintf("%s_%d.bin", name, copy)), "rb")
    X <- matrix(readBin(con, "double", n = n * p, size = 8, endian = "little"), nrow = n, ncol = p)
    close(con)
    for (family in families) {
      y <- if (family == "binomial") d$y else Surv(d$time, d$event)
      t0 <- proc.time()[["elapsed"]]
      cv <- cv.glmnet(X, y, family = family, foldid = d$foldid, nlambda = 100, standardize = TRUE,
                      type.measure = "deviance")
      secs <- proc.time()[["elapsed"]] - t0
      b <- as.numeric(coef(cv, s = "lambda.min"))
      write_json(list(seconds = secs, lambda_min = cv$lambda.min, lambda_1se = cv$lambda.1se, lambda = cv$lambda,
                      coef_min = b),
                 file.path(dir, sprintf("%s_%d_%s.json", name, copy, family)), digits = NA, auto_unbox = TRUE)
    }
  }
}
