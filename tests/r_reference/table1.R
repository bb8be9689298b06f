# Reference P values for gastrorad.stats.table1 with R's default tests.
# Run from the repository root:  Rscript tests/r_reference/table1.R [path/to/shared/data]
suppressPackageStartupMessages(library(jsonlite))
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared/data"
d <- read.csv(file.path(shared, "clinical", "aSAH.csv"))
colon <- read.csv(file.path(shared, "clinical", "colon.csv"))
ref <- list(
  age_wilcox = wilcox.test(age ~ outcome, data = d)$p.value,
  s100b_wilcox = wilcox.test(s100b ~ outcome, data = d)$p.value,
  age_t = t.test(age ~ outcome, data = d)$p.value,
  gender_chisq = chisq.test(table(d$gender, d$outcome))$p.value,
  wfns_fisher = fisher.test(table(d$wfns, d$outcome))$p.value,
  age_kruskal = kruskal.test(age ~ factor(wfns), data = d)$p.value,
  age_anova = oneway.test(age ~ factor(wfns), data = d, var.equal = TRUE)$p.value,
  rx_chisq = chisq.test(table(colon$rx, colon$sex))$p.value,
  small_wilcox_exact = wilcox.test(c(1.1, 2.3, 3.2, 4.8), c(2.9, 5.1, 6.4, 7.7, 8.2))$p.value
)
write_json(ref, "tests/r_reference/table1.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote tests/r_reference/table1.json\n")
