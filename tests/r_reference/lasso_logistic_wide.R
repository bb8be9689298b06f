# Reference for the LASSO logistic solver (gastrorad.models.glmnet_cd) on a wide, collinear
# table as deep features give (n < p: glmnet's lambda.min.ratio is 0.01): 90 patients x 240
# columns from 6 latent factors plus noise, the outcome planted on two factors.
# Run from the repository root:
#   Rscript tests/r_reference/lasso_logistic_wide.R
suppressPackageStartupMessages({library(glmnet); library(jsonlite)})
out_dir <- "tests/r_reference"
set.seed(31)
n <- 90; p <- 240; k <- 6
Z <- matrix(rnorm(n * k), n, k)
X <- Z %*% matrix(rnorm(k * p), k, p) + matrix(rnorm(n * p, sd = 0.8), n, p)
X <- round(log1p(exp(X)), 6)  # softplus: skewed, non-negative, as pooled CNN activations
colnames(X) <- sprintf("f%03d", 1:p)
y <- as.integer(Z[, 1] - 0.8 * Z[, 2] + rlogis(n) > 0)
write.csv(data.frame(X, y = y), file.path(out_dir, "lasso_logistic_wide.csv"), row.names = FALSE)
foldid <- rep(1:10, length.out = n)[sample(n)]
fit <- glmnet(X, y, family = "binomial")
cv <- cv.glmnet(X, y, family = "binomial", foldid = foldid, type.measure = "deviance")
coef_at <- function(s) as.numeric(coef(cv, s = s))
ref <- list(lambda = fit$lambda, dev_ratio = fit$dev.ratio, foldid = foldid, cvm = cv$cvm, cvsd = cv$cvsd,
            lambda_min = cv$lambda.min, lambda_1se = cv$lambda.1se,
            coef_min = coef_at("lambda.min"), coef_1se = coef_at("lambda.1se"),
            coef_path_30 = as.numeric(coef(fit, s = fit$lambda[30])),
            versions = list(R = R.version.string, glmnet = as.character(packageVersion("glmnet"))))
write_json(ref, file.path(out_dir, "lasso_logistic_wide.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "lasso_logistic_wide.json"), "- path length", length(fit$lambda), "\n")
