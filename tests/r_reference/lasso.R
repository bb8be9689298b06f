# Reference values for gastrorad.models.lasso (glmnet). Run from the repository root:
#   Rscript tests/r_reference/lasso.R [path/to/shared/data]
suppressPackageStartupMessages({library(glmnet); library(survival); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared/data"
out_dir <- "tests/r_reference"
colon <- read.csv(file.path(out_dir, "colon_death.csv"))
set.seed(11)
# Binary outcome: death within 3 years (1095 days) among patients followed that long or dying.
keep <- colon$status == 1 | colon$time >= 1095
b <- colon[keep, ]
y <- as.integer(b$status == 1 & b$time < 1095)
noise <- matrix(rnorm(nrow(b) * 5), ncol = 5, dimnames = list(NULL, paste0("noise", 1:5)))
X <- cbind(as.matrix(b[, c("age", "sex", "nodes", "obstruct", "perfor", "adhere", "differ", "extent")]), noise)
write.csv(data.frame(X, y = y), file.path(out_dir, "lasso_binary.csv"), row.names = FALSE)
foldid <- rep(1:10, length.out = nrow(X))[sample(nrow(X))]
fit <- glmnet(X, y, family = "binomial")
cv <- cv.glmnet(X, y, family = "binomial", foldid = foldid, type.measure = "deviance")
coef_at <- function(s) { v <- as.numeric(coef(cv, s = s)); names(v) <- rownames(coef(cv, s = s)); as.list(v) }
ref <- list(lambda = fit$lambda, foldid = foldid, cvm = cv$cvm, cvsd = cv$cvsd,
            lambda_min = cv$lambda.min, lambda_1se = cv$lambda.1se,
            coef_min = coef_at("lambda.min"), coef_1se = coef_at("lambda.1se"),
            coef_path_10 = as.list(setNames(as.numeric(coef(fit, s = fit$lambda[10])),
                                            rownames(coef(fit, s = fit$lambda[10])))))
# Cox LASSO at fixed lambdas (Breslow ties, glmnet's default)
yc <- Surv(colon$time, colon$status)
Xc <- as.matrix(colon[, c("age", "sex", "nodes", "obstruct", "perfor", "adhere", "differ", "extent")])
fc <- glmnet(Xc, yc, family = "cox")
ref$cox <- list(lambda = fc$lambda, coef_20 = as.list(setNames(as.numeric(coef(fc, s = fc$lambda[20])), colnames(Xc))),
                coef_40 = as.list(setNames(as.numeric(coef(fc, s = fc$lambda[40])), colnames(Xc))))
ref$versions <- list(R = R.version.string, glmnet = as.character(packageVersion("glmnet")))
write_json(ref, file.path(out_dir, "lasso.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "lasso.json"), "\n")

# --- cv.glmnet for Cox (appended; rerun the whole script) ---
set.seed(12)
foldc <- rep(1:5, length.out = nrow(Xc))[sample(nrow(Xc))]
cvc <- cv.glmnet(Xc, yc, family = "cox", foldid = foldc)
ref2 <- fromJSON(file.path(out_dir, "lasso.json"))
ref2$cox_cv <- list(foldid = foldc, lambda = cvc$lambda, cvm = cvc$cvm, cvsd = cvc$cvsd,
                    lambda_min = cvc$lambda.min, lambda_1se = cvc$lambda.1se,
                    selected_min = colnames(Xc)[as.numeric(coef(cvc, s = "lambda.min")) != 0])
write_json(ref2, file.path(out_dir, "lasso.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("appended Cox CV reference\n")
