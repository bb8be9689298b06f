# Reference values for gastrorad.stats.survival, computed with R's survival package.
# Run from the repository root:  Rscript tests/r_reference/survival.R [path/to/shared/data]
# Writes tests/r_reference/survival_cases.csv (seeded hard cases) and survival.json.
# Data: survival's lung and veteran, asaur's gastricXelox (../shared/data/clinical), and
# a synthetic set with heavy ties in time and score and every patient censored after t = 30.
suppressPackageStartupMessages({library(survival); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared/data"
out_dir <- "tests/r_reference"
lung <- read.csv(file.path(shared, "clinical", "lung.csv"))
veteran <- read.csv(file.path(shared, "clinical", "veteran.csv"))
xelox <- read.csv(file.path(shared, "clinical", "gastricXelox.csv"))
lung$event <- as.integer(lung$status == 2)

set.seed(7)
n <- 150
hard <- data.frame(time = pmin(round(rexp(n, 1 / 25)), 60), x = round(rnorm(n), 0), z = rbinom(n, 1, 0.5))
hard$event <- rbinom(n, 1, 0.7)
hard$event[hard$time > 30] <- 0          # everyone still followed after t = 30 is censored
hard$group <- sample(c("a", "b", "c"), n, replace = TRUE)
write.csv(hard, file.path(out_dir, "survival_cases.csv"), row.names = FALSE)

km_ref <- function(fit) {
  s <- summary(fit, censored = TRUE)
  tab <- summary(fit)$table
  list(time = fit$time, n_risk = fit$n.risk, n_event = fit$n.event, n_censor = fit$n.censor, surv = fit$surv,
       std_err = fit$std.err, lower = fit$lower, upper = fit$upper,
       median = unname(tab["median"]), median_lower = unname(tab["0.95LCL"]), median_upper = unname(tab["0.95UCL"]))
}
ref <- list()
ref$km_lung <- km_ref(survfit(Surv(time, event) ~ 1, data = lung))
ref$km_xelox_loglog <- km_ref(survfit(Surv(timeWeeks, delta) ~ 1, data = xelox, conf.type = "log-log"))
ref$km_hard <- km_ref(survfit(Surv(time, event) ~ 1, data = hard))

lr <- function(f, d) { s <- survdiff(f, data = d); list(chisq = s$chisq, obs = s$obs, exp = s$exp,
                                                         p = 1 - pchisq(s$chisq, length(s$n) - 1)) }
ref$logrank_lung_sex <- lr(Surv(time, event) ~ sex, lung)
ref$logrank_veteran_celltype <- lr(Surv(time, status) ~ celltype, veteran)
ref$logrank_hard_group <- lr(Surv(time, event) ~ group, hard)

cox_ref <- function(fit, zph_transform = c("km", "identity")) {
  out <- list(coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))), loglik = fit$loglik[2])
  for (tr in zph_transform) {
    z <- cox.zph(fit, transform = tr)
    out[[paste0("zph_", tr)]] <- list(chisq = unname(z$table[, "chisq"]), df = unname(z$table[, "df"]),
                                       p = unname(z$table[, "p"]))
  }
  out
}
lung_cc <- na.omit(lung[, c("time", "event", "age", "sex", "ph.ecog")])
write.csv(lung_cc, file.path(out_dir, "lung_complete.csv"), row.names = FALSE)
fit <- coxph(Surv(time, event) ~ age + sex + ph.ecog, data = lung_cc, ties = "efron")
ref$cox_lung <- cox_ref(fit)
fit_h <- coxph(Surv(time, event) ~ x + z, data = hard, ties = "efron")
ref$cox_hard <- cox_ref(fit_h)

conc_ref <- function(time, event, risk) {
  h <- concordance(Surv(time, event) ~ risk, reverse = TRUE)
  u <- concordance(Surv(time, event) ~ risk, reverse = TRUE, timewt = "n/G2")
  list(c = unname(h$concordance), se = sqrt(unname(h$var)), counts = unname(h$count[1:3]),
       uno = unname(u$concordance), uno_se = sqrt(unname(u$var)))
}
lp <- predict(fit, type = "lp")
ref$conc_lung <- conc_ref(lung_cc$time, lung_cc$event, lp)
ref$conc_veteran_karno <- conc_ref(veteran$time, veteran$status, -veteran$karno)
ref$conc_hard <- conc_ref(hard$time, hard$event, hard$x)

