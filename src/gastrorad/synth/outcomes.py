"""Clinical variables, the latent imaging phenotype and outcomes from a known model.

Every synthetic patient gets (i) clinical variables with realistic distributions, (ii) a
latent imaging phenotype that drives how the tumour looks (see :mod:`.lesions`) and (iii)
outcomes drawn from a stated model of both. The model's own risk is written to the truth
table, so the best achievable AUC or C-index of every cohort (the oracle) is known. As in
the papers, clinical variables alone carry less signal than image plus clinical.

Model (standardised scores, ``z(.)`` = (x - mean) / SD over the generated population):

- image score ``img = 1.0 z(heterogeneity) + 0.7 z(necrosis) + 0.45 z(thickness)``
- clinical score ``clin = 0.5 [cN >= N2] + 0.35 z(log CEA) + 0.4 [poorly differentiated] + 0.3 [T4]``
- binary (S1, S4): ``P(y=1) = logistic(b0 + 1.2 img + 1.1 clin)``
- recurrence + OS (S2): recurrence as binary with b0 giving ~14 %; OS Weibull (shape 1.3) with
  log-hazard ``0.8 img + 0.5 clin + 1.0 recurrence``
- survival (S5): Weibull (shape 1.2), log-hazard ``0.9 img_A/V + 0.45 z(Ki-67) + 0.7 M1 + 0.3 z(diameter)``
- longitudinal (S3): a response latent shrinks or grows lesions over follow-ups and lowers
  the hazard; OS Weibull with log-hazard ``-0.9 response + 0.5 img + 0.4 [HER2 2+]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("s1", "s2", "s3", "s4", "s5")
T_STAGES = ("T2", "T3", "T4a", "T4b")
N_STAGES = ("N0", "N1", "N2", "N3")
DIFFERENTIATION = ("well", "moderate", "poor")
LOCATIONS = ("cardia", "body", "antrum")


def _z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else x * 0.0


def _weibull_times(rng, lp, shape, median_months):
    """Event times with S(t) = exp(-(t/scale)^shape * exp(lp)); scale gives ``median_months`` at lp=0."""
    scale = median_months / np.log(2) ** (1 / shape)
    u = rng.uniform(size=len(lp))
    return scale * (-np.log(u) / np.exp(lp)) ** (1 / shape)


def _censor(rng, times, min_follow, max_follow, dropout_rate=0.01):
    admin = rng.uniform(min_follow, max_follow, size=len(times))
    drop = rng.exponential(1 / dropout_rate, size=len(times))
    cens = np.minimum(admin, drop)
    observed = np.minimum(times, cens)
    event = (times <= cens).astype(int)
    return np.round(observed, 2), event


def _calibrate_intercept(score: np.ndarray, prevalence: float) -> float:
    """Intercept b0 such that mean(logistic(b0 + score)) equals ``prevalence`` (bisection)."""
    lo, hi = -15.0, 15.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(mid + score)))) < prevalence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def draw_patients(kind: str, centres: list[str], rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clinical table and truth table (latent phenotype, scores, true risk) for one cohort.

    ``centres`` gives each patient's centre (its length is the number of patients).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind '{kind}'; choose one of {KINDS}")
    n = len(centres)
    pid = [f"P{i + 1:04d}" for i in range(n)]
    age = np.clip(np.round(rng.normal(60, 10, n)), 25, 88).astype(int)
    sex = np.where(rng.uniform(size=n) < 0.70, "male", "female")
    bmi = np.round(np.clip(rng.normal(22.5, 3.0, n), 15, 38), 1)
    t_idx = rng.choice(4, size=n, p=[0.10, 0.35, 0.40, 0.15])
    n_idx = rng.choice(4, size=n, p=[0.20, 0.30, 0.30, 0.20])
    diff = rng.choice(3, size=n, p=[0.15, 0.40, 0.45])
    loc = rng.choice(3, size=n, p=[0.30, 0.35, 0.35])
    cea = np.round(np.exp(rng.normal(np.log(3.0) + 0.15 * n_idx, 1.0)), 2)
    ca199 = np.round(np.exp(rng.normal(np.log(15.0) + 0.1 * n_idx, 1.2)), 1)

    het_latent = rng.standard_normal(n)
    nec_latent = rng.standard_normal(n)
    heterogeneity = np.clip(0.6 + 0.35 * het_latent, 0.05, 1.6)
    necrosis = np.clip(0.25 + 0.18 * nec_latent, 0.0, 0.7)
    necrosis[necrosis < 0.08] = 0.0
    thickness = np.clip(np.array([9.0, 13.0, 17.0, 21.0])[t_idx] + rng.normal(0, 2.0, n), 7.0, 28.0)
    length = np.clip(30 + 8 * t_idx + rng.normal(0, 8, n), 18, 80)
    enhancement = rng.normal(0, 10, n)

    img = 1.0 * _z(heterogeneity) + 0.7 * _z(necrosis) + 0.45 * _z(thickness)
    clin = 0.5 * (n_idx >= 2) + 0.35 * _z(np.log(cea)) + 0.4 * (diff == 2) + 0.3 * (t_idx >= 2)

    clinical = pd.DataFrame({
        "patient_id": pid, "center": centres, "age": age, "sex": sex, "bmi": bmi,
        "differentiation": np.array(DIFFERENTIATION)[diff], "cea": cea, "ca199": ca199,
        "location": np.array(LOCATIONS)[loc], "ct": np.array(T_STAGES)[t_idx], "cn": np.array(N_STAGES)[n_idx],
    })
    truth = pd.DataFrame({
        "patient_id": pid, "center": centres, "heterogeneity": np.round(heterogeneity, 4),
        "necrosis": np.round(necrosis, 4), "thickness_mm": np.round(thickness, 2), "length_mm": np.round(length, 2),
        "enhancement_hu": np.round(enhancement, 2), "site": np.array(LOCATIONS)[loc],
        "score_image": img, "score_clinical": clin,
    })

    if kind in ("s1", "s4"):
        prevalence = 0.40 if kind == "s1" else 0.45
        score = 1.2 * img + 1.1 * clin
        lp = _calibrate_intercept(score, prevalence) + score
        p = 1 / (1 + np.exp(-lp))
        clinical["label"] = (rng.uniform(size=n) < p).astype(int)
        truth["lp"] = lp
        truth["true_risk"] = p
        truth["lp_clinical_only"] = 1.1 * clin
    elif kind == "s2":
        score = 1.2 * img + 1.1 * clin
        lp = _calibrate_intercept(score, 0.14) + score
        p = 1 / (1 + np.exp(-lp))
        rec = (rng.uniform(size=n) < p).astype(int)
        hz = 0.8 * img + 0.5 * clin + 1.0 * rec
        os_t = _weibull_times(rng, hz, 1.3, 70.0)
        os_time, os_event = _censor(rng, os_t, 24, 96)
        clinical["label"] = rec
        clinical["os_time"] = os_time
        clinical["os_event"] = os_event
        clinical["chemotherapy"] = (rng.uniform(size=n) < 0.6).astype(int)
        truth["lp"] = lp
        truth["true_risk"] = p
        truth["lp_os"] = hz
    elif kind == "s5":
        ki67 = np.round(np.clip(np.exp(rng.normal(np.log(12), 0.9, n)), 1, 95), 1)
        m1 = (rng.uniform(size=n) < 0.18).astype(int)
        diameter = np.round(length * rng.uniform(0.8, 1.1, n), 1)
        grade = np.where(ki67 < 3, "G1", np.where(ki67 < 20, "G2", "G3"))
        hz = 0.9 * img + 0.45 * _z(np.log(ki67)) + 0.7 * m1 + 0.3 * _z(diameter)
        t = _weibull_times(rng, hz - 0.3, 1.2, 60.0)
        time, event = _censor(rng, t, 18, 110)
        clinical["ki67"] = ki67
        clinical["m_stage"] = np.where(m1 == 1, "M1", "M0")
        clinical["diameter_mm"] = diameter
        clinical["grade"] = grade
        clinical["time"] = time
        clinical["event"] = event
        truth["lp"] = hz
        truth["true_risk"] = hz
    elif kind == "s3":
        her2 = np.where(rng.uniform(size=n) < 0.25, "2+/FISH+", "3+")
        response = rng.standard_normal(n)
        hz = -0.9 * response + 0.5 * img + 0.4 * (her2 == "2+/FISH+")
        t = _weibull_times(rng, hz, 1.4, 15.0)
        time, event = _censor(rng, t, 10, 40, dropout_rate=0.005)
        clinical["her2"] = her2
        clinical["line_of_therapy"] = rng.choice([1, 2, 3], size=n, p=[0.8, 0.15, 0.05])
        clinical["time"] = time
        clinical["event"] = event
        truth["response"] = response
        truth["lp"] = hz
        truth["true_risk"] = hz
    return clinical, truth
