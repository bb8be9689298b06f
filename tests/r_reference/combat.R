# Reference for ComBat harmonisation (gastrorad.models.harmonize): sva::ComBat on the lung data
# (survival package), institution as the batch, six numeric columns as the "features".
# Complete cases of the institutions with at least 10 of them: 8 batches, 117 patients.
# Run from the repository root with the sample data beside the checkout:
#   Rscript tests/r_reference/combat.R ../shared/data     # needs r-bioc-sva (Debian)
# Writes combat_input.csv (the data R saw, with 4 cells set to NA for the missing-value case)
# and one combat_<case>.csv per case: the adjusted features, patients in rows as in the input.
suppressPackageStartupMessages(library(sva))
args <- commandArgs(trailingOnly = TRUE)
data_dir <- if (length(args)) args[1] else "../shared/data"
out_dir <- "tests/r_reference"
lung <- na.omit(read.csv(file.path(data_dir, "clinical", "lung.csv")))
keep <- names(which(table(lung$inst) >= 10))
d <- lung[lung$inst %in% keep, ]
feats <- c("age", "ph.karno", "pat.karno", "meal.cal", "wt.loss", "time")
d <- d[order(d$inst, d$time), c("inst", "sex", "ph.ecog", feats)]
d$sex <- ifelse(d$sex == 1, "male", "female")
write.csv(d, file.path(out_dir, "combat_input.csv"), row.names = FALSE)
dat <- t(as.matrix(d[, feats]))            # ComBat wants features in rows, samples in columns
batch <- factor(d$inst)
mod <- model.matrix(~sex, data = d)        # a clinical covariate whose effect ComBat keeps
mod2 <- model.matrix(~sex + ph.ecog, data = d)
dat_na <- dat
dat_na[cbind(c(1, 3, 5, 6), c(4, 30, 77, 116))] <- NA   # missing values: sva's Beta.NA path
save <- function(x, case) {
  out <- as.data.frame(t(x))
  names(out) <- feats
  write.csv(out, file.path(out_dir, paste0("combat_", case, ".csv")), row.names = FALSE)
}
save(suppressMessages(ComBat(dat, batch, par.prior = TRUE)), "parametric")
save(suppressMessages(ComBat(dat, batch, par.prior = FALSE)), "nonparametric")
save(suppressMessages(ComBat(dat, batch, mod = mod, par.prior = TRUE)), "covariate")
save(suppressMessages(ComBat(dat, batch, mod = mod2, par.prior = FALSE)), "covariates_nonparametric")
save(suppressMessages(ComBat(dat, batch, mean.only = TRUE)), "mean_only")
save(suppressMessages(ComBat(dat_na, batch, par.prior = TRUE)), "missing")
na_in <- d
na_in[, feats] <- t(dat_na)
write.csv(na_in, file.path(out_dir, "combat_input_missing.csv"), row.names = FALSE)
cat("wrote combat_*.csv:", nrow(d), "patients,", nlevels(batch), "batches; R", R.version$major,
    R.version$minor, "sva", as.character(packageVersion("sva")), "\n")
