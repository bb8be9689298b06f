"""Diagnosis of a deep signature that falls short (issue 11): which planted phenotype the
deep features carry, against the handcrafted radiomics of the same run, and (with
re-segmentations) which features the ICC filter removes and what they carried.

Reads a finished run folder of a synthetic cohort (e.g. one of ``bench/deep_signal.py``'s) and the
cohort's truth table; computes nothing new from images.

1. Phenotype recovery: for every planted variable of the truth table (heterogeneity,
   necrosis, thickness, ..., and the image score), the Pearson r between the variable and its
   5-fold cross-validated ridge prediction from (a) the deep features ``features_<phase>.csv``
   and (b) the handcrafted features ``radiomics_<phase>.csv``, over every patient. A
   deep path below the handcrafted one here cannot beat it downstream.
2. Reproducibility (when ``features_<phase>_readers.csv`` exists, S5): per feature group
   (stage x pooling) the number of features, how many pass ICC(A,1) > threshold, the median
   ICC, and the best univariable association on training (AUC or Harrell's C, direction
   taken on training) among the kept and among the removed features, with the same
   feature's held-out value. Removed groups that carried the signal show where the filter bites.

    python bench/signal_diagnose.py --run bench/out/signal/run_s5_n200_0_frozen_ct \
        --data bench/out/signal/s5_n200_seed0 [--phase venous] [--icc 0.8]
"""

from __future__ import annotations

from pathlib import Path

import argparse
import re
import warnings

import numpy as np
import pandas as pd

PHENOTYPE = ("heterogeneity", "necrosis", "thickness_mm", "length_mm", "enhancement_hu", "score_image")


def _table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False).set_index("patient_id")


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    x = frame.drop(columns=[c for c in ("cohort", "reader") if c in frame.columns]).apply(pd.to_numeric, errors="coerce")
    x = x.loc[:, x.notna().all() & (x.std() > 0)]
    return x


def ridge_reads(features: pd.DataFrame, truth: pd.DataFrame, columns, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Each truth ``column`` as a ridge regression on ``features`` reads it, cross-fitted: every
    patient's reading comes from a model fitted on the other folds (penalty chosen by generalised
    cross-validation inside the fold). The features are standardised over all patients (no
    target involved): a deep feature that is zero in all but a few patients would otherwise get
    a fold-wise SD near zero and throw the held-out fold's readings far off."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    x = _numeric(features)
    t = truth.loc[x.index]
    z = ((x - x.mean()) / x.std()).to_numpy()
    out = {}
    for col in columns:
        if col not in t.columns or t[col].std() == 0:
            continue
        out[col] = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 6, 33)), z, t[col].to_numpy(float),
                                     cv=KFold(folds, shuffle=True, random_state=seed))
    return pd.DataFrame(out, index=x.index)


def recovery(features: pd.DataFrame, truth: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Cross-validated ridge r of each planted variable from ``features``."""
    reads = ridge_reads(features, truth, PHENOTYPE, seed=seed)
    t = truth.loc[reads.index]
    return {col: float(np.corrcoef(reads[col], t[col].to_numpy(float))[0, 1]) for col in reads.columns}


def association(x: np.ndarray, outcome: pd.DataFrame) -> float:
    """AUC (binary ``label``) or Harrell's C (``time``, ``event``) of one feature, higher = riskier."""
    if "label" in outcome.columns:
        from gastrorad.stats import auc
        return float(auc(outcome["label"].to_numpy(), x))
    from gastrorad.stats.survival.concordance import harrell_c
    return float(harrell_c(outcome["time"].to_numpy(float), outcome["event"].to_numpy(int), x).c)


def reproducibility(run: Path, phase: str, clinical: pd.DataFrame, threshold: float) -> pd.DataFrame | None:
    from gastrorad.models.icc import icc_filter
    readers = run / f"features_{phase}_readers.csv"
    if not readers.exists():
        return None
    b = pd.read_csv(readers, dtype={"patient_id": str, "reader": str}, keep_default_na=False)
    icc = icc_filter(b.drop(columns=[c for c in ("cohort",) if c in b.columns]), threshold=threshold).set_index("feature")
    feats = _table(run / f"features_{phase}.csv")
    train = feats[feats.cohort == "training"]
    held = feats[feats.cohort != "training"]
    rows = []
    for col in _numeric(feats).columns:
        if col not in icc.index:
            continue
        a_tr = association(train[col].to_numpy(float), clinical.loc[train.index])
        a_te = association(held[col].to_numpy(float), clinical.loc[held.index])
        if a_tr < 0.5:  # the direction is chosen on training
            a_tr, a_te = 1 - a_tr, 1 - a_te
        rows.append({"group": re.sub(r"_\d+$", "", col), "feature": col, "icc": icc.loc[col, "icc"],
                     "kept": bool(icc.loc[col, "icc"] > threshold), "train": a_tr, "held_out": a_te})
    r = pd.DataFrame(rows)

    def best(s: pd.DataFrame) -> str:
        if s.empty:
            return "-"
        top = s.sort_values("train", ascending=False).iloc[0]
        return f"{top.train:.3f} ({top.held_out:.3f})"

    summary = [{"group": g, "features": len(s), "kept": int(s.kept.sum()), "median_icc": round(float(s.icc.median()), 3),
                "best kept: train (held-out)": best(s[s.kept]), "best removed: train (held-out)": best(s[~s.kept])}
               for g, s in r.groupby("group")]
    return pd.DataFrame(summary)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="finished run folder (features_*.csv, radiomics_*.csv)")
    ap.add_argument("--data", type=Path, required=True, help="the synthetic cohort folder (truth.csv, clinical.csv)")
    ap.add_argument("--phase", nargs="*", default=None, help="phases (default: every features_<phase>.csv)")
    ap.add_argument("--icc", type=float, default=0.8, help="ICC threshold of the reproducibility filter")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    truth = _table(args.data / "truth.csv")
    clinical = _table(args.data / "clinical.csv")
    phases = args.phase or sorted(p.stem[len("features_"):] for p in args.run.glob("features_*.csv")
                                  if not p.stem.endswith("_readers"))
    pd.set_option("display.width", 200)
    for phase in phases:
        rec = {"deep": recovery(_table(args.run / f"features_{phase}.csv"), truth)}
        hcr = args.run / f"radiomics_{phase}.csv"
        if hcr.exists():
            rec["handcrafted"] = recovery(_table(hcr), truth)
        print(f"\n{phase}: cross-validated ridge r of each planted variable (all patients)")
        print(pd.DataFrame(rec).round(3).to_string())
        rep = reproducibility(args.run, phase, clinical, args.icc)
        if rep is not None:
            print(f"\n{phase}: ICC(A,1) > {args.icc} by feature group; best univariable association "
                  "(AUC or Harrell's C) on training, held-out in brackets")
            print(rep.to_string(index=False))


if __name__ == "__main__":
    main()
