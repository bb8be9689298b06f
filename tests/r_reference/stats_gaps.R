# Reference values for issue 13 (statistics parity with R on data the other fixtures never saw).
# Run from the repository root:  Rscript tests/r_reference/stats_gaps.R [path/to/shared/data]
# Writes tests/r_reference/stats_gaps.json (and stats_gaps_*.csv for the hand-made cases).
# Packages: survival, rms, glmnet, jsonlite and timeROC 0.4.1. timeROC is not packaged by
# Debian: its CRAN source (github.com/cran/timeROC, version 0.4.1) was installed into a user
# library with `R CMD INSTALL -l /work/Rlib timeROC` after `apt-get install r-cran-pec`
# (its other import, mvtnorm, is r-cran-mvtnorm); set R_TIMEROC_LIB to that library if it
# lives elsewhere.
.libPaths(c(Sys.getenv("R_TIMEROC_LIB", "/work/Rlib"), .libPaths()))
suppressPackageStartupMessages({library(survival); library(glmnet); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared/data"
out_dir <- "tests/r_reference"
clin <- function(f) read.csv(file.path(shared, "clinical", f))
ref <- list()

# --- item 4: LASSO logistic where lambda.1se is lambda.max (glmnet selects nothing) ---
# aSAH (pROC): poor outcome on age, NDKA and sex; folds drawn with set.seed(5).
asah <- clin("aSAH.csv")
ya <- as.integer(asah$outcome == "Poor")
Xa <- cbind(age = asah$age, ndka = asah$ndka, male = as.integer(asah$gender == "Male"))
set.seed(5)
fold_a <- rep(1:10, length.out = nrow(Xa))[sample(nrow(Xa))]
cva <- cv.glmnet(Xa, ya, family = "binomial", foldid = fold_a)
coef_vec <- function(fit, s) { v <- coef(fit, s = s); setNames(as.numeric(v), rownames(v)) }
ref$lasso_asah <- list(foldid = fold_a, lambda = cva$lambda, lambda_min = cva$lambda.min,
                       lambda_1se = cva$lambda.1se, coef_1se = as.list(coef_vec(cva, "lambda.1se")),
                       coef_min = as.list(coef_vec(cva, "lambda.min")),
                       coef_lambda_max = as.list(coef_vec(cva$glmnet.fit, cva$lambda[1])),
                       selected_1se = colnames(Xa)[coef_vec(cva, "lambda.1se")[-1] != 0],
                       selected_min = colnames(Xa)[coef_vec(cva, "lambda.min")[-1] != 0])

ref$versions <- list(R = R.version.string, survival = as.character(packageVersion("survival")),
                     glmnet = as.character(packageVersion("glmnet")))
write_json(ref, file.path(out_dir, "stats_gaps.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "stats_gaps.json"), "\n")
