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

# --- item 3: predicted survival and baseline hazard of a Cox fit (Efron default, Breslow on request) ---
suppressPackageStartupMessages(library(rms))
colon <- read.csv(file.path(out_dir, "colon_death.csv"))   # written by models.R from survival's colon
surv_ref <- function(fit, data, covs, times) {
  z <- as.data.frame(setNames(as.list(rep(0, length(covs))), covs))
  s_at <- function(sf) summary(sf, times = times, extend = TRUE)
  e <- survfit(fit, newdata = z); b <- survfit(fit, newdata = z, ctype = 1)
  bh <- basehaz(fit, centered = FALSE)
  pred <- s_at(survfit(fit, newdata = data[1:6, covs]))$surv   # times x patients
  list(coef = unname(coef(fit)), times = times, s0_efron = s_at(e)$surv, s0_breslow = s_at(b)$surv,
       h0_efron = s_at(e)$cumhaz, h0_breslow = s_at(b)$cumhaz, basehaz_time = bh$time, basehaz = bh$hazard,
       predicted = unname(t(pred)))
}
ref$predict_lung <- surv_ref(fit_lung, lung_cc, c("age", "sex", "ph.ecog"), c(90, 180, 365, 730))
fit_colon <- coxph(Surv(time, status) ~ age + nodes + extent + obstruct, data = colon)
ref$predict_colon <- surv_ref(fit_colon, colon, c("age", "nodes", "extent", "obstruct"), c(365, 1095, 1825))
# rms::cph's Survival(): S(t | lp) = S0(t)^exp(lp + center), Efron baseline at cph's own coefficients
ddc <- datadist(colon); options(datadist = "ddc")
g <- cph(Surv(time, status) ~ age + nodes + extent + obstruct, data = colon, x = TRUE, y = TRUE, surv = TRUE)
S <- Survival(g)
ref$rms_survival_colon <- list(coef = unname(coef(g)), center = unname(g$center), lp = c(-1, -0.5, 0, 0.5, 1),
                               s1095 = S(1095, c(-1, -0.5, 0, 0.5, 1)), s365 = S(365, c(-1, -0.5, 0, 0.5, 1)))

# --- item 2: time-dependent AUC, its SE and CI (timeROC, iid = TRUE) ---
# Cases T < t (strictly) with an event, controls T > t, censoring KM of pec::ipcw (deaths first at ties).
suppressPackageStartupMessages(library(timeROC))
troc <- function(time, event, marker, times) {
  r <- timeROC(time, event, marker, cause = 1, weighting = "marginal", times = times, iid = TRUE)
  ci <- confint(r, level = 0.95, n.sim = 10)$CI_AUC   # pointwise CI (percent, rounded): checked via se
  list(times = unname(r$times), auc = unname(r$AUC), se = unname(r$inference$vect_sd_1),
       cases = unname(r$Stats[, 1]), controls = unname(r$Stats[, 2]), ci_percent = unname(ci),
       time = time, event = event, marker = marker)
}
hard <- read.csv(file.path(out_dir, "survival_cases.csv"))   # survival.R's seeded ties case
ref$timeroc_lung <- troc(lung_cc$time, lung_cc$event, unname(predict(fit_lung, type = "lp")), c(180, 365, 540))
ref$timeroc_veteran <- troc(veteran$time, veteran$status, -veteran$karno, c(30, 90, 180, 365))
ref$timeroc_hard <- troc(hard$time, hard$event, hard$x, c(10, 25, 30))
ref$timeroc_colon <- troc(colon$time, colon$status, unname(predict(fit_colon, type = "lp")), c(365, 1095, 1825))
ref$versions$timeROC <- as.character(packageVersion("timeROC"))

ref$versions <- c(ref$versions, list(R = R.version.string, survival = as.character(packageVersion("survival")),
                     glmnet = as.character(packageVersion("glmnet")), rms = as.character(packageVersion("rms"))))
write_json(ref, file.path(out_dir, "stats_gaps.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "stats_gaps.json"), "\n")
