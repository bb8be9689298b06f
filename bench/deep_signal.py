"""Benchmark: how much of the planted image signal each deep path finds, against the
handcrafted radiomics reference, the true image score and the oracle.

For each synthetic cohort (generated once and cached under ``bench/out/signal``), the recipe of
``--kind`` is run with each profile named, and the signatures are scored on the pooled held-out
patients (every cohort but training). S3 scores LDLM and TDLM with 0, 1 and 2 follow-ups against
its RECIST 1.1 and TB-delta baselines (its box ROIs have no mask, so no handcrafted reference).
S1's profiles cover every deep path:

- ``fast``  eight frozen random-init tiny CNNs, ROI-pooled features, one LASSO per network, bagged
  (``fast_single``: one network; ``fast_ct``, ``fast_slices``: variants);
- ``scratch``  a tiny CNN trained from scratch on the 2.5D stack;
- ``imagenet`` / ``imagenet_random``  frozen EfficientNet-Lite0 features, ImageNet weights or random init;
- ``imagenet_finetuned``  the ImageNet EfficientNet-Lite0 with its last stage fine-tuned on the labels;
- ``astra`` / ``astra_random``  frozen 3D I3ResNet-152 features, Astra CT weights or random init;
- ``handcrafted``  the IBSI radiomics LASSO signature every run fits, with that profile's
  preprocessing (printed for the first profile named);
- ``image truth``  the truth table's image score (the planted phenotype, no noise of reading it);
- ``oracle``   the truth table's true risk (image + clinical);
- ``latents fit on training``  a logistic (S1) or Cox (S5) model of the three planted image latents
  (heterogeneity, necrosis, wall thickness), read without error and fitted on the training
  patients' outcomes: the most an image-only signature learnt from this training cohort can reach;
- ``latents read with r=R``  the same, each latent read with correlation R to its truth (Gaussian
  reading noise, mean of 100 draws; ``--reader-r``): how well a reader must measure the
  phenotype for its signature to reach a given ratio to the oracle.
- ``latents read by a ridge on ... features`` (``--supervised-reads``)  the same model of the
  latents as a ridge regression on a feature table (handcrafted, or the first profile's deep
  features) reads them, fitted to the true latents and cross-fitted over the cohort's patients:
  what a linear reading of those features gives when the phenotype itself is the target (no study
  has it), with the correlation of each reading (heterogeneity / necrosis / thickness).

AUC (binary) or Harrell's C (survival), each printed with its ratio to the oracle.

    python bench/deep_signal.py [--kind s1] [--patients 400] [--seeds 0 1] [--profiles fast scratch] [--net-seeds 1 2 3]
                           [--reader-r 0.9 0.85] [--supervised-reads] [--roi volume]

A profile may carry overrides, ``PROFILE@key.path=value@...`` (values are YAML), to measure a
variant without adding it to the recipe: ``--profiles fast fast@features.tta=dihedral``.
"""

from __future__ import annotations

from pathlib import Path

import argparse  # noqa: E402
import functools  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
RECIPE = {"s1": "s1_nact_resistance", "s2": "s2_recurrence", "s3": "s3_her2_longitudinal",
          "s4": "s4_progressive_distill", "s5": "s5_gnen_survival"}
TRAINED = {"s1": ["scratch"], "s2": ["scratch"], "s3": ["trained"], "s4": ["distill"]}  # the papers' trained paths
BINARY = {"s1", "s2", "s4"}  # AUC of `label`; the others: Harrell's C of `time`, `event`


def cohort(kind: str, n: int, seed: int, root: Path, roi: str = "paper") -> Path:
    from gastrorad.synth import synthesize
    folder = root / (f"{kind}_n{n}_seed{seed}" + ("" if roi == "paper" else f"_roi{roi}"))
    if not (folder / "truth.csv").exists():
        t0 = time.perf_counter()
        synthesize(kind, folder, n=n, seed=seed, workers=2, roi=None if roi == "paper" else roi)
        print(f"  synthesised {folder.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def variant(spec: str) -> tuple[str, dict]:
    """``profile@key.path=value@...`` -> (profile, nested overrides): a variant of a recipe's profile
    measured without adding a profile to the recipe (values are YAML: ``features.tta=dihedral``,
    ``preprocess.window={low: -125, high: 225}``)."""
    import yaml
    profile, *sets = spec.split("@")
    overrides: dict = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--profiles {spec!r}: '{item}' is not key.path=value")
        node = overrides
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    return profile, overrides


def run_slug(spec: str) -> str:
    """A profile spec as a folder name: its characters made safe, and a long one (many overrides)
    cut to 80 characters plus a hash of the whole spec (names are limited to 255 bytes)."""
    import hashlib
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec)
    if len(slug) > 100:
        slug = slug[:80] + "_" + hashlib.sha256(spec.encode()).hexdigest()[:12]
    return slug


