"""Benchmark: training throughput and S1's training stage on CPU.

1. Training samples per second (forward + backward + AdamW step, batch 16) for ResNet-18 and
   ResNet-50 on S1's 2.5D input (11 CT slices + mask = 12 channels) at 112 and 224 px.
2. The wall time of S1's training stage (``gastrorad.dl.train.train_model``) on a synthetic
   S1 cohort with a fast profile (ResNet-18, 112 px, few epochs), and the internal-cohort
   AUC it reaches next to the oracle AUC of the same patients (the truth table's risk).

    python bench/train.py [--patients 200] [--epochs 8] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml


def throughput(backbone: str, size: int, batch: int = 16, steps: int = 6) -> float:
    from gastrorad.dl.backbones import create_model
    torch.manual_seed(0)
    net = create_model(backbone, in_channels=12, spatial_dims=2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 12, size, size)
    y = (torch.rand(batch) < 0.5).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()  # first step is warm-up
        opt.zero_grad()
        loss_fn(net(x).reshape(-1), y).backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def s1_stage(patients: int, epochs: int, seed: int, args_backbone: str = "resnet18", lr: float = 3e-4) -> dict:
    from gastrorad.config import load_study
    from gastrorad.dl.train import score_study, train_model
    from gastrorad.preprocess import preprocess_study
    from gastrorad.stats import auc
    from gastrorad.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = synthesize("s1", Path(tmp) / "s1", n=patients, seed=seed, workers=2)
        t_synth = time.perf_counter() - t0
        cfg = yaml.safe_load(res.study_file.read_text())
        cfg["preprocess"]["patch"]["size"] = [112, 112]
        cfg["model"] = {"backbone": args_backbone}
        cfg["augment"] = {"flip": True, "rot90": True, "prob": 0.5}
        cfg["training"] = {"epochs": epochs, "batch_size": 16, "lr": lr, "val_fraction": 0.2,
                           "early_stopping": {"monitor": "val_auc", "patience": epochs}}
        res.study_file.write_text(yaml.safe_dump(cfg))
        study = load_study(res.study_file)
        t0 = time.perf_counter()
        preprocess_study(study, workers=2)
        t_pre = time.perf_counter() - t0
        t0 = time.perf_counter()
        train_model(study)
        t_train = time.perf_counter() - t0
        scores = score_study(study)
        clinical = pd.read_csv(study.clinical_path).set_index("patient_id")
        truth = pd.read_csv(res.folder / "truth.csv").set_index("patient_id")
        out = {"synth_s": t_synth, "preprocess_s": t_pre, "train_s": t_train}
        for cohort in ("internal", "external1", "external2"):
            s = scores[scores.cohort == cohort]
            y = clinical.loc[s.patient_id, "label"].to_numpy()
            if 0 < y.sum() < len(y):
                out[f"{cohort}_auc"] = auc(y, s.score.to_numpy())
                out[f"{cohort}_oracle_auc"] = auc(y, truth.loc[s.patient_id, "true_risk"].to_numpy())
                out[f"{cohort}_n"] = len(y)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--lr", type=float, default=3e-4)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA {torch.cuda.is_available()}")
    if not args.skip_throughput:
        for backbone in ("resnet18", "resnet50"):
            for size in (112, 224):
                print(f"  {backbone:9s} 12 x {size} px: {throughput(backbone, size):7.1f} training samples/s")
    r = s1_stage(args.patients, args.epochs, args.seed, args.backbone, args.lr)
    print(f"S1 fast profile, {args.patients} patients: synth {r['synth_s']:.0f} s, preprocess {r['preprocess_s']:.0f} s, "
          f"training stage {r['train_s']:.0f} s ({args.epochs} epochs, {args.backbone}, 112 px)")
    for cohort in ("internal", "external1", "external2"):
        if f"{cohort}_auc" in r:
            print(f"  {cohort:9s} (n={r[f'{cohort}_n']}): AUC {r[f'{cohort}_auc']:.3f}   oracle AUC "
                  f"{r[f'{cohort}_oracle_auc']:.3f}")


if __name__ == "__main__":
    main()
