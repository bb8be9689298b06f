"""Benchmark: gastrorad's training stage against a plain PyTorch/MONAI loop, in one run.

Both train the same network (``gastrorad.dl.backbones.create_model``) on the same patch
files (random 3D volumes written to a patch cache, plus optionally a small synthetic CT
cohort), with the same fit/validation split, batch size, AdamW, random flips along each
spatial axis, and one validation pass with AUC per epoch. Printed for each: training
samples per second (wall clock), CPU seconds per epoch (``time.process_time``: every thread
of this process) and the ratio gastrorad / plain (goal: >= 1 for samples/s).

    python bench/train.py                                   # ResNet-18 3D, 32^3, 100 volumes, 2 epochs
    python bench/train.py --volumes 400 --size 64 --epochs 5 --batch 8
    python bench/train.py --s1 40                           # also S1's 2.5D stage on a synthetic CT cohort
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


def random_volume_study(root: Path, n: int, size: int, backbone: str, epochs: int, batch: int, seed: int):
    """n random volumes (1, size, size, size) as patch files, labels 0/1, all in training."""
    from gastrorad.config import load_study
    from gastrorad.preprocess.cache import save_patches
    rng = np.random.default_rng(seed)
    ids = [f"R{i:04d}" for i in range(n)]
    y = (np.arange(n) % 2).astype(int)
    rng.shuffle(y)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": ids, "cohort": "training", "label": y}).to_csv(root / "clinical.csv", index=False)
    pd.DataFrame({"patient_id": ids, "image": "x.nii.gz", "mask": "m.nii.gz"}).to_csv(root / "manifest.csv", index=False)
    rows = []
    for pid in ids:
        path = root / "run" / "cache" / f"{pid}.npz"
        save_patches(path, rng.normal(size=(1, size, size, size)).astype(np.float32), ["image"], {})
        rows.append({"patient_id": pid, "phase": "venous", "timepoint": 0, "lesion_id": "primary", "lesion_site": "",
                     "reader": "", "path": str(path), "key": pid})
    pd.DataFrame(rows).to_csv(root / "run" / "patches.csv", index=False)
    study = {"name": "bench", "data": {"manifest": "manifest.csv", "clinical": "clinical.csv"},
             "outcome": {"kind": "binary"}, "cohorts": {"column": "cohort"}, "seed": seed, "output": "run",
             "preprocess": {"patch": {"mode": "volume3d", "size": [size] * 3}},
             "model": {"backbone": backbone, "spatial_dims": 3}, "augment": {"flip": True, "prob": 0.5},
             "training": {"epochs": epochs, "batch_size": batch, "lr": 3e-4, "val_fraction": 0.2,
                          "early_stopping": {"monitor": "val_auc", "patience": epochs}}}
    (root / "study.yaml").write_text(yaml.safe_dump(study))
    return load_study(root / "study.yaml")


def _split(cfg, samples):
    try:
        from gastrorad.dl.fit import split_patients
        return split_patients(cfg, samples)[0]
    except ImportError:  # before the split moved out of train.py
        from gastrorad.dl.train import _split_patients
        train = samples.frame[samples.frame.cohort == "training"]
        return _split_patients(train, samples.kind, cfg.training.val_fraction, cfg.training.folds, cfg.seed)[0]


def plain_loop(cfg, seed: int) -> dict:
    """The same training written by hand: DataLoader over the patch files, flips, AdamW, BCE,
    a validation pass with AUC each epoch."""
    from torch.utils.data import DataLoader, Dataset

    from gastrorad.dl.backbones import create_model
    from gastrorad.dl.data import load_sample_table
    from gastrorad.preprocess.cache import load_patches
    from gastrorad.stats import auc

    t0, c0 = time.perf_counter(), time.process_time()
    samples = load_sample_table(cfg)
    fit_ids, val_ids = _split(cfg, samples)
    frame = samples.frame
    t = cfg.training
    p = cfg.augment.prob

    class Files(Dataset):
        def __init__(self, part, augment):
            self.paths = part.path.tolist()
            self.index = part["index"].to_numpy()
            self.y = part.label.to_numpy(np.float32)
            self.augment = augment
            self.g = torch.Generator().manual_seed(seed)

        def __len__(self):
            return len(self.paths)

        def __getitem__(self, i):
            arr = load_patches(self.paths[i])[0]
            x = torch.from_numpy(arr[self.index[i]] if self.index[i] >= 0 else arr)
            if self.augment:
                for axis in (1, 2):  # spatial axes 0 and 1, as gastrorad's RandFlip
                    if torch.rand(1, generator=self.g).item() < p:
                        x = x.flip(axis)
            return x.contiguous(), self.y[i]

    torch.manual_seed(seed)
    net = create_model(cfg.model.backbone, in_channels=samples.channels, spatial_dims=samples.spatial_dims)
    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    fit = DataLoader(Files(frame[frame.patient_id.isin(fit_ids)], True), batch_size=t.batch_size, shuffle=True,
                     generator=torch.Generator().manual_seed(seed))
    val = DataLoader(Files(frame[frame.patient_id.isin(val_ids)], False), batch_size=t.batch_size)
    epochs = []
    for _ in range(t.epochs):
        e0, ec0 = time.perf_counter(), time.process_time()
        net.train()
        for x, y in fit:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x).reshape(-1), y)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            out = np.concatenate([net(x).reshape(-1).numpy() for x, _ in val])
        yv = val.dataset.y
        auc(yv, out) if 0 < yv.sum() < len(yv) else 0.5
        epochs.append((time.perf_counter() - e0, time.process_time() - ec0))
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "n_fit": len(fit.dataset),
            "epochs": epochs}


def gastrorad_stage(cfg) -> dict:
    from gastrorad.dl.train import train_model
    t0, c0 = time.perf_counter(), time.process_time()
    res = train_model(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per_epoch = [(h["seconds"], h["cpu_seconds"]) for h in res.history if "cpu_seconds" in h]
    return {"wall": wall, "cpu": cpu, "epochs": per_epoch}


def _row(name: str, r: dict, n_fit: int, epochs: int) -> dict:
    ep = r["epochs"]
    ep_wall = float(np.mean([w for w, _ in ep])) if ep else r["wall"] / epochs
    ep_cpu = float(np.mean([c for _, c in ep])) if ep else r["cpu"] / epochs
    row = {"loop": name, "total_s": r["wall"], "total_cpu_s": r["cpu"], "epoch_s": ep_wall, "epoch_cpu_s": ep_cpu,
           "samples_per_s": n_fit * epochs / r["wall"], "epoch_samples_per_s": n_fit / ep_wall}
    return row


def compare(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = random_volume_study(Path(tmp) / "vol", args.volumes, args.size, args.backbone, args.epochs, args.batch,
                                  args.seed)
        runs = {}
        order = ["plain", "gastrorad"] if not args.gastrorad_first else ["gastrorad", "plain"]
        for name in order:
            runs[name] = plain_loop(cfg, args.seed) if name == "plain" else gastrorad_stage(cfg)
        n_fit = runs["plain"]["n_fit"]
    rows = [_row(k, runs[k], n_fit, args.epochs) for k in ("plain", "gastrorad")]
    print(f"{args.backbone} 3D, {args.size}^3, {args.volumes} random volumes ({n_fit} fit), batch {args.batch}, "
          f"{args.epochs} epochs, flips, validation + AUC each epoch")
    print(f"  {'loop':<10} {'total s':>8} {'total CPU s':>11} {'epoch s':>8} {'epoch CPU s':>11} "
          f"{'samples/s':>10} {'epoch samples/s':>16}")
    for r in rows:
        print(f"  {r['loop']:<10} {r['total_s']:8.1f} {r['total_cpu_s']:11.1f} {r['epoch_s']:8.2f} {r['epoch_cpu_s']:11.2f} "
              f"{r['samples_per_s']:10.2f} {r['epoch_samples_per_s']:16.2f}")
    p, g = rows
    print(f"  ratio gastrorad/plain: samples/s {g['samples_per_s'] / p['samples_per_s']:.2f} (whole stage), "
          f"{g['epoch_samples_per_s'] / p['epoch_samples_per_s']:.2f} (per epoch); CPU s per epoch "
          f"{g['epoch_cpu_s'] / p['epoch_cpu_s']:.2f}")


def s1_stage(patients: int, epochs: int, seed: int, backbone: str = "resnet18", lr: float = 3e-4) -> dict:
    """S1's training stage on a synthetic CT cohort (112 px 2.5D patches) and the AUC it reaches."""
    from gastrorad.config import load_study
    from gastrorad.dl.train import score_study, train_model
    from gastrorad.preprocess import preprocess_study
    from gastrorad.stats import auc
    from gastrorad.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        res = synthesize("s1", Path(tmp) / "s1", n=patients, seed=seed, workers=2)
        cfg = yaml.safe_load(res.study_file.read_text())
        cfg["preprocess"]["patch"]["size"] = [112, 112]
        cfg["model"] = {"backbone": backbone}
        cfg["augment"] = {"flip": True, "rot90": True, "prob": 0.5}
        cfg["training"] = {"epochs": epochs, "batch_size": 16, "lr": lr, "val_fraction": 0.2,
                           "early_stopping": {"monitor": "val_auc", "patience": epochs}}
        res.study_file.write_text(yaml.safe_dump(cfg))
        study = load_study(res.study_file)
        preprocess_study(study, workers=2)
        t0, c0 = time.perf_counter(), time.process_time()
        train_model(study)
        out = {"train_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0}
        scores = score_study(study)
        clinical = pd.read_csv(study.clinical_path).set_index("patient_id")
        truth = pd.read_csv(res.folder / "truth.csv").set_index("patient_id")
        for cohort in ("internal", "external1", "external2"):
            s = scores[scores.cohort == cohort]
            y = clinical.loc[s.patient_id, "label"].to_numpy()
            if 0 < y.sum() < len(y):
                out[cohort] = (len(y), auc(y, s.score.to_numpy()), auc(y, truth.loc[s.patient_id, "true_risk"].to_numpy()))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=100, help="random volumes (patients)")
    ap.add_argument("--size", type=int, default=32, help="volume side in voxels")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--gastrorad-first", action="store_true", help="run gastrorad before the plain loop")
    ap.add_argument("--s1", type=int, default=0, metavar="N", help="also S1's stage on N synthetic CT patients")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA {torch.cuda.is_available()}")
    compare(args)
    if args.s1:
        r = s1_stage(args.s1, args.epochs, args.seed, args.backbone)
        print(f"S1 2.5D stage, {args.s1} synthetic CT patients, 112 px, {args.epochs} epochs: "
              f"{r['train_s']:.1f} s ({r['train_cpu_s']:.1f} CPU s)")
        for cohort in ("internal", "external1", "external2"):
            if cohort in r:
                n, a, o = r[cohort]
                print(f"  {cohort:9s} (n={n}): AUC {a:.3f}   oracle AUC {o:.3f}")


if __name__ == "__main__":
    main()
