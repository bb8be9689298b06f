# Reference values for gastrorad.models.lasso's pre-validated linear predictors:
# cv.glmnet(keep = TRUE)$fit.preval at lambda.min, binomial and Cox, on the data and folds of
# lasso.R (lasso_binary.csv, colon_death.csv; the folds stored in lasso.json). Run from the
# repository root after lasso.R:
#   Rscript tests/r_reference/lasso_preval.R
suppressPackageStartupMessages({library(glmnet); library(survival); library(jsonlite)})
out_dir <- "tests/r_reference"
ref <- fromJSON(file.path(out_dir, "lasso.json"))
b <- read.csv(file.path(out_dir, "lasso_binary.csv"))
X <- as.matrix(b[, setdiff(names(b), "y")])
cv <- cv.glmnet(X, b$y, family = "binomial", foldid = ref$foldid, type.measure = "deviance", keep = TRUE)
i <- which(cv$lambda == cv$lambda.min)
colon <- read.csv(file.path(out_dir, "colon_death.csv"))
Xc <- as.matrix(colon[, c("age", "sex", "nodes", "obstruct", "perfor", "adhere", "differ", "extent")])
cvc <- cv.glmnet(Xc, Surv(colon$time, colon$status), family = "cox", foldid = ref$cox_cv$foldid, keep = TRUE)
ic <- which(cvc$lambda == cvc$lambda.min)
# fit.preval holds the link (linear predictor) of each row from the fit without its fold
out <- list(binomial = list(lambda_min = cv$lambda.min, preval_min = as.numeric(cv$fit.preval[, i])),
            cox = list(lambda_min = cvc$lambda.min, preval_min = as.numeric(cvc$fit.preval[, ic])),
            versions = list(R = R.version.string, glmnet = as.character(packageVersion("glmnet"))))
write_json(out, file.path(out_dir, "lasso_preval.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "lasso_preval.json"), "\n")
