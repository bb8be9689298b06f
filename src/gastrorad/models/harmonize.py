"""ComBat harmonisation of features across centres (scanners), fitted on the training cohort.

ComBat (Johnson, Li and Rabinovic, Biostatistics 2007; ``sva::ComBat`` in R) models each
feature ``g`` of patient ``j`` in centre ``i`` as::

    x_ijg = alpha_g + C_j beta_g + gamma_ig + sqrt(delta_ig) * e_ijg

(``C`` the clinical covariates whose effect is kept, never the outcome), estimates the centre's
additive (``gamma``) and multiplicative (``delta``) effects per feature, shrinks them with
empirical-Bayes priors pooled across the features of that centre, and removes them. This module
follows ``sva::ComBat`` (sva 3.46) step for step, and the tests match it to 1e-6 on the lung data
(``tests/r_reference/combat.R``):

* standardisation by a pooled least-squares fit on centre + covariates; the reference level is
  the size-weighted mean of the training centres (``grand.mean``), the pooled variance is the mean
  squared residual (``rowVars`` of the residuals when values are missing, as sva);
* method-of-moments hyperpriors per centre (normal for ``gamma``, inverse gamma for ``delta``);
* parametric: the iterative posterior solution with sva's stopping rule (``conv = 1e-4`` on the
  largest relative change, whose denominator is the signed previous value, as ``it.sol``);
* non-parametric (``par.prior = FALSE``): each feature's posterior means integrate over the
  other features' estimates (``int.eprior``; deterministic). The likelihoods are weighted on the
  log scale, so a large centre, whose likelihoods underflow to 0 in R (``NaN`` result), still
  gets the weighted mean; where R's do not underflow the two agree;
* a centre with one patient switches to the mean-only model (as sva); features with no spread
  inside a centre (or fewer than 2 values there) are left as they are (as sva's "uniform
  expression" rows).

Beyond ``sva::ComBat``, for a study with a locked model:

* **fit on training, apply to others**: :meth:`ComBatModel.transform` applies the training
  estimates to any patient of a training centre (internal cohort, a new patient at ``predict``);
* **a single training centre** is the reference (``gamma = 0``, ``delta = 1``): its data are left
  as they are and other centres are mapped onto it, as reference-batch ComBat (``ref.batch``;
  Zhang et al. 2018; M-ComBat, Stein et al. 2015);
* **a centre unseen in training** (:func:`adapt_new_centre`) is adapted label-free: its data are
  standardised with the *training* fit (grand mean, pooled variance, covariate effects) and its
  ``gamma``/``delta`` are the EB estimates from its own patients, with hyperpriors from its own
  features, exactly as ComBat would treat that centre had it been in the fit while the training
  estimates stay locked (as neuroHarmonize's ``harmonizationApply`` for a new site, and the
  "ComBat on a new batch" use discussed by Da-ano et al. 2021 and Orlhac et al., J Nucl Med
  2022). It uses no outcome, but it uses the new centre's own feature distribution: it needs a
  sample of that centre (``harmonize.new_centre_min``) and must be reported (TRIPOD+AI, data
  preparation). A centre too small to adapt is left as it is (``gamma = 0``, ``delta = 1``:
  the transform is then the identity).

Errors the user can fix (a covariate confounded with the centre, a design that cannot be
estimated, misaligned inputs) are :class:`~gastrorad.errors.InputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gastrorad.errors import InputError, Problem

#: A study's harmonisation leaves a feature as it is when one value holds more than this share of a
#: centre's patients (a spike, see :func:`_spiky`); :func:`fit_combat` alone defaults to none, as sva.
MAX_TIED = 0.5
#: sva's convergence threshold of the parametric iterative solution (``it.sol(conv = 1e-4)``).
CONV = 1e-4
_MAX_ITER = 10_000
_WHERE = "harmonize"


def _problem(reason: str, column: str | None = None) -> InputError:
    return InputError(Problem(_WHERE, reason, column=column))


# ----------------------------------------------------------------------------- covariates
@dataclass
class CovariateEncoding:
    """How clinical covariates become design columns: numeric ones as they are, categorical ones
    as treatment-coded indicators (first level the reference, as ``model.matrix``). Missing values
    take the training median / most frequent level; an unseen level counts as the reference."""

    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    impute: dict[str, float | str] = field(default_factory=dict)

    @classmethod
    def fit(cls, cov: pd.DataFrame | None, categorical: list[str] | tuple = ()) -> "CovariateEncoding":
        enc = cls()
        if cov is None:
            return enc
        for c in cov.columns:
            col = cov[c]
            num = pd.to_numeric(col, errors="coerce")
            if c not in categorical and num.notna().sum() == col.notna().sum() and num.notna().any():
                enc.numeric.append(c)
                enc.impute[c] = float(num.median())
            else:
                s = col.dropna().astype(str)
                if s.empty:
                    raise _problem(f"covariate '{c}' has no value in the training patients", c)
                enc.categorical[c] = sorted(s.unique())
                enc.impute[c] = str(s.mode().sort_values().iloc[0])
        return enc

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *(f"{c}{lv}" for c, lv in self._dummies())]

    def _dummies(self):
        return [(c, lv) for c, levels in self.categorical.items() for lv in levels[1:]]

    def design(self, cov: pd.DataFrame | None, n: int) -> np.ndarray:
        if not self.numeric and not self.categorical:
            return np.zeros((n, 0))
        if cov is None:
            raise _problem(f"the harmonisation needs the covariates {[*self.numeric, *self.categorical]}")
        missing = [c for c in [*self.numeric, *self.categorical] if c not in cov.columns]
        if missing:
            raise _problem(f"covariate column(s) {missing} missing", missing[0])
        cols = [pd.to_numeric(cov[c], errors="coerce").fillna(self.impute[c]).to_numpy(float) for c in self.numeric]
        for c, lv in self._dummies():
            v = cov[c].astype(object).where(cov[c].notna(), self.impute[c]).astype(str)
            cols.append((v == lv).to_numpy(float))
        return np.column_stack(cols) if cols else np.zeros((n, 0))

    def to_dict(self) -> dict:
        return {"numeric": self.numeric, "categorical": self.categorical, "impute": self.impute}

    @classmethod
    def from_dict(cls, d: dict) -> "CovariateEncoding":
        return cls(list(d.get("numeric", [])), {k: list(v) for k, v in d.get("categorical", {}).items()},
                   dict(d.get("impute", {})))


# ----------------------------------------------------------------------------- the model
@dataclass
class ComBatModel:
    """A fitted ComBat: everything needed to harmonise new patients (JSON-able, see :meth:`to_dict`).

    ``gamma``/``delta`` hold each known centre's (training or adapted) EB estimates; ``adjusted``
    (centre -> bool per feature) says which features that centre's transform changes."""

    features: list[str]
    parametric: bool
    mean_only: bool
    grand_mean: np.ndarray                 # (p,) the reference level (size-weighted training centres)
    var_pooled: np.ndarray                 # (p,)
    beta_cov: np.ndarray                   # (q, p) covariate effects, kept
    encoding: CovariateEncoding
    gamma: dict[str, np.ndarray]
    delta: dict[str, np.ndarray]
    adjusted: dict[str, np.ndarray]
    training_centres: list[str]
    n: dict[str, int]                      # patients per centre the estimates came from
    adjustable: np.ndarray | None = None   # (p,) features the training fit adjusts (a new centre: at most these)
    max_tied: float | None = None          # spikes left as they are (see _spiky); None: none, as sva
    adapted: list[str] = field(default_factory=list)   # centres estimated label-free, not in training
    notes: list[str] = field(default_factory=list)

    # ---- applying
    def _standardise(self, X: pd.DataFrame, covariates: pd.DataFrame | None):
        missing = [c for c in self.features if c not in X.columns]
        if missing:
            raise _problem(f"{len(missing)} feature(s) the harmonisation was fitted on are missing, e.g. "
                           f"'{missing[0]}'", missing[0])
        x = X[self.features].to_numpy(float)
        cov = None if covariates is None else covariates.reset_index(drop=True)
        stand = self.grand_mean + self.encoding.design(cov, len(x)) @ self.beta_cov
        return x, stand, np.sqrt(self.var_pooled)

    def transform(self, X: pd.DataFrame, centre: pd.Series | np.ndarray | list, covariates: pd.DataFrame | None = None,
                  unseen: str = "error") -> pd.DataFrame:
        """``X`` harmonised (same index and columns; features the model does not know pass
        through). A centre the model does not know is an error, or left as it is with
        ``unseen="identity"``."""
        centre = _centre_array(centre, len(X))
        unknown = sorted(set(centre) - set(self.gamma))
        if unknown and unseen != "identity":
            raise _problem(f"centre(s) {unknown} are not in the harmonisation (seen: {sorted(self.gamma)}); "
                           "adapt them with adapt_new_centre, or leave them as they are")
        x, stand, sd = self._standardise(X, covariates)
        out = x.copy()
        for c in set(centre) - set(unknown):
            rows = centre == c
            keep = self.adjusted[c]
            s = (x[rows] - stand[rows]) / sd
            adj = (s - self.gamma[c]) / np.sqrt(self.delta[c]) * sd + stand[rows]
            out[rows] = np.where(keep, adj, x[rows])
        res = X.copy()
        res[self.features] = out
        return res

    # ---- serialisation
    def to_dict(self) -> dict:
        """A JSON-able dict (lists of floats) that :meth:`from_dict` reads back exactly."""
        def arr(a):
            return [float(v) for v in np.asarray(a, float).ravel()]
        return {"method": "combat", "parametric": self.parametric, "mean_only": self.mean_only,
                "features": list(self.features), "grand_mean": arr(self.grand_mean),
                "var_pooled": arr(self.var_pooled), "beta_cov": [arr(r) for r in self.beta_cov],
                "covariates": self.encoding.to_dict(), "training_centres": list(self.training_centres),
                "adjustable": [bool(b) for b in self.adjustable], "max_tied": self.max_tied,
                "adapted": list(self.adapted), "n": {k: int(v) for k, v in self.n.items()},
                "centres": {c: {"gamma": arr(self.gamma[c]), "delta": arr(self.delta[c]),
                                "adjusted": [bool(b) for b in self.adjusted[c]]} for c in self.gamma},
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict) -> "ComBatModel":
        try:
            p = len(d["features"])
            beta = np.asarray(d["beta_cov"], float).reshape(-1, p)
            cents = d["centres"]
            return cls(features=list(d["features"]), parametric=bool(d["parametric"]),
                       mean_only=bool(d["mean_only"]), grand_mean=np.asarray(d["grand_mean"], float),
                       var_pooled=np.asarray(d["var_pooled"], float), beta_cov=beta,
                       encoding=CovariateEncoding.from_dict(d.get("covariates", {})),
                       gamma={c: np.asarray(v["gamma"], float) for c, v in cents.items()},
                       delta={c: np.asarray(v["delta"], float) for c, v in cents.items()},
                       adjusted={c: np.asarray(v["adjusted"], bool) for c, v in cents.items()},
                       training_centres=list(d["training_centres"]), n=dict(d.get("n", {})),
                       adjustable=np.asarray(d["adjustable"], bool), max_tied=d.get("max_tied"),
                       adapted=list(d.get("adapted", [])), notes=list(d.get("notes", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise _problem(f"the stored harmonisation cannot be read ({type(exc).__name__}: {exc})") from None


def _centre_array(centre, n: int) -> np.ndarray:
    c = pd.Series(np.asarray(centre, dtype=object)).astype(str).to_numpy()
    if len(c) != n:
        raise _problem(f"{len(c)} centre labels for {n} patients")
    return c


# ----------------------------------------------------------------------------- the EB steps (sva)
def _nanvar_rows(a: np.ndarray, axis: int) -> np.ndarray:
    """Sample variance (n - 1), ignoring NaN (``rowVars(na.rm = TRUE)``); NaN with < 2 values."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = np.sum(~np.isnan(a), axis=axis)
        m = np.nanmean(a, axis=axis, keepdims=True) if cnt.size and cnt.max() > 0 else np.nan
        ss = np.nansum((a - m) ** 2, axis=axis)
        return np.where(cnt > 1, ss / np.maximum(cnt - 1, 1), np.nan)


def _priors(gamma_hat: np.ndarray, delta_hat: np.ndarray):
    """sva's method-of-moments hyperpriors across the features: gamma.bar, t2, a.prior, b.prior."""
    g, d = gamma_hat[np.isfinite(gamma_hat)], delta_hat[np.isfinite(delta_hat)]
    g_bar = float(np.mean(g)) if g.size else 0.0
    t2 = float(np.var(g, ddof=1)) if g.size > 1 else np.nan
    m = float(np.mean(d)) if d.size else 1.0
    s2 = float(np.var(d, ddof=1)) if d.size > 1 else np.nan
    s2, m = np.float64(s2), np.float64(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (2 * s2 + m ** 2) / s2
        b = (m * s2 + m ** 3) / s2
    return g_bar, t2, a, b


def _it_sol(s: np.ndarray, g_hat, d_hat, g_bar, t2, a, b, conv: float = CONV):
    """``sva:::it.sol`` vectorised over the features (columns of ``s``, one centre's rows)."""
    n = np.sum(~np.isnan(s), axis=0)
    g_old, d_old = g_hat.copy(), d_hat.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_MAX_ITER):
            g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
            sum2 = np.nansum((s - g_new) ** 2, axis=0)
            d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
            # sva's rule: max(abs(new - old) / old), the denominator signed as in it.sol
            change = np.nanmax(np.concatenate([np.abs(g_new - g_old) / g_old, np.abs(d_new - d_old) / d_old]))
            g_old, d_old = g_new, d_new
            if not change > conv:
                return g_new, d_new, None
    return g_new, d_new, f"the parametric EB solution did not converge in {_MAX_ITER} iterations"


def _int_eprior(s: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray):
    """``sva:::int.eprior`` (non-parametric EB), vectorised: for feature i, the posterior means of
    gamma and delta weight every other feature's estimates by the likelihood of feature i's data
    under them. Weighted on the log scale (see the module docstring)."""
    ok = ~np.isnan(s)
    n = ok.sum(axis=0).astype(float)                        # values per feature
    s0 = np.where(ok, s, 0.0)
    s1, s2 = s0.sum(axis=0), (s0 ** 2).sum(axis=0)
    g, d = g_hat[None, :], d_hat[None, :]                    # j: the features integrated over
    # sum_k (x_ik - g_j)^2 = S2_i - 2 g_j S1_i + n_i g_j^2
    sum2 = s2[:, None] - 2 * g * s1[:, None] + n[:, None] * g ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        loglh = -(n[:, None] / 2) * np.log(2 * math.pi * d) - sum2 / (2 * d)
    loglh[~np.isfinite(loglh)] = -np.inf
    np.fill_diagonal(loglh, -np.inf)                          # g.hat[-i]: not the feature itself
    top = loglh.max(axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    w = np.exp(loglh - top)
    tot = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (w @ g_hat) / tot, (w @ d_hat) / tot


def _varies(x: np.ndarray, mean_only: bool) -> np.ndarray:
    """Features a centre's raw values ``x`` (its rows) can be adjusted on: sva leaves a feature with
    no spread inside a centre ("uniform expression within a single batch") as it is; here also one
    with fewer than 2 values there (1 in the mean-only model). A one-patient centre constrains nothing."""
    cnt = np.sum(~np.isnan(x), axis=0)
    if len(x) < 2:
        return np.ones(x.shape[1], bool)
    var = _nanvar_rows(x, axis=0)
    return (cnt >= (1 if mean_only else 2)) & ~(np.isfinite(var) & (var == 0)) & (cnt > 0)


def _eb(s: np.ndarray, parametric: bool, mean_only: bool, adjusted: np.ndarray, notes: list[str], label: str):
    """EB estimates (gamma*, delta*) of one centre from its standardised data ``s`` (rows its
    patients) on the ``adjusted`` features, with hyperpriors from those features (gamma 0 and
    delta 1 elsewhere)."""
    p = s.shape[1]
    cnt = np.sum(~np.isnan(s), axis=0)
    with np.errstate(invalid="ignore"):
        g_hat = np.nansum(np.where(np.isnan(s), 0.0, s), axis=0) / np.maximum(cnt, 1)
    d_hat = np.ones(p) if mean_only else _nanvar_rows(s, axis=0)
    gs, ds = np.zeros(p), np.ones(p)
    if not adjusted.any():
        return gs, ds
    gh, dh, sa = g_hat[adjusted], d_hat[adjusted], s[:, adjusted]
    g_bar, t2, a, b = _priors(gh, dh)
    if adjusted.sum() < 2 or not np.isfinite(t2) or t2 <= 0 or (not mean_only and not (np.isfinite(a) and
                                                                                    np.isfinite(b))):
        notes.append(f"centre {label}: the features give no empirical-Bayes prior (one feature, or no spread across "
                     "features): the centre's own location/scale estimates are used, unshrunk")
        gs[adjusted], ds[adjusted] = gh, dh
        return gs, ds
    if parametric:
        if mean_only:
            gs[adjusted] = (t2 * gh + g_bar) / (t2 + 1)         # postmean(g.hat, g.bar, 1, 1, t2)
        else:
            g1, d1, warn = _it_sol(sa, gh, dh, g_bar, t2, a, b)
            if warn:
                notes.append(f"centre {label}: {warn}")
            gs[adjusted], ds[adjusted] = g1, d1
    else:
        g1, d1 = _int_eprior(sa, gh, dh)
        if mean_only:
            d1 = np.ones_like(d1)
        bad = ~(np.isfinite(g1) & np.isfinite(d1))
        g1[bad], d1[bad] = gh[bad], dh[bad]
        gs[adjusted], ds[adjusted] = g1, d1
    return gs, ds


# ----------------------------------------------------------------------------- fitting
def _spiky(x: np.ndarray, max_tied: float | None) -> np.ndarray:
    """Features whose most frequent value holds more than ``max_tied`` of the (non-missing) values
    of ``x``: a spike (e.g. the zeros of a ReLU unit that rarely fires) that a location/scale
    adjustment would move off its value, so every tied patient of a centre lands on a new value
    of its own. ComBat's normal model does not fit them: they are left as they are."""
    if max_tied is None or not len(x):
        return np.zeros(x.shape[1], bool)
    srt = np.sort(x, axis=0)                                  # NaN sort last
    n = np.sum(~np.isnan(x), axis=0)
    same = np.vstack([np.zeros((1, x.shape[1]), bool), srt[1:] == srt[:-1]])
    run = np.zeros(x.shape, int)                              # length of the run of equal values ending here
    for i in range(1, len(x)):
        run[i] = np.where(same[i], run[i - 1] + 1, 0)
    longest = run.max(axis=0) + 1
    return (n > 0) & (longest > max_tied * np.maximum(n, 1))


def fit_combat(X: pd.DataFrame, centre, covariates: pd.DataFrame | None = None, parametric: bool = True,
               mean_only: bool = False, categorical: list[str] | tuple = (),
               max_tied: float | None = None) -> ComBatModel:
    """Fit ComBat on ``X`` (patients in rows, features in columns; NaN allowed) with the centre of
    each patient and optional clinical ``covariates`` to keep (``categorical`` names the ones to
    treat as levels; text columns always are). ``model.transform(X, centre, covariates)`` then
    returns what ``sva::ComBat(t(X), centre, mod = model.matrix(~covariates), par.prior =
    parametric, mean.only = mean_only)`` returns. ``max_tied`` (e.g. 0.5; None as sva) leaves
    features with a spike at one value in the training patients as they are (:func:`_spiky`)."""
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(np.asarray(X, float))
    feats = [str(c) for c in X.columns]
    x = X.to_numpy(float)
    n, p = x.shape
    if n < 2 or p < 1:
        raise _problem(f"ComBat needs at least 2 patients and 1 feature (got {n} x {p})")
    if np.isinf(x).any():
        j = int(np.where(np.isinf(x).any(axis=0))[0][0])
        raise _problem(f"feature '{feats[j]}' has infinite values", feats[j])
    c = _centre_array(centre, n)
    if covariates is not None and len(covariates) != n:
        raise _problem(f"{len(covariates)} covariate rows for {n} patients")
    if pd.isna(pd.Series(np.asarray(centre, dtype=object))).any():
        raise _problem("some patients have no centre", "center")
    levels = sorted(set(c))
    k = len(levels)
    idx = {lv: np.where(c == lv)[0] for lv in levels}
    sizes = np.array([len(idx[lv]) for lv in levels], float)
    notes: list[str] = []
    if (sizes == 1).any() and not mean_only:
        mean_only = True
        notes.append(f"centre(s) {[lv for lv, s in zip(levels, sizes) if s == 1]} have one patient: the mean-only "
                     "model is used (no scale adjustment), as sva::ComBat")
    enc = CovariateEncoding.fit(covariates.reset_index(drop=True) if covariates is not None else None, categorical)
    C = enc.design(covariates.reset_index(drop=True) if covariates is not None else None, n)
    keep_cov = ~np.all(C == C[:1], axis=0) if len(C) else np.zeros(0, bool)   # constant columns (sva's `check`)
    if len(C) and not keep_cov.all():
        dropped = [col for col, kc in zip(enc.columns, keep_cov) if not kc]
        notes.append(f"covariate column(s) {dropped} are constant in the training patients: not used")
    C = C[:, keep_cov] if len(C) else C
    batch = np.zeros((n, k))
    for j, lv in enumerate(levels):
        batch[idx[lv], j] = 1.0
    design = np.hstack([batch, C])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        what = ("the covariates are confounded with the centre (e.g. a covariate constant within each centre)"
                if np.linalg.matrix_rank(C) == C.shape[1] else "the covariates are confounded with each other")
        raise _problem(f"ComBat cannot separate centre and covariate effects: {what}; remove the covariate")
    nan = np.isnan(x)
    if not nan.any():
        B = np.linalg.solve(design.T @ design, design.T @ x)
        var_pooled = np.mean((x - design @ B) ** 2, axis=0)
    else:  # sva's Beta.NA: one least-squares fit per feature on its non-missing rows
        B = np.full((design.shape[1], p), np.nan)
        for pattern in {tuple(col) for col in (~nan).T}:
            rows = np.array(pattern)
            cols = np.where((~nan == rows[:, None]).all(axis=0))[0]
            D = design[rows]
            if rows.sum() < design.shape[1] or np.linalg.matrix_rank(D) < D.shape[1]:
                raise _problem(f"feature '{feats[cols[0]]}' has too many missing values to fit the centre/covariate "
                               "model", feats[cols[0]])
            B[:, cols] = np.linalg.solve(D.T @ D, D.T @ x[rows][:, cols])
        var_pooled = _nanvar_rows(x - design @ B, axis=0)
    grand_mean = (sizes / n) @ B[:k]
    beta_cov = np.zeros((len(enc.columns), p))
    beta_cov[keep_cov] = B[k:]
    stand = grand_mean + C @ B[k:]
    sd = np.sqrt(var_pooled)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (x - stand) / sd
    # sva leaves a feature uniform within any centre unadjusted in every centre, and out of the priors
    adjustable = np.logical_and.reduce([_varies(x[idx[lv]], mean_only) for lv in levels])
    adjustable &= np.isfinite(sd) & (sd > 0)
    if not adjustable.all():
        notes.append(f"{int((~adjustable).sum())} feature(s) constant or missing within a training centre are left "
                     "as they are (as sva::ComBat)")
    spiky = _spiky(x, max_tied) & adjustable
    if spiky.any():
        notes.append(f"{int(spiky.sum())} feature(s) with one value in more than {max_tied:.0%} of the training "
                     "patients (a spike, e.g. a unit that rarely fires) are left as they are")
    adjustable &= ~spiky
    gamma, delta, adjusted = {}, {}, {}
    if k == 1:  # one training centre: it is the reference, and is left as it is
        notes.append(f"one training centre ({levels[0]}): it is the reference; other centres are mapped onto it")
        gamma[levels[0]], delta[levels[0]] = np.zeros(p), np.ones(p)
        adjusted[levels[0]] = np.zeros(p, bool)
    else:
        for lv in levels:
            gamma[lv], delta[lv] = _eb(s[idx[lv]], parametric, mean_only, adjustable, notes, str(lv))
            adjusted[lv] = adjustable.copy()
    var_pooled = np.where(np.isfinite(var_pooled) & (var_pooled > 0), var_pooled, 1.0)
    return ComBatModel(features=feats, parametric=parametric, mean_only=mean_only, grand_mean=grand_mean,
                       var_pooled=var_pooled, beta_cov=beta_cov, encoding=enc, gamma=gamma, delta=delta,
                       adjusted=adjusted, training_centres=[str(lv) for lv in levels],
                       n={str(lv): int(s_) for lv, s_ in zip(levels, sizes)}, adjustable=adjustable, max_tied=max_tied,
                       notes=notes)


def combat(X: pd.DataFrame, centre, covariates: pd.DataFrame | None = None, parametric: bool = True,
           mean_only: bool = False) -> pd.DataFrame:
    """``sva::ComBat`` in one call: fit on ``X`` and return ``X`` harmonised."""
    return fit_combat(X, centre, covariates, parametric, mean_only).transform(X, centre, covariates)


def adapt_new_centre(model: ComBatModel, X_new: pd.DataFrame, covariates: pd.DataFrame | None = None,
                     centre: str = "new") -> ComBatModel:
    """A copy of ``model`` that also knows ``centre``, a centre unseen in training, estimated
    label-free from its own patients ``X_new`` (see the module docstring): standardised with the
    training fit, its location/scale from its own data with EB priors from its own features. The
    outcome is never used. Needs at least 2 patients (1: the mean-only model)."""
    import copy
    centre = str(centre)
    if centre in model.training_centres:
        raise _problem(f"centre '{centre}' is a training centre: its training estimates are used")
    n = len(X_new)
    if n < 1:
        raise _problem(f"centre '{centre}' has no patient to adapt from")
    x, stand, sd = model._standardise(X_new, covariates)
    s = (x - stand) / sd
    notes: list[str] = []
    mean_only = model.mean_only or n == 1
    adjusted = _varies(x, mean_only) & model.adjustable & ~_spiky(x, model.max_tied)
    if not adjusted.all():
        notes.append(f"centre {centre}: {int((~adjusted).sum())} feature(s) left as they are (constant, missing or a "
                     "spike within the centre, or not adjusted in training)")
    g, d = _eb(s, model.parametric, mean_only, adjusted, notes, centre)
    new = copy.deepcopy(model)
    new.gamma[centre], new.delta[centre], new.adjusted[centre] = g, d, adjusted
    new.n[centre] = int(n)
    if centre not in new.adapted:
        new.adapted.append(centre)
    new.notes += notes
    return new


def with_identity_centre(model: ComBatModel, centre: str) -> ComBatModel:
    """A copy of ``model`` that leaves ``centre`` as it is (``gamma = 0``, ``delta = 1``): a new
    centre with too few patients to adapt."""
    import copy
    new = copy.deepcopy(model)
    p = len(model.features)
    new.gamma[str(centre)], new.delta[str(centre)] = np.zeros(p), np.ones(p)
    new.adjusted[str(centre)] = np.zeros(p, bool)
    return new


# ----------------------------------------------------------------------------- centre effects
def kruskal_pvalues(X: pd.DataFrame | np.ndarray, centre) -> np.ndarray:
    """Kruskal-Wallis p-value of each column of ``X`` across centres (``kruskal.test``, with the
    tie correction), vectorised over the columns. NaN values are left out per column; a column
    with fewer than 2 centres holding values, or with no spread, gets NaN."""
    from scipy.stats import chi2, rankdata
    x = np.asarray(X, float)
    c = _centre_array(centre, len(x))
    levels = sorted(set(c))
    out = np.full(x.shape[1], np.nan)
    ok = ~np.isnan(x)
    groups = np.stack([c == lv for lv in levels])             # (k, n)
    for pattern in {tuple(col) for col in ok.T}:              # usually one pattern: no missing values
        rows = np.array(pattern)
        cols = np.where((ok == rows[:, None]).all(axis=0))[0]
        xs = x[rows][:, cols]
        N = len(xs)
        g = groups[:, rows]
        ng = g.sum(axis=1)
        present = ng > 0
        if present.sum() < 2 or N < 3:
            continue
        r = rankdata(xs, axis=0)
        sums = g[present].astype(float) @ r                   # (k', p) rank sums
        h = 12.0 / (N * (N + 1)) * np.sum(sums ** 2 / ng[present][:, None], axis=0) - 3 * (N + 1)
        # tie correction 1 - sum(t^3 - t) / (N^3 - N); with mid-ranks, sum(t^3 - t) = N^3 - N - 12 sum (r - mean r)^2
        corr = 12.0 * np.sum((r - (N + 1) / 2.0) ** 2, axis=0) / (N ** 3 - N)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(corr > 0, h / corr, np.nan)
        out[cols] = chi2.sf(h, int(present.sum()) - 1)
    return out


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``p.adjust(method = "BH")``); NaN stay NaN."""
    p = np.asarray(p, float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q)[::-1]
    ranked = q[order] * m / np.arange(m, 0, -1)
    adj = np.minimum.accumulate(ranked)
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def centre_effect_share(X: pd.DataFrame, centre, alpha: float = 0.05) -> dict:
    """The share of features whose distribution differs across centres: Kruskal-Wallis per
    feature, Benjamini-Hochberg FDR across the features, q < ``alpha``. Returns
    ``{"share", "significant", "tested", "centres"}``; share is None with fewer than 2 centres."""
    c = _centre_array(centre, len(X))
    centres = sorted(set(c))
    if len(centres) < 2:
        return {"share": None, "significant": 0, "tested": 0, "centres": centres}
    q = bh_adjust(kruskal_pvalues(X, c))
    tested = int(np.isfinite(q).sum())
    sig = int(np.sum(q[np.isfinite(q)] < alpha))
    return {"share": sig / tested if tested else None, "significant": sig, "tested": tested, "centres": centres}


def principal_components(X: pd.DataFrame, k: int = 2) -> np.ndarray:
    """The first ``k`` principal-component scores of ``X`` after each column is standardised
    (columns with no spread or with missing values are left out)."""
    x = np.asarray(X, float)
    x = x[:, np.isfinite(x).all(axis=0)]
    sd = x.std(axis=0)
    x = (x[:, sd > 0] - x[:, sd > 0].mean(axis=0)) / sd[sd > 0]
    if x.shape[1] == 0:
        return np.zeros((len(x), k))
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    scores = u[:, :k] * sv[:k]
    if scores.shape[1] < k:
        scores = np.hstack([scores, np.zeros((len(x), k - scores.shape[1]))])
    return scores


# ----------------------------------------------------------------------------- a study's cohorts
def centre_labels(rows: pd.DataFrame, where: str = "clinical table") -> pd.Series:
    """The ``center`` column of ``rows`` as text; an :class:`InputError` when it is absent or empty."""
    if "center" not in rows.columns:
        raise InputError(Problem(where, "harmonize.method: combat needs the centre of every patient: add a 'center' "
                                 "column (or set harmonize.method: none)", column="center"))
    c = rows["center"]
    if c.isna().any():
        ids = rows.loc[c.isna(), "patient_id"].astype(str).head(3).tolist() if "patient_id" in rows else []
        raise InputError(Problem(where, f"{int(c.isna().sum())} patient(s) have no centre (e.g. {ids}); ComBat "
                                 "needs the centre of every patient", column="center"))
    return c.astype(str)


def harmonize_cohorts(rows: pd.DataFrame, feats: list[str], *, parametric: bool = True,
                      covariates: list[str] = (), categorical: list[str] | tuple = (), new_centre_min: int = 20,
                      unseen: str = "adapt", label: str = "", log=None) -> tuple[pd.DataFrame, ComBatModel, dict]:
    """ComBat of a study's feature table ``rows`` (patient_id, cohort, center, the covariates and
    ``feats``): fitted on the training rows by centre, applied to every row of a training centre;
    a centre unseen in training is adapted label-free from its own rows when it has at least
    ``new_centre_min`` of them and ``unseen == "adapt"``, else left as it is (a warning through
    ``log``). Returns the harmonised rows, the model (with the adapted centres; not the ones left as
    they are) and a record of what was done: {"centres_seen", "adapted", "left_as_is", "notes"}
    (centre -> patients)."""
    log = log or (lambda line: None)
    centre = centre_labels(rows)
    missing = [c for c in covariates if c not in rows.columns]
    if missing:
        raise InputError(Problem("study file", f"harmonize.covariates: no clinical column '{missing[0]}'",
                                 column="harmonize.covariates"))
    cov = rows[list(covariates)].reset_index(drop=True) if covariates else None
    tr = (rows.cohort == "training").to_numpy()
    if not tr.any():
        raise InputError(Problem("cohorts", "harmonisation is fitted on the training cohort, which has no patient "
                                 "with features"))
    model = fit_combat(rows.loc[tr, feats], centre[tr], None if cov is None else cov[tr],
                       parametric=parametric, categorical=categorical, max_tied=MAX_TIED)
    record: dict = {"centres_seen": {c: model.n[c] for c in model.training_centres}, "adapted": {},
                    "left_as_is": {}}
    c_all = centre.to_numpy()
    for c in sorted(set(c_all) - set(model.training_centres)):
        sel = c_all == c
        n = int(sel.sum())
        if unseen == "adapt" and n >= new_centre_min:
            model = adapt_new_centre(model, rows.loc[sel, feats], None if cov is None else cov[sel], c)
            record["adapted"][c] = n
            log(f"    harmonize: {label}: centre {c} (not in training) adapted label-free from its {n} patients")
        else:  # not stored in the model: a later batch of this centre (predict) may be large enough to adapt
            record["left_as_is"][c] = n
            why = (f"{n} patient(s) < harmonize.new_centre_min = {new_centre_min}" if unseen == "adapt"
                   else "harmonize.unseen_centres: training")
            log(f"    harmonize: WARNING {label}: centre {c} is not in training and is left as it is ({why})")
    adj = model.transform(rows[feats].reset_index(drop=True), c_all, cov, unseen="identity").set_axis(rows.index)
    out = pd.concat([rows.drop(columns=feats), adj], axis=1)[list(rows.columns)]
    record["notes"] = list(dict.fromkeys(model.notes))
    return out, model, record


def centre_effects(before: pd.DataFrame, after: pd.DataFrame | None, centre, alpha: float = 0.05
                   ) -> tuple[dict, pd.DataFrame | None]:
    """Centre effect of a feature table before (and after) harmonisation: the share of features
    with a Kruskal-Wallis difference across centres (BH FDR q < ``alpha``, :func:`centre_effect_share`)
    and the first two principal components of the standardised features (columns pc1, pc2, stage,
    centre; rows as ``before``). ``({}, None)`` with fewer than 2 centres."""
    c = _centre_array(centre, len(before))
    if len(set(c)) < 2:
        return {}, None
    summary, pcs = {}, []
    for stage, X in (("before", before), ("after", after)):
        if X is None:
            continue
        summary[stage] = centre_effect_share(X, c, alpha)
        sc = principal_components(X)
        pcs.append(pd.DataFrame({"stage": stage, "centre": c, "pc1": sc[:, 0], "pc2": sc[:, 1]}))
    if "after" in summary and summary["before"]["share"]:
        summary["share_ratio"] = summary["after"]["share"] / summary["before"]["share"]
    return summary, pd.concat(pcs, ignore_index=True)


def harmonize_new_patients(features: pd.DataFrame, clinical: pd.DataFrame, stored: dict, *, new_centre_min: int,
                           unseen: str = "adapt", label: str = "", log=None) -> pd.DataFrame:
    """``gastrorad predict``: a bundle's ComBat (``stored``, :meth:`ComBatModel.to_dict`) applied to new
    patients' ``features`` (patient_id and the feature columns), their centre and covariates taken
    from ``clinical``. A centre the model knows (a training centre, or one the study adapted) gets
    its stored estimates; a new one with at least ``new_centre_min`` patients in this batch is adapted
    label-free from them (``unseen == "adapt"``); otherwise its features are used as they are, and
    ``log`` (else :func:`warnings.warn`) says so. Returns ``features`` harmonised."""
    import warnings
    say = log or (lambda line: warnings.warn(line, stacklevel=2))
    model = ComBatModel.from_dict(stored)
    clin = clinical.assign(patient_id=clinical.patient_id.astype(str)).drop_duplicates("patient_id")
    clin = clin.set_index("patient_id").reindex(features.patient_id.astype(str))
    centre = (clin["center"] if "center" in clin.columns else pd.Series("new", index=clin.index))
    centre = centre.where(centre.notna(), "new").astype(str).to_numpy()
    names = [*model.encoding.numeric, *model.encoding.categorical]
    cov = clin.reset_index(drop=True)[names] if names and set(names) <= set(clin.columns) else None
    if names and cov is None:
        raise _problem(f"the locked harmonisation keeps the effect of {names}: give these clinical columns "
                       f"(missing: {sorted(set(names) - set(clin.columns))})")
    for c in sorted(set(centre) - set(model.gamma)):
        sel = centre == c
        n = int(sel.sum())
        if unseen == "adapt" and n >= new_centre_min:
            model = adapt_new_centre(model, features.loc[sel], None if cov is None else cov[sel], c)
            say(f"harmonize: {label}: centre {c} is new to the model: adapted label-free from the {n} patients "
                "of this batch")
        else:
            model = with_identity_centre(model, c)
            why = (f"{n} patient(s) here, fewer than harmonize.new_centre_min = {new_centre_min}"
                   if unseen == "adapt" else "harmonize.unseen_centres: training")
            say(f"harmonize: WARNING {label}: centre {c} is new to the model ({why}): its features are used as "
                "they are, without a centre adjustment; give at least that many of its patients in one batch to "
                "adapt it")
    out = features.reset_index(drop=True).copy()
    out[model.features] = model.transform(out[model.features], centre, cov).to_numpy()
    return out.set_axis(features.index)