def run_profile(kind: str, data: Path, spec: str, out: Path,
                net_seed: int | None = None) -> tuple[pd.DataFrame, float]:
    from gastrorad.config import load_study
    from gastrorad.config.study import deep_merge
    from gastrorad.recipes import find_study_file
    from gastrorad.runner import run_study
    study = find_study_file(RECIPE[kind])
    profile, extra = variant(spec)
    cfg = load_study(study, profile=profile, overrides=deep_merge({
        "data": {"manifest": str(data / "manifest.csv"), "clinical": str(data / "clinical.csv"),
                 "truth": str(data / "truth.csv")}, "output": str(out), "report": {"gradcam": 0},
        **({"features": {"seed": net_seed}} if net_seed is not None else {})}, extra))
    t0 = time.perf_counter()
    run_study(cfg, only=["validate", "preprocess", "train", "score", "extract-features", "radiomics", "signature"],
              log=lambda s: None)
    return pd.read_csv(out / "signatures.csv", dtype={"patient_id": str}), time.perf_counter() - t0


def metric(kind: str, clinical: pd.DataFrame, ids, score) -> float:
    from gastrorad.stats import auc
    from gastrorad.stats.survival import harrell_c
    c = clinical.loc[ids]
    if kind in BINARY:
        return float(auc(c.label.to_numpy(int), np.asarray(score, float)))
    return float(harrell_c(c.time.to_numpy(float), c.event.to_numpy(int), np.asarray(score, float)).c)


LATENTS = ["heterogeneity", "necrosis", "thickness_mm"]


