# Reference values for gastrorad.models (nomograms, stepwise selection).
# Run from the repository root:  Rscript tests/r_reference/models.R [path/to/shared/data]
suppressPackageStartupMessages({library(rms); library(MASS); library(survival); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
shared <- if (length(args)) args[1] else "../shared/data"
out_dir <- "tests/r_reference"
d <- read.csv(file.path(shared, "clinical", "aSAH.csv")); d$y <- as.integer(d$outcome == "Poor")
dd <- datadist(d); options(datadist = "dd")
ref <- list()

# Logistic nomogram (rms::nomogram of an lrm fit)
f <- lrm(y ~ age + wfns + s100b + gender, data = d)
n <- nomogram(f, fun = plogis, funlabel = "P(poor)")
axis <- function(a, v) list(values = a[[v]], points = unname(a$points), xbeta = unname(a$Xbeta))
ref$nomogram_logistic <- list(coef = as.list(coef(f)), sc = attr(n, "info")$sc,
                              age = axis(n$age, "age"), wfns = axis(n$wfns, "wfns"), s100b = axis(n$s100b, "s100b"),
                              gender = axis(n$gender, "gender"), lp = unname(predict(f))[1:5])

# Cox nomogram with 1-year survival (cph, surv = TRUE)
lung <- na.omit(read.csv(file.path(shared, "clinical", "lung.csv"))[, c("time", "status", "age", "sex", "ph.ecog")])
lung$event <- as.integer(lung$status == 2)
ddl <- datadist(lung); options(datadist = "ddl")
g <- cph(Surv(time, event) ~ age + sex + ph.ecog, data = lung, x = TRUE, y = TRUE, surv = TRUE)
surv <- Survival(g)
ng <- nomogram(g, fun = function(lp) surv(365, lp), funlabel = "1-year survival")
ref$nomogram_cox <- list(coef = as.list(coef(g)), sc = attr(ng, "info")$sc, age = axis(ng$age, "age"),
                         sex = axis(ng$sex, "sex"), ph.ecog = axis(ng$ph.ecog, "ph.ecog"),
                         s365_at_lp = lapply(c(-0.5, 0, 0.5), function(lp) surv(365, lp)),
                         center = unname(g$center))

# Backward stepwise selection by AIC (MASS::stepAIC)
options(datadist = "dd")
full <- glm(y ~ age + gender + wfns + s100b + ndka, family = binomial, data = d)
st <- stepAIC(full, direction = "backward", trace = 0)
ref$stepaic_logistic <- list(terms = attr(terms(st), "term.labels"), coef = as.list(coef(st)), aic = AIC(st))
colon <- read.csv(file.path(shared, "clinical", "colon.csv"))
colon <- na.omit(colon[colon$etype == 2, c("time", "status", "age", "sex", "nodes", "obstruct", "perfor", "adhere", "differ", "extent")])
fc <- coxph(Surv(time, status) ~ age + sex + nodes + obstruct + perfor + adhere + differ + extent, data = colon)
sc <- stepAIC(fc, direction = "backward", trace = 0)
write.csv(colon, file.path(out_dir, "colon_death.csv"), row.names = FALSE)
ref$stepaic_cox <- list(terms = attr(terms(sc), "term.labels"), coef = as.list(coef(sc)),
                        aic = extractAIC(sc)[2])
ref$versions <- list(R = R.version.string, rms = as.character(packageVersion("rms")),
                     MASS = as.character(packageVersion("MASS")))
write_json(ref, file.path(out_dir, "models.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("wrote", file.path(out_dir, "models.json"), "\n")

# --- ICC forms (psych::ICC), appended; rerun the whole script ---
suppressPackageStartupMessages(library(psych))
set.seed(21)
truth <- rnorm(30, 10, 2)
ratings <- cbind(r1 = truth + rnorm(30, 0, 0.8), r2 = truth + 0.6 + rnorm(30, 0, 0.8))
write.csv(ratings, file.path(out_dir, "icc_ratings.csv"), row.names = FALSE)
ic <- psych::ICC(ratings)$results
ref2 <- fromJSON(file.path(out_dir, "models.json"))
ref2$icc <- list(ICC1 = ic$ICC[1], ICC2 = ic$ICC[2], ICC3 = ic$ICC[3])
write_json(ref2, file.path(out_dir, "models.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat("appended ICC reference\n")
