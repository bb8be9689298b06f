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

# --- item 5: Kaplan-Meier median (and its CI) on a flat stretch at S = 0.5 ---
# quantile.survfit takes the midpoint between the event time where S = 0.5 and the next time S
# drops (censoring times in between do not count); missing limits give no CI limit.
lung <- clin("lung.csv"); lung$event <- as.integer(lung$status == 2)
veteran <- clin("veteran.csv")
km_median <- function(time, event, conf) {
  tab <- summary(survfit(Surv(time, event) ~ 1, conf.type = conf))$table
  list(median = unname(tab["median"]), lower = unname(tab["0.95LCL"]), upper = unname(tab["0.95UCL"]))
}
med_cases <- list(
  list(name = "hand10", time = c(2, 3, 4, 5, 8, 9, 15, 20, 22, 25), event = c(1, 1, 1, 1, 1, 0, 1, 0, 0, 0)),
  with(subset(lung, inst == 1 & sex == 1), list(name = "lung_inst1_male", time = time, event = event)),
  with(subset(lung, inst == 7), list(name = "lung_inst7", time = time, event = event)),
  with(subset(lung, inst == 32), list(name = "lung_inst32", time = time, event = event)),
  with(subset(veteran, celltype == "adeno" & trt == 1), list(name = "veteran_adeno_trt1", time = time, event = status)))
ref$km_median <- lapply(med_cases, function(cs) {
  out <- list(name = cs$name, time = cs$time, event = cs$event)
  for (conf in c("log", "log-log", "plain")) out[[conf]] <- km_median(cs$time, cs$event, conf)
  out
})

# --- item 1: cox.zph with the rank (and log) transform ---
# rank(times) over every follow-up time, censored ones included, centred over the deaths.
zph_ref <- function(fit) lapply(c(rank = "rank", log = "log", km = "km"), function(tr) {
  z <- cox.zph(fit, transform = tr)
  list(chisq = unname(z$table[, "chisq"]), df = unname(z$table[, "df"]), p = unname(z$table[, "p"]))
})
fit_vet <- coxph(Surv(time, status) ~ trt + karno + diagtime + age, data = veteran)
lung_cc <- na.omit(lung[, c("time", "event", "age", "sex", "ph.ecog")])
fit_lung <- coxph(Surv(time, event) ~ age + sex + ph.ecog, data = lung_cc)
ref$zph_veteran <- c(list(coef = unname(coef(fit_vet))), zph_ref(fit_vet))
ref$zph_lung <- c(list(coef = unname(coef(fit_lung))), zph_ref(fit_lung))

ref$versions <- list(R = R.version.string, survival = as.character(packageVersion("survival")),
                     glmnet = as.character(packageVersion("glmnet")))
write_json(ref, file.path(out_dir, "stats_gaps.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "stats_gaps.json"), "\n")
