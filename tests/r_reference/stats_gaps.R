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

# --- items 6, 7, 8: Cox fits (Breslow option, a single event, separation), KM at chosen times by
# group, logistic log-likelihood and AIC (and the warnings R gives for degenerate fits) ---
warn_of <- function(expr) { msgs <- character(0)
  val <- withCallingHandlers(expr, warning = function(w) { msgs <<- c(msgs, conditionMessage(w))
                                                           invokeRestart("muffleWarning") })
  list(value = val, warnings = msgs) }
cox_out <- function(fit, w = character(0)) list(coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
  loglik = unname(fit$loglik), iter = fit$iter, hr_lower = unname(summary(fit)$conf.int[, 3]),
  hr_upper = unname(summary(fit)$conf.int[, 4]), aic = AIC(fit), warnings = w)
ref$cox_breslow_lung <- cox_out(coxph(Surv(time, event) ~ age + sex + ph.ecog, data = lung_cc, ties = "breslow"))
ref$cox_breslow_colon <- cox_out(coxph(Surv(time, status) ~ age + nodes + extent + obstruct, data = colon,
                                       ties = "breslow"))
w26 <- subset(lung, inst == 26 & sex == 2)[, c("time", "event", "age", "ph.ecog")]   # 5 women, 1 death
ref$cox_one_event <- c(cox_out(coxph(Surv(time, event) ~ age, data = w26)),
                       list(data = w26, zph_error = tryCatch({cox.zph(coxph(Surv(time, event) ~ age, data = w26)); ""},
                                                             error = function(e) conditionMessage(e))))
# one event by administrative censoring at the first death: the likelihood is flat, the fit stops
# after 3-5 iterations; gastrorad follows coxph's iterations to the same point (to 1e-12)
one_event <- function(d, covs) { cut <- min(d$time[d$event == 1]); d$event[d$time > cut] <- 0
  f <- coxph(as.formula(paste("Surv(time, event) ~", paste(covs, collapse = "+"))), data = d)
  c(cox_out(f), list(covariates = covs, cut = cut)) }
vet_e <- transform(veteran, event = status)
ref$cox_one_event_admin <- list(lung_age = one_event(lung[, c("time", "event", "age")], "age"),
                                colon_age = one_event(transform(colon, event = status), "age"),
                                veteran_age = one_event(vet_e, "age"),
                                veteran_diagtime = one_event(vet_e, "diagtime"))
sep <- warn_of(coxph(Surv(time, event) ~ ph.ecog, data = w26))   # the death has the highest ECOG: monotone
ref$cox_separation <- cox_out(sep$value, sep$warnings)
i32 <- subset(lung, inst == 32)[, c("time", "event", "sex")]        # no deaths among the women
sep2 <- warn_of(coxph(Surv(time, event) ~ sex, data = i32))
ref$cox_separation_sex <- c(cox_out(sep2$value, sep2$warnings), list(data = i32))

km_times <- function(fit, times) { s <- summary(fit, times = times, extend = TRUE)
  list(strata = if (is.null(s$strata)) rep("all", length(s$time)) else sub(".*=", "", as.character(s$strata)),
       time = s$time, n_risk = s$n.risk, n_event = s$n.event, surv = s$surv, std_err = s$std.err,
       lower = s$lower, upper = s$upper,
       median = unname(tab_of(fit)[, "median"]), median_lower = unname(tab_of(fit)[, "0.95LCL"]),
       median_upper = unname(tab_of(fit)[, "0.95UCL"])) }
tab_of <- function(fit) { tab <- summary(fit)$table; if (is.matrix(tab)) tab else t(as.matrix(tab)) }
ref$km_times_lung_sex <- km_times(survfit(Surv(time, event) ~ sex, data = lung), c(90, 180, 365, 730))
ref$km_times_veteran_celltype_loglog <- km_times(survfit(Surv(time, status) ~ celltype, data = veteran,
                                                         conf.type = "log-log"), c(30, 100, 200))
ref$km_times_colon <- km_times(survfit(Surv(time, status) ~ 1, data = colon), c(365, 1095, 1825))

asah$y <- ya
lg <- glm(y ~ age + wfns + s100b, data = asah, family = binomial)
ref$logistic_asah <- list(coef = unname(coef(lg)), loglik = as.numeric(logLik(lg)), aic = AIC(lg), bic = BIC(lg),
                          null_loglik = as.numeric(logLik(update(lg, . ~ 1))), deviance = deviance(lg))
sep_a <- subset(asah, s100b > 0.5 | (s100b < 0.1 & outcome == "Good"))   # every patient above 0.5 is Poor
gs <- warn_of(glm(y ~ s100b, data = sep_a, family = binomial))
ref$logistic_separation <- list(n = nrow(sep_a), coef = unname(coef(gs$value)), warnings = gs$warnings)

ref$versions <- c(ref$versions, list(R = R.version.string, survival = as.character(packageVersion("survival")),
                     glmnet = as.character(packageVersion("glmnet")), rms = as.character(packageVersion("rms"))))
write_json(ref, file.path(out_dir, "stats_gaps.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "stats_gaps.json"), "\n")
