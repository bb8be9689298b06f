# Reference for LASSO-Cox on a wide, collinear feature table (as handcrafted radiomics or deep
# features give): glmnet's Cox path stops early (coxnet: deviance ratio > 0.99, or < 0.1%
# relative gain over 4 lambdas), and cv.glmnet's folds refit only the lambdas kept.
# Run from the repository root after models.R (colon_death.csv):
#   Rscript tests/r_reference/lasso_cox_wide.R
suppressPackageStartupMessages({library(glmnet); library(survival); library(jsonlite)})
out_dir <- "tests/r_reference"
colon <- read.csv(file.path(out_dir, "colon_death.csv"))
set.seed(21)
d <- colon[sample(nrow(colon), 90), ]
base <- as.matrix(d[, c("age", "nodes", "differ", "extent", "obstruct", "adhere")])
# 36 columns: the 6 clinical ones, 2 noisy near-copies of each (|r| ~ 0.95), their squares,
# and 12 pure-noise columns: a collinear, wide table with n = 90 and about 45 deaths
near <- do.call(cbind, lapply(1:2, function(k) base + matrix(rnorm(length(base), sd = 0.3 * apply(base, 2, sd)),
                                                               ncol = ncol(base), byrow = TRUE)))
colnames(near) <- paste0(rep(colnames(base), 2), "_copy", rep(1:2, each = ncol(base)))
sq <- base^2; colnames(sq) <- paste0(colnames(base), "_sq")
noise <- matrix(rnorm(nrow(d) * 12), ncol = 12, dimnames = list(NULL, paste0("noise", 1:12)))
X <- round(cbind(base, near, sq, noise), 6)
write.csv(data.frame(X, time = d$time, status = d$status), file.path(out_dir, "lasso_cox_wide.csv"), row.names = FALSE)
y <- Surv(d$time, d$status)
fit <- glmnet(X, y, family = "cox")
foldid <- rep(1:5, length.out = nrow(X))[sample(nrow(X))]
cv <- cv.glmnet(X, y, family = "cox", foldid = foldid)
# glmnet's default convergence threshold leaves the fits loose where the partial likelihood
# flattens (small lambdas); the same CV with thresh = 1e-14 is the curve of exact fits
cv_tight <- cv.glmnet(X, y, family = "cox", foldid = foldid, lambda = cv$lambda, thresh = 1e-14, maxit = 1e7)
coef_at <- function(s) as.list(setNames(as.numeric(coef(cv, s = s)), colnames(X)))
ref <- list(n = nrow(X), events = sum(d$status), lambda = fit$lambda, dev_ratio = fit$dev.ratio,
            foldid = foldid, cv_lambda = cv$lambda, cvm = cv$cvm, cvsd = cv$cvsd,
            cvm_tight = cv_tight$cvm, cvsd_tight = cv_tight$cvsd,
            lambda_min = cv$lambda.min, lambda_1se = cv$lambda.1se,
            selected_min = colnames(X)[as.numeric(coef(cv, s = "lambda.min")) != 0],
            selected_1se = colnames(X)[as.numeric(coef(cv, s = "lambda.1se")) != 0],
            coef_min = coef_at("lambda.min"),
            versions = list(R = R.version.string, glmnet = as.character(packageVersion("glmnet"))))
write_json(ref, file.path(out_dir, "lasso_cox_wide.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "lasso_cox_wide.json"), "- path length", length(fit$lambda), "\n")
