# Reference values for gastrorad.stats (binary outcomes), computed with R's packages.
# Run from the repository root:  Rscript tests/r_reference/binary.R
# Writes tests/r_reference/binary_cases.csv (the synthetic hard cases) and binary.json.
# Data: aSAH from pROC (../shared/data/clinical/aSAH.csv) and seeded synthetic cases.
suppressPackageStartupMessages({library(pROC); library(Hmisc); library(rms); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared/data"
out_dir <- "tests/r_reference"

asah <- read.csv(file.path(shared, "clinical", "aSAH.csv"))
set.seed(20261123)
n <- 120
ties_y <- rbinom(n, 1, 0.4)
ties_a <- round(ties_y * 1.2 + rnorm(n))          # integer scores: many ties
ties_b <- round(ties_y * 0.6 + rnorm(n) * 1.3)
cases <- data.frame(dataset = "ties", y = ties_y, a = ties_a, b = ties_b)
tiny <- data.frame(dataset = "tiny", y = c(1, 1, 1, 1, 1, 0, 0, 0), a = c(3, 2.5, 2.5, 1, 0.2, 2.5, 0.1, -1),
                   b = c(1, 2, 3, 4, 5, 6, 7, 8))
perfect <- data.frame(dataset = "perfect", y = c(rep(1, 15), rep(0, 20)), a = c(runif(15, 2, 3), runif(20, 0, 1)),
                      b = c(runif(15, 0, 2), runif(20, 1, 3)))
cases <- rbind(cases, tiny, perfect)
write.csv(cases, file.path(out_dir, "binary_cases.csv"), row.names = FALSE)

roc_ref <- function(y, a, b) {
  r1 <- roc(y, a, direction = "<", levels = c(0, 1), quiet = TRUE)
  r2 <- roc(y, b, direction = "<", levels = c(0, 1), quiet = TRUE)
  ci1 <- ci.auc(r1, method = "delong")
  t <- roc.test(r1, r2, method = "delong", paired = TRUE)
  best <- coords(r1, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity"),
                 transpose = FALSE)
  list(auc_a = as.numeric(auc(r1)), auc_b = as.numeric(auc(r2)), var_a = var(r1, method = "delong"),
       var_b = var(r2, method = "delong"), cov_ab = cov(r1, r2, method = "delong"),
       ci_a = as.numeric(ci1)[c(1, 3)], z = unname(t$statistic), p = t$p.value,
       youden_thresholds = best$threshold, youden_sens = best$sensitivity, youden_spec = best$specificity,
       roc_thresholds = r1$thresholds, roc_sens = r1$sensitivities, roc_spec = r1$specificities)
}

ref <- list()
y <- as.integer(asah$outcome == "Poor")
ref$asah <- roc_ref(y, asah$s100b, asah$ndka)
# At a threshold equal to an observed value: is a patient positive when score >= threshold?
ref$asah$at_observed <- coords(roc(y, asah$s100b, direction = "<", levels = c(0, 1), quiet = TRUE), x = 0.13,
                                input = "threshold", ret = c("sensitivity", "specificity"), transpose = FALSE)
set.seed(1)
ref$asah$boot_ci <- as.numeric(ci.auc(roc(y, asah$s100b, direction = "<", levels = c(0, 1), quiet = TRUE),
                                      method = "bootstrap", boot.n = 2000, boot.stratified = TRUE, progress = "none"))[c(1, 3)]
for (d in c("ties", "tiny", "perfect")) {
  s <- cases[cases$dataset == d, ]
  ref[[d]] <- roc_ref(s$y, s$a, s$b)
}

# Models on aSAH for reclassification and calibration: old = age + wfns, new = + s100b.
old <- glm(y ~ age + wfns, family = binomial, data = cbind(asah, y = y))
new <- glm(y ~ age + wfns + s100b, family = binomial, data = cbind(asah, y = y))
p_old <- fitted(old); p_new <- fitted(new)
write.csv(data.frame(y = y, p_old = p_old, p_new = p_new, p_mis = plogis(1.5 * qlogis(p_new) - 0.3)),
          file.path(out_dir, "asah_models.csv"), row.names = FALSE)
ip <- improveProb(p_old, p_new, y)
cuts <- c(0.2, 0.4)
# improveProb needs [0, 1]: risk classes 1..3 scaled to 0, 0.5, 1 keep their order.
ipc <- improveProb((as.numeric(cut(p_old, c(-Inf, cuts, Inf), right = FALSE)) - 1) / 2,
                   (as.numeric(cut(p_new, c(-Inf, cuts, Inf), right = FALSE)) - 1) / 2, y)
grab <- function(ip) list(nri = ip$nri, se_nri = ip$se.nri, z_nri = ip$z.nri, nri_ev = ip$nri.ev,
                          se_nri_ev = ip$se.nri.ev, nri_ne = ip$nri.ne, se_nri_ne = ip$se.nri.ne,
                          idi = ip$idi, se_idi = ip$se.idi, z_idi = ip$z.idi)
ref$improveProb <- grab(ip)
ref$improveProb_categorical <- grab(ipc)

vp_keys <- c("Intercept", "Slope", "Brier", "Emax", "E90", "Eavg", "S:z", "S:p")
ref$val_prob <- as.list(val.prob(p_new, y, pl = FALSE)[vp_keys])
# A miscalibrated version (too extreme, shifted) so slope and intercept are away from 1 and 0.
p_mis <- plogis(1.5 * qlogis(p_new) - 0.3)
ref$val_prob_miscalibrated <- as.list(val.prob(p_mis, y, pl = FALSE)[vp_keys])
ref$hosmer_lemeshow_miscalibrated <- NULL

# Hosmer-Lemeshow, g = 10, as ResourceSelection::hoslem.test (quantile type 7 breaks).
hl <- function(y, p, g = 10) {
  br <- unique(quantile(p, probs = seq(0, 1, 1 / g)))
  grp <- cut(p, breaks = br, include.lowest = TRUE)
  obs <- xtabs(cbind(1 - y, y) ~ grp)
  expd <- xtabs(cbind(1 - p, p) ~ grp)
  chi <- sum((obs - expd)^2 / expd)
  list(statistic = chi, df = g - 2, p = 1 - pchisq(chi, g - 2))
}
ref$hosmer_lemeshow <- hl(y, p_new)
ref$hosmer_lemeshow_miscalibrated <- hl(y, p_mis)

# Metrics at the Youden cut-off of s100b with exact binomial CIs.
thr <- ref$asah$youden_thresholds[1]
pred <- as.integer(asah$s100b >= thr)
tp <- sum(pred == 1 & y == 1); tn <- sum(pred == 0 & y == 0); fp <- sum(pred == 1 & y == 0); fn <- sum(pred == 0 & y == 1)
bt <- function(k, n) as.numeric(binom.test(k, n)$conf.int)
ref$metrics <- list(threshold = thr, accuracy = c((tp + tn) / length(y), bt(tp + tn, length(y))),
                    sensitivity = c(tp / (tp + fn), bt(tp, tp + fn)), specificity = c(tn / (tn + fp), bt(tn, tn + fp)),
                    ppv = c(tp / (tp + fp), bt(tp, tp + fp)), npv = c(tn / (tn + fn), bt(tn, tn + fn)))

# Net benefit (Vickers), treated when p >= pt.
pts <- c(0.05, 0.1, 0.2, 0.3, 0.5)
ref$net_benefit <- list(thresholds = pts, nb = sapply(pts, function(pt) {
  tr <- p_new >= pt; sum(tr & y == 1) / length(y) - sum(tr & y == 0) / length(y) * pt / (1 - pt) }))

ref$versions <- list(R = R.version.string, pROC = as.character(packageVersion("pROC")),
                     Hmisc = as.character(packageVersion("Hmisc")), rms = as.character(packageVersion("rms")))
write_json(ref, file.path(out_dir, "binary.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "binary.json"), "\n")

# --- rms::validate of a logistic model (appended; rerun the whole script) ---
set.seed(3)
d2 <- cbind(asah, y = y)
f <- lrm(y ~ age + wfns + s100b, data = d2, x = TRUE, y = TRUE)
v <- rms::validate(f, B = 1000)  # jsonlite also exports a validate()
ref2 <- fromJSON(file.path(out_dir, "binary.json"))
ref2$validate <- list(index = rownames(v), orig = unname(v[, "index.orig"]), corrected = unname(v[, "index.corrected"]),
                      optimism = unname(v[, "optimism"]))
write_json(ref2, file.path(out_dir, "binary.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("appended validate reference\n")