def latent_signature(kind: str, clinical: pd.DataFrame, truth: pd.DataFrame, train_ids, held_ids,
                     reader_r: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Held-out linear predictor of a model of the planted image latents fitted on training outcomes.

    With ``reader_r`` < 1 each standardised latent gets Gaussian noise so that its correlation
    with the truth is ``reader_r``: a reader that measures the phenotype imperfectly.
    """
    z = truth[LATENTS].astype(float)
    z = (z - z.mean()) / z.std()
    if reader_r < 1:
        z = z + rng.normal(0.0, np.sqrt(1 / reader_r ** 2 - 1), z.shape)
    if kind in BINARY:
        from sklearn.linear_model import LogisticRegression
        y = clinical.loc[train_ids, "label"].to_numpy(int)
        model = LogisticRegression(C=1e6, max_iter=1000).fit(z.loc[train_ids].to_numpy(), y)
        return model.decision_function(z.loc[held_ids].to_numpy())
    from lifelines import CoxPHFitter
    frame = z.loc[train_ids].assign(time=clinical.loc[train_ids, "time"].to_numpy(float),
                                    event=clinical.loc[train_ids, "event"].to_numpy(int))
    cox = CoxPHFitter().fit(frame, duration_col="time", event_col="event")
    return z.loc[held_ids].to_numpy() @ cox.params_.loc[LATENTS].to_numpy()


def read_latents(table: Path, truth: pd.DataFrame, folds: int = 10) -> pd.DataFrame:
    """The planted latents as a ridge regression on a run's feature table reads them
    (``signal_diagnose.ridge_reads``): each patient's reading comes from a model fitted on the
    other folds' patients *and their true latents*. No study has those latents: this is what a
    linear reading of the features gives when the phenotype itself is the target."""
    diagnose = _signal_diagnose()
    return diagnose.ridge_reads(diagnose._table(table), truth, LATENTS, folds=folds)


@functools.cache
def _signal_diagnose():
    """``bench/signal_diagnose.py``, loaded from its path (this folder is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("signal_diagnose", HERE / "signal_diagnose.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", default="s1", choices=sorted(RECIPE))
    ap.add_argument("--patients", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--profiles", nargs="+", default=None,
                    help="profiles of the recipe to run (default: fast and the paper's trained path: S1, S2 scratch; "
                         "S3 trained; S4 distill; S5 fast only)")
    ap.add_argument("--root", type=Path, default=HERE / "out" / "signal")
    ap.add_argument("--net-seeds", type=int, nargs="*", default=None,
                    help="also rerun each profile's feature network with these seeds (features.seed): how much a "
                         "frozen random-feature signature depends on its initialisation (the split, folds and "
                         "cohort stay the same)")
    ap.add_argument("--reader-r", type=float, nargs="*", default=[0.9, 0.85],
                    help="also score the planted latents read with these correlations to the truth")
    ap.add_argument("--roi", choices=["paper", "volume"], default="paper",
                    help="the cohorts' ROI masks: the paper's (S1, S5: the largest slice only) or the whole tumour "
                         "(volume: the same patients and images, cached apart; handcrafted features in 3D): what a "
                         "3D ROI would give, which the papers do not draw")
    ap.add_argument("--supervised-reads", action="store_true",
                    help="also score each phase's handcrafted and deep feature tables (the first profile's run) read "
                         "into the planted latents by a ridge fitted to the true latents (cross-fitted): what a "
                         "linear reading of those features gives when the phenotype itself is the target")
    ap.add_argument("--truth-only", action="store_true",
                    help="print only the ceilings, the image truth and the oracle, from the synthetic tables "
                         "(no image rendered, no run; seconds): S1, S2, S4, S5")
    a = ap.parse_args()
    if a.profiles is None:
        a.profiles = ["fast", *TRAINED.get(a.kind, [])]
    if a.truth_only:
        return truth_only(a)
    rows = []
    for seed in a.seeds:
        data = cohort(a.kind, a.patients, seed, a.root, a.roi)
        tag = f"{a.kind}_n{a.patients}_{seed}" + ("" if a.roi == "paper" else f"_roi{a.roi}")
        clinical = pd.read_csv(data / "clinical.csv", dtype={"patient_id": str}).set_index("patient_id")
        truth = pd.read_csv(data / "truth.csv", dtype={"patient_id": str}).set_index("patient_id")
        for profile in a.profiles:
            for net_seed in [None, *(a.net_seeds or [])]:
                slug = run_slug(profile)
                sig, secs = run_profile(a.kind, data, profile, a.root / f"run_{tag}_{slug}", net_seed)
                held = sig[sig.cohort != "training"].dropna()
                ids = held.patient_id.to_numpy()
                for col in [c for c in sig.columns if c not in ("patient_id", "cohort")]:
                    # the handcrafted reference follows the profile's preprocessing (spacing, window, 2D/3D)
                    name = (f"handcrafted ({profile}'s preprocessing)" if col.startswith("hcr_") else profile) + f" [{col}]"
                    if col.startswith("hcr_") and (profile != a.profiles[0] or net_seed is not None):
                        continue  # the same handcrafted signature in every profile's run
                    if net_seed is not None:
                        name = f"{profile} [{col}] net seed {net_seed}"
                    rows.append({"seed": seed, "path": name, "value": metric(a.kind, clinical, ids, held[col]),
                                 "n": len(ids), "seconds": round(secs, 1)})
        train_ids = sig.loc[sig.cohort == "training", "patient_id"].to_numpy()
        rows += truth_rows(a.kind, seed, clinical, truth, train_ids, ids, a.reader_r, image_and_oracle=False)
        if a.supervised_reads:
            slug = run_slug(a.profiles[0])
            run = a.root / f"run_{tag}_{slug}"
            for table in sorted(run.glob("radiomics_*.csv")) + sorted(run.glob("features_*.csv")):
                if table.stem.endswith("_readers"):
                    continue  # re-segmentations, for the ICC filter
                reads = read_latents(table, truth)
                r = [float(np.corrcoef(reads[lat], truth.loc[reads.index, lat])[0, 1]) for lat in LATENTS]
                who = "handcrafted" if table.stem.startswith("radiomics") else f"{a.profiles[0]} deep"
                rows.append({"seed": seed, "n": len(ids), "value": metric(
                    a.kind, clinical, ids, latent_signature(a.kind, clinical, reads, train_ids, ids)),
                    "path": f"latents read by a ridge on {who} features [{table.stem.split('_', 1)[1]}]",
                    "reading r": " / ".join(f"{v:.2f}" for v in r)})
        rows += truth_rows(a.kind, seed, clinical, truth, train_ids, ids, [], latents=False)
    report(a, pd.DataFrame(rows))


def truth_rows(kind: str, seed: int, clinical: pd.DataFrame, truth: pd.DataFrame, train_ids, ids,
               reader_r, latents: bool = True, image_and_oracle: bool = True) -> list[dict]:
    """The rows that need only the tables: the latent ceilings (fit on training; read with
    correlation r, mean of 100 draws), the image truth and the oracle, on the held-out ``ids``."""
    rows = []
    if latents:
        rows.append({"seed": seed, "path": "latents fit on training", "n": len(ids),
                     "value": metric(kind, clinical, ids, latent_signature(kind, clinical, truth, train_ids, ids))})
        for r in reader_r:
            rng = np.random.default_rng(seed)
            draws = [metric(kind, clinical, ids, latent_signature(kind, clinical, truth, train_ids, ids, r, rng))
                     for _ in range(100)]
            rows.append({"seed": seed, "path": f"latents read with r={r:.2f}", "n": len(ids),
                         "value": float(np.mean(draws))})
    if image_and_oracle:
        rows.append({"seed": seed, "path": "image truth", "n": len(ids),
                     "value": metric(kind, clinical, ids, truth.loc[ids, "score_image"])})
        rows.append({"seed": seed, "path": "oracle", "n": len(ids),
                     "value": metric(kind, clinical, ids, truth.loc[ids, "true_risk"])})
    return rows


def truth_only(a) -> None:
    """``--truth-only``: the ceilings and the oracle of each seed's cohort from its tables alone
    (``synthesize_tables``, no image rendered), the held-out patients those of the recipe's own
    cohort rules. Seconds per seed; the same figures as a full run's when every held-out patient
    gets a signature."""
    from gastrorad.config import load_study
    from gastrorad.data.cohorts import assign_cohorts
    from gastrorad.recipes import find_study_file
    from gastrorad.synth.cohort import synthesize_tables
    rows = []
    for seed in a.seeds:
        clinical, truth = synthesize_tables(a.kind, n=a.patients, seed=seed)
        cfg = load_study(find_study_file(RECIPE[a.kind]), profile=a.profiles[0])
        cohort, problems = assign_cohorts(clinical, cfg)
        if problems:
            raise SystemExit("; ".join(str(p) for p in problems))
        clinical, truth = clinical.set_index("patient_id"), truth.set_index("patient_id")
        train_ids = cohort.index[cohort == "training"].to_numpy()
        ids = cohort.index[cohort != "training"].to_numpy()
        rows += truth_rows(a.kind, seed, clinical, truth, train_ids, ids, a.reader_r)
    report(a, pd.DataFrame(rows))


def report(a, t: pd.DataFrame) -> None:
    if "reading r" in t:
        t["reading r"] = t["reading r"].fillna("")
    oracle = t[t.path == "oracle"].set_index("seed").value
    t["ratio_to_oracle"] = t.value / t.seed.map(oracle)
    stat = "AUC" if a.kind in BINARY else "C-index"
    roi = "" if a.roi == "paper" else f", {a.roi} ROI"
    print(f"\n{a.kind.upper()}, {a.patients} patients per seed{roi}, pooled held-out cohorts: {stat} and ratio to the oracle")
    print(t.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    mean = t.groupby("path")[["value", "ratio_to_oracle"]].mean().sort_values("value", ascending=False)
    print(f"\nmean over seeds {a.seeds}:")
    print(mean.to_string(float_format=lambda v: f"{v:.3f}"))
    if a.net_seeds:
        nets = t[t.path.str.contains(" net seed ")].assign(path=lambda f: f.path.str.replace(r" net seed \d+$", "",
                                                                                             regex=True))
        spread = nets.groupby(["path", "seed"]).value.agg(["mean", "std", "min", "max", "count"])
        print(f"\nover feature-network seeds {a.net_seeds} (the recipe's own seed not included):")
        print(spread.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