# Cumulative/dynamic AUC with IPCW (Blanche 2013), written out as timeROC 0.4.1 computes it
# (stats_gaps.R checks it against timeROC itself): cases T < t with an event, weighted
# 1/G(T-); controls T > t; ties in the score count 1/2; G the censoring Kaplan-Meier with
# deaths leaving the risk set before censorings at the same time (pec::ipcw).
td_auc <- function(time, event, risk, t) {
  ut <- sort(unique(time))
  n_risk <- sapply(ut, function(u) sum(time >= u))
  d <- sapply(ut, function(u) sum(time == u & event == 1)); cens <- sapply(ut, function(u) sum(time == u & event == 0))
  G <- cumprod(ifelse(cens > 0, 1 - cens / (n_risk - d), 1))
  G_left <- function(s) { idx <- findInterval(s, ut, left.open = TRUE); c(1, G)[idx + 1] }
  case <- time < t & event == 1; ctrl <- time > t
  w <- 1 / G_left(time[case])
  num <- sum(w * sapply(risk[case], function(r) sum(risk[ctrl] < r) + 0.5 * sum(risk[ctrl] == r)))
  num / (sum(w) * sum(ctrl))
}
ref$td_auc_lung <- list(horizons = c(180, 365, 540),
                        auc = sapply(c(180, 365, 540), function(t) td_auc(lung_cc$time, lung_cc$event, lp, t)))
ref$td_auc_hard <- list(horizons = c(10, 25), auc = sapply(c(10, 25), function(t) td_auc(hard$time, hard$event, hard$x, t)))

ref$versions <- list(R = R.version.string, survival = as.character(packageVersion("survival")))
write_json(ref, file.path(out_dir, "survival.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "survival.json"), "\n")

# --- t-year calibration and survival decision curve (appended; rerun the whole script) ---
suppressPackageStartupMessages(library(rms))
bh <- basehaz(fit, centered = FALSE)
H0 <- function(t) { i <- findInterval(t, bh$time); if (i == 0) 0 else bh$hazard[i] }
lp0 <- predict(fit, type = "lp", reference = "zero")
S365 <- exp(-H0(365) * exp(lp0))
write.csv(data.frame(S365 = S365), file.path(out_dir, "lung_s365.csv"), row.names = FALSE)
gk <- groupkm(S365, Surv(lung_cc$time, lung_cc$event), g = 5, u = 365, pl = FALSE)
ref2 <- fromJSON(file.path(out_dir, "survival.json"))
ref2$groupkm_365 <- list(x = unname(gk[, "x"]), n = unname(gk[, "n"]), events = unname(gk[, "events"]),
                         KM = unname(gk[, "KM"]), std_err = unname(gk[, "std.err"]))
nb <- function(t, risk, pt) {
  tr <- risk >= pt
  s_at <- function(keep) { f <- survfit(Surv(lung_cc$time[keep], lung_cc$event[keep]) ~ 1)
                           i <- findInterval(t, f$time); if (i == 0) 1 else f$surv[i] }
  if (!any(tr)) return(0)
  st <- s_at(tr); mean(tr) * ((1 - st) - st * pt / (1 - pt))
}
pts <- c(0.2, 0.4, 0.6, 0.8)
ref2$survival_nb_365 <- list(thresholds = pts, nb = sapply(pts, function(pt) nb(365, 1 - S365, pt)))
write_json(ref2, file.path(out_dir, "survival.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("appended t-year calibration and decision curve references\n")

# --- comparing two C-indices (appended) ---
fit_age <- coxph(Surv(time, event) ~ age, data = lung_cc)
cc <- concordance(fit, fit_age)
ref3 <- fromJSON(file.path(out_dir, "survival.json"))
ref3$compare_c <- list(c = unname(cc$concordance), var = unname(cc$var),
                       coef_age = unname(coef(fit_age)))
write_json(ref3, file.path(out_dir, "survival.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("appended C comparison reference\n")
