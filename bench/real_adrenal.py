"""Benchmark on real data: AdrenalMNIST3D (MedMNIST+ 64^3) through ``gastrorad init`` and
``gastrorad run``, against a plain MONAI ResNet-18 3D loop in this process.

Data: ``adrenalmnist3d_64.npz`` (CC BY 4.0), 1,584 binary adrenal shape masks (0/255, 1 mm
isotropic, 64 mm cubes centred on the gland) from segmentations of real abdominal CT of 792
patients (Zhongshan Hospital, Fudan University), labelled normal adrenal gland (0) or hyperplasia
(1), split 1,188 / 98 / 298 (train / val / test) on a patient level. The dataset is new in
MedMNIST v2 (medmnist.com lists its source as "New": no earlier study published the CTs), so its
source study is the MedMNIST v2 paper itself: Yang J, Shi R, Wei D, Liu Z, Zhao L, Ke B, Pfister
H, Ni B. "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image
classification". Scientific Data 10:41 (2023), doi:10.1038/s41597-022-01721-8. Not HU
intensities: the image *is* the shape.

What the command does (everything under ``--out``, default ``bench/out/adrenal``):

1. writes each volume as ``images/<id>.nii.gz`` (SimpleITK, 1 mm spacing), its ROI as
   ``masks/<id>_mask.nii.gz`` and ``labels.xlsx`` (patient_id, label, split = training / internal
   / test from train / val / test); files already written are kept. The ROI is the shape itself
   (voxels > 0): nothing breaks with it (patches are cut around its centroid, the handcrafted 3D
   shape features need exactly it), so no box is needed;
2. ``gastrorad init OUT/study --images ... --masks ... --clinical OUT/labels.xlsx`` (a subprocess,
   as a user runs it; its summary is kept in ``OUT/init.log``), then, per path, a copy of the
   produced ``study.yaml`` with the path's settings laid over it (``OUT/study/study_<path>.yaml``)
   and ``gastrorad run`` on it (a subprocess; CPU seconds = user + sys of the children). Both
   paths replace init's window (the recipe's -350..450 HU, which init keeps for images that are
   not HU, with a warning) by 0..255 scaled to 0..1, and cut a fixed 64 mm block around the shape
   (the whole volume; init's 85 mm side would reach past the 64 mm volume) resized to S^3:

   - ``trained``: a 3D ResNet (``--backbone``, default resnet18, MONAI's, as the plain loop)
     trained from scratch (``signature.method: dl_probability``), checkpoint of the best AUC on the
     ``internal`` cohort (``training.val_cohort``, early stopping with patience = epochs), AdamW
     without weight decay at a constant lr 1e-3 (= Adam), batch 32, no augmentation (init's
     recipe has flips and rot90; the plain loop has none), no Grad-CAM, no handcrafted reference;
   - ``frozen``: the recipes' ``fast`` profile made 3D: eight tiny 3D CNNs at random init, NOT
     trained, on the same block; the shape also as a mask channel used for pooling only
     (``features.mask_input: false``: the image already is the mask), no ROI erosion (the gland's
     limbs are a few mm thick, 1-3 voxels of the block); every stage pooled by avg / max over the
     block and mean / SD inside the shape; one LASSO per network, bagged. 3D rather than
     ``roi_slices``: the label is about the gland's 3D size and form, which per-slice 2D features
     averaged over the slices lose. The handcrafted reference of the same run is restricted to
     PyRadiomics' 3D shape class (every other class reads intensities, constant inside a binary
     mask) and reported as its own row (its cost is inside the frozen path's CPU seconds).

3. a plain loop: ``monai.networks.nets.resnet18(spatial_dims=3)`` from scratch on the same train
   split, volumes resized (trilinear) to S^3 and scaled to 0..1, Adam lr 1e-3, BCE, batch 32,
   ``--epochs`` epochs, the epoch of best val AUC kept; CPU seconds from ``RUSAGE_SELF``;
4. prints one table (test AUC with its DeLong 95 % CI, CPU s, ratio to the plain loop) and the
   published MedMNIST v2 baselines, and writes ``OUT/results.json`` and ``OUT/results.md``.

    python bench/real_adrenal.py [--out DIR] [--limit N] [--size 16] [--epochs 5] [--seed 0]
                                 [--backbone resnet18] [--paths frozen trained plain] [--merge]

``--limit N`` keeps at most N volumes of each split (stratified, seeded) for a quick check (default
out then ``bench/out/adrenal_limitN``). Every run folder is deleted first so the CPU time is a cold
run's; ``--keep-runs`` reuses them (cached stages cost ~0 s then, so the CPU column is meaningless).
``--merge`` adds the rows of paths left out of ``--paths`` from an earlier command on the same OUT
(``OUT/runs/<path>.result.json``, marked "[earlier command]"); ``--table-only`` reprints
``OUT/results.json``.

Cost on this shared 2-core machine: one training step of MONAI's 3D ResNet-18 on a batch of 32
takes ~6 CPU s at 16^3, ~13-20 at 28^3 and ~21-25 at 32^3 (forward + backward + Adam, 2 threads),
so one epoch over the 1,188 training volumes is ~220 CPU s at 16^3 and ~800-900 at 32^3: the 32^3 /
15-20 epoch setting does not fit in 40 minutes here.

Measured (2026-12-07, this machine shared with other jobs, load 4-9 on 2 cores; ``python
bench/real_adrenal.py --size 16 --epochs 5 --paths trained plain --merge``, the frozen row from
the first command ``--size 16 --epochs 10``, stopped during its trained path, whose frozen path does
not depend on the epochs), test cohort (298 glands, 69 hyperplasia):

    path                                               test AUC (95% CI)     CPU s  x plain
    gastrorad: 8 frozen tiny 3D CNNs + bagged LASSO    0.886 (0.845-0.926)     508     0.47
      same run: handcrafted 3D shape + LASSO           0.897 (0.859-0.935)   (in the row above)
    gastrorad: 3D resnet18 trained (dl_probability)    0.886 (0.842-0.931)    1159     1.07
    plain MONAI resnet18 3D loop                       0.864 (0.816-0.913)    1081     1.00

MedMNIST v2's published test AUCs at 28^3 are 0.718-0.839 (ResNet-18+3D 0.827). The frozen path's
508 CPU s: validate 35, preprocess 116, extract-features 85, radiomics (shape) 226, signature 359
(eight cv.glmnet LASSOs on 1,188 x ~320 features: 15-124 s each), in wall seconds of a loaded
machine. The trained path: train 1221 of 1380 wall s (best internal AUC at epoch 2 of 5, 0.766);
the plain loop's best val AUC 0.815 at epoch 5.
"""

from __future__ import annotations

from pathlib import Path

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path("/work/shared/data/medmnist/adrenalmnist3d_64.npz")
SPLITS = {"train": "training", "val": "internal", "test": "test"}
PREFIX = {"train": "tr", "val": "va", "test": "te"}

#: AdrenalMNIST3D test AUC / ACC of the MedMNIST v2 benchmark (28^3 volumes, not the 64^3 MedMNIST+), as the
#: authors publish them in "Benchmarking Performance on MedMNIST3D" on medmnist.com: read from the site's source,
#: github.com/MedMNIST/medmnist.github.io, index.html at 74c5d447 (2024-11-28), the same table as in v2.html of
#: 2021-08-22 (the MedMNIST v2 page, before MedMNIST+). The paper's own table could not be read here; None would
#: print "not verified".
PUBLISHED: dict[str, tuple[float, float] | None] = {
    "ResNet-18+2.5D": (0.718, 0.772), "ResNet-18+3D": (0.827, 0.721), "ResNet-18+ACS": (0.839, 0.754),
    "ResNet-50+2.5D": (0.732, 0.763), "ResNet-50+3D": (0.828, 0.745), "ResNet-50+ACS": (0.828, 0.758),
    "auto-sklearn": (0.828, 0.802), "AutoKeras": (0.804, 0.705),
}
PUBLISHED_SOURCE = ("MedMNIST v2 benchmark at 28^3, medmnist.com 'Benchmarking Performance on MedMNIST3D' "
                    "(github.com/MedMNIST/medmnist.github.io index.html @74c5d44 = v2.html of 2021-08-22)")


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------------------- data

def load_splits(limit: int | None, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """split -> (volumes uint8 (n, 64, 64, 64), labels (n,), ids); ``limit``: a stratified seeded subsample."""
    z = np.load(DATA, allow_pickle=False)
    out = {}
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        x, y = z[f"{split}_images"], z[f"{split}_labels"].ravel().astype(int)
        ids = [f"{PREFIX[split]}{i:04d}" for i in range(len(y))]
        idx = np.arange(len(y))
        if limit is not None and limit < len(y):
            pos, neg = idx[y == 1], idx[y == 0]
            k_pos = max(2, int(round(limit * len(pos) / len(y))))
            idx = np.sort(np.concatenate([rng.choice(pos, k_pos, replace=False),
                                          rng.choice(neg, limit - k_pos, replace=False)]))
        out[split] = (x[idx], y[idx], [ids[i] for i in idx])
    return out


def write_study_inputs(out: Path, data) -> None:
    """images/<id>.nii.gz, masks/<id>_mask.nii.gz (voxels > 0), labels.xlsx; files already there are kept."""
    import SimpleITK as sitk
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows, written = [], 0
    for split, (x, y, ids) in data.items():
        for vol, label, pid in zip(x, y, ids):
            rows.append({"patient_id": pid, "label": int(label), "split": SPLITS[split]})
            img_path, mask_path = out / "images" / f"{pid}.nii.gz", out / "masks" / f"{pid}_mask.nii.gz"
            if img_path.exists() and mask_path.exists():
                continue
            for arr, path in ((vol, img_path), ((vol > 0).astype(np.uint8), mask_path)):
                im = sitk.GetImageFromArray(np.ascontiguousarray(arr))  # array [z, y, x]
                im.SetSpacing((1.0, 1.0, 1.0))
                tmp = path.with_name(".partial." + path.name)
                sitk.WriteImage(im, str(tmp), useCompression=True)
                tmp.replace(path)
            written += 1
    labels = pd.DataFrame(rows)
    xlsx = out / "labels.xlsx"
    if not xlsx.exists() or not pd.read_excel(xlsx, dtype={"patient_id": str}).equals(labels):
        tmp = out / ".partial.labels.xlsx"
        labels.to_excel(tmp, index=False)
        tmp.replace(xlsx)
    print(f"data: {len(labels)} volumes ({written} written, {len(labels) - written} cached) in {out}", flush=True)


# --------------------------------------------------------------------------------------- gastrorad

def run_init(out: Path) -> str:
    study = out / "study"
    log = out / "init.log"
    if (study / "study.yaml").exists() and log.exists():
        return log.read_text()
    cmd = ["gastrorad", "init", str(study), "--images", str(out / "images"), "--masks", str(out / "masks"),
           "--clinical", str(out / "labels.xlsx"), "--force"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    text = "$ " + " ".join(cmd) + "\n" + p.stdout + p.stderr + f"[exit code {p.returncode}]\n"
    if p.returncode != 0 or not (study / "study.yaml").exists():
        print(text)
        raise SystemExit(f"gastrorad init failed (exit {p.returncode})")
    log.write_text(text)
    return text


def path_overrides(name: str, a) -> dict:
    S = a.size
    block = {"mode": "volume3d", "size": [S, S, S], "side_mm": 64.0, "depth_mm": 64.0}
    # binary 0/255 volumes: window 0..255 mapped to 0..1 (padding outside the volume = 0)
    common = {"seed": a.seed, "preprocess": {"spacing": [1.0, 1.0, 1.0], "window": {"low": 0, "high": 255},
                                             "normalize": "zero_one", "workers": 1},
              "evaluation": {"bootstrap": 100}, "compute": {"scheduler": "serial"}}
    if name == "trained":
        return deep(common, {
            "preprocess": {"patch": {**block, "mask_channel": False}},
            "model": {"backbone": a.backbone, "spatial_dims": 3, "pretrained": None, "freeze": "none", "head": "linear"},
            "augment": {"flip": False, "rot90": False},  # the plain loop has none (init's recipe: flips, rot90)
            "training": {"loss": "bce", "optimizer": "adamw", "weight_decay": 0.0, "lr": 1e-3, "schedule": "constant",
                         "epochs": a.epochs, "batch_size": 32, "val_cohort": "internal",
                         "early_stopping": {"monitor": "val_auc", "patience": a.epochs}},
            "signature": {"method": "dl_probability"},
            "radiomics": {"enabled": False},  # the handcrafted reference runs in the frozen path
            "report": {"gradcam": 0}})  # no Grad-CAM: the plain loop has no explain step either
    if name == "frozen":
        return deep(common, {
            "preprocess": {"patch": {**block, "mask_channel": True}},
            "model": {"backbone": "tiny", "spatial_dims": 3, "pretrained": None},
            # the shape is both image and mask: the mask pools only (not a second input); no erosion, the
            # gland's limbs are a few mm thick, 1-3 voxels of the block
            "features": {"stages": "all", "pooling": ["avg", "max", "roi_avg", "roi_std"], "networks": 8,
                         "mask_input": False, "roi_erosion": 0},
            "signature": {"method": "lasso", "bagging": "network"},
            "radiomics": {"classes": ["shape"], "workers": 1},
            # gastrorad bug workaround: with the default reference (the handcrafted signature), evaluate crashes
            # when that LASSO keeps no feature (delong_compare: "'Handcrafted radiomics signature (venous)' is
            # not in list", seen on --limit 30); null = compare with the first model
            "evaluation": {"reference": None},
            "report": {"gradcam": 0}})
    raise ValueError(name)


def deep(base: dict, patch: dict) -> dict:
    from gastrorad.config.study import deep_merge
    return deep_merge(base, patch)


def write_path_study(out: Path, name: str, a) -> Path:
    """A copy of init's study.yaml with the path's overrides, its output under OUT/runs/<name>."""
    study = out / "study"
    raw = yaml.safe_load((study / "study.yaml").read_text())
    raw.pop("profiles", None)
    raw = deep(raw, path_overrides(name, a))
    raw["output"] = str((out / "runs" / name).resolve())
    raw["name"] = f"adrenal_{name}"
    path = study / f"study_{name}.yaml"
    path.write_text(f"# bench/real_adrenal.py: init's study.yaml with the '{name}' path's settings\n"
                    + yaml.safe_dump(raw, sort_keys=False))
    return path


def read_test_auc(run: Path, want: str) -> dict:
    """AUC with its DeLong CI on the test cohort of the model ``want`` ('deep' or 'handcrafted')."""
    perf = pd.read_csv(run / "metrics" / "performance.csv")
    perf = perf[perf.cohort == "test"]
    if want == "deep":
        rows = perf[perf.model.str.startswith("Deep signature") | (perf.model == "DL signature")]
    else:
        rows = perf[perf.model.str.startswith("Handcrafted radiomics signature")]
    if rows.empty:
        return {"auc": float("nan"), "lower": float("nan"), "upper": float("nan"), "model": None,
                "n": 0, "models_in_run": sorted(perf.model.unique())}
    r = rows.iloc[0]
    return {"auc": float(r.auc_or_c), "lower": float(r.lower), "upper": float(r.upper), "model": r.model,
            "n": int(r.n)}


def run_path(out: Path, name: str, a) -> dict:
    study = write_path_study(out, name, a)
    run = out / "runs" / name
    if run.exists() and not a.keep_runs:
        shutil.rmtree(run)
    cmd = ["gastrorad", "run", str(study)]
    print(f"\n== path {name}: $ {' '.join(cmd)}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    c0, t0 = cpu_children(), time.perf_counter()
    with open(out / f"run_{name}.log", "w") as logf:
        p = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    cpu, wall = cpu_children() - c0, time.perf_counter() - t0
    res = {"path": name, "cpu_s": cpu, "wall_s": wall, "exit": p.returncode, "study": str(study),
           "log": str(out / f"run_{name}.log")}
    if p.returncode != 0:
        tail = (out / f"run_{name}.log").read_text().splitlines()[-30:]
        print(f"   gastrorad run FAILED (exit {p.returncode}); last lines of {res['log']}:\n   " + "\n   ".join(tail))
        res["error"] = "\n".join(tail)
        return res
    hist = json.loads((run / "run.json").read_text())["history"][-1]
    res["stage_seconds"] = hist.get("seconds", {})
    res["test"] = read_test_auc(run, "deep")
    if name == "frozen":
        res["handcrafted"] = read_test_auc(run, "handcrafted")
    print(f"   done: {cpu:.0f} CPU s, {wall:.0f} s wall; stages (wall s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in res["stage_seconds"].items()), flush=True)
    save_result(out, res)
    return res


def save_result(out: Path, res: dict) -> None:
    """OUT/runs/<path>.result.json: what --merge takes from an earlier command."""
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "runs" / f"{res['path']}.result.json").write_text(json.dumps(res, indent=2, default=float))


# ------------------------------------------------------------------------------------------ plain

def plain_loop(data, a) -> dict:
    """MONAI ResNet-18 3D from scratch: Adam 1e-3, BCE, batch 32, best val-AUC epoch, test AUC."""
    import torch
    import torch.nn.functional as F
    from monai.networks.nets import resnet18
    from gastrorad.stats.roc import auc_ci_delong
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    c0, t0 = cpu_self(), time.perf_counter()

    def prep(x):  # (n, 64, 64, 64) uint8 0/255 -> (n, 1, S, S, S) float 0..1, trilinear
        t = torch.from_numpy(x).float().div_(255.0)[:, None]
        return F.interpolate(t, size=(a.size,) * 3, mode="trilinear", align_corners=False)

    xs = {k: prep(v[0]) for k, v in data.items()}
    ys = {k: torch.from_numpy(v[1]).float() for k, v in data.items()}
    net = resnet18(spatial_dims=3, n_input_channels=1, num_classes=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def predict(x):
        net.eval()
        with torch.inference_mode():
            return torch.cat([net(x[i:i + 64]).ravel() for i in range(0, len(x), 64)]).numpy()

    best, best_state, best_epoch, history = -1.0, None, 0, []
    n = len(ys["train"])
    for epoch in range(a.epochs):
        net.train()
        order = rng.permutation(n)
        for i in range(0, n, 32):
            b = torch.from_numpy(order[i:i + 32])
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(net(xs["train"][b]).ravel(), ys["train"][b])
            loss.backward()
            opt.step()
        val_auc = auc_ci_delong(ys["val"].numpy(), predict(xs["val"])).auc
        history.append(val_auc)
        if val_auc > best:
            best, best_epoch = val_auc, epoch + 1
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        print(f"   plain epoch {epoch + 1}/{a.epochs}: val AUC {val_auc:.3f}", flush=True)
    net.load_state_dict(best_state)
    r = auc_ci_delong(ys["test"].numpy(), predict(xs["test"]))
    return {"path": "plain", "cpu_s": cpu_self() - c0, "wall_s": time.perf_counter() - t0, "exit": 0,
            "test": {"auc": r.auc, "lower": r.lower, "upper": r.upper, "model": "MONAI resnet18 3D",
                     "n": r.n_cases + r.n_controls},
            "best_epoch": best_epoch, "val_auc": history}


# ------------------------------------------------------------------------------------------ table

LABELS = {
    "trained": "gastrorad: 3D {backbone} trained (dl_probability)",
    "frozen": "gastrorad: 8 frozen tiny 3D CNNs + bagged LASSO",
    "handcrafted": "  same run: handcrafted 3D shape + LASSO",
    "plain": "plain MONAI resnet18 3D loop",
}


def table(results: list[dict], a) -> pd.DataFrame:
    base = next((r["cpu_s"] for r in results if r["path"] == "plain"), None)
    rows = []
    for r in sorted(results, key=lambda r: ["frozen", "trained", "plain"].index(r["path"])):
        entries = [(r["path"], r.get("test"), r["cpu_s"])]
        if "handcrafted" in r:
            entries.append(("handcrafted", r["handcrafted"], None))
        for key, t, cpu in entries:
            ok = t is not None and np.isfinite(t.get("auc", np.nan))
            rows.append({
                "path": LABELS[key].format(backbone=a.backbone) + (" [earlier command]" if r.get("earlier_command")
                                                                    and key != "handcrafted" else ""),
                "test AUC (95% CI)": f"{t['auc']:.3f} ({t['lower']:.3f}-{t['upper']:.3f})" if ok
                else ("FAILED" if r.get("exit") else "no model"),
                "CPU s": f"{cpu:.0f}" if cpu is not None else "(in the row above)",
                "x plain": f"{cpu / base:.2f}" if cpu is not None and base else "",
            })
    return pd.DataFrame(rows)


def published_table() -> pd.DataFrame:
    return pd.DataFrame([{"method (MedMNIST v2, 28^3)": k,
                          "test AUC": f"{v[0]:.3f}" if v else "not verified",
                          "test ACC": f"{v[1]:.3f}" if v else "not verified"} for k, v in PUBLISHED.items()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="default bench/out/adrenal (with --limit N: adrenal_limitN)")
    ap.add_argument("--limit", type=int, default=None, help="at most N volumes per split (stratified), a quick check")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--size", type=int, default=16, help="side S of the S^3 network input")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backbone", default="resnet18", help="backbone of gastrorad's trained path")
    ap.add_argument("--paths", nargs="+", default=["frozen", "trained", "plain"],
                    choices=["trained", "frozen", "plain"])
    ap.add_argument("--keep-runs", action="store_true", help="reuse earlier run folders (CPU times then meaningless)")
    ap.add_argument("--merge", action="store_true", help="add the rows of the paths not in --paths from an "
                    "earlier command on the same OUT (OUT/runs/<path>.result.json), marked as such")
    ap.add_argument("--table-only", action="store_true", help="print and rewrite the table from OUT/results.json "
                    "(the measured results of an earlier command), nothing run")
    a = ap.parse_args()
    out = (a.out or HERE / "out" / ("adrenal" if a.limit is None else f"adrenal_limit{a.limit}")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    if a.table_only:
        saved = json.loads((out / "results.json").read_text())
        for key in ("size", "epochs", "seed", "backbone"):
            setattr(a, key, saved["settings"][key])
        results, settings = saved["results"], saved["description"]
        a.saved_settings = saved["settings"]
    else:
        data = load_splits(a.limit, a.seed)
        write_study_inputs(out, data)
        print(run_init(out), flush=True)
        results = []
        for name in a.paths:
            if name == "plain":
                print("\n== plain MONAI loop", flush=True)
                results.append(plain_loop(data, a))
                save_result(out, results[-1] | {"settings": {"size": a.size, "epochs": a.epochs, "seed": a.seed}})
            else:
                results.append(run_path(out, name, a))
        if a.merge:  # the other paths' results of an earlier command on the same OUT
            for name in sorted({"frozen", "trained", "plain"} - set(a.paths)):
                f = out / "runs" / f"{name}.result.json"
                if f.exists():
                    results.append(json.loads(f.read_text()) | {"earlier_command": True})
        settings = (f"AdrenalMNIST3D 64^3 (train {len(data['train'][1])} / val {len(data['val'][1])} / test "
                    f"{len(data['test'][1])}), S={a.size}, epochs={a.epochs}, seed={a.seed}, backbone={a.backbone}")
    t = table(results, a)
    pub = published_table()
    print(f"\n{settings}; CPU s = user + sys of the run (children for gastrorad, this process for the plain loop)")
    print(t.to_string(index=False))
    print(f"\npublished AdrenalMNIST3D baselines ({PUBLISHED_SOURCE}):")
    print(pub.to_string(index=False))
    if not a.table_only:
        print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")

    (out / "results.json").write_text(json.dumps({
        "settings": getattr(a, "saved_settings", None) or
        {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()} | {"out": str(out)}, "description": settings, "results": results,
        "table": t.to_dict(orient="records"), "published": {"source": PUBLISHED_SOURCE, "adrenalmnist3d_test":
                                                            {k: (None if v is None else {"auc": v[0], "acc": v[1]})
                                                             for k, v in PUBLISHED.items()}},
    }, indent=2, default=float))
    md = [f"**AdrenalMNIST3D, gastrorad vs a plain MONAI loop** ({settings})", "",
          "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    md += ["| " + " | ".join(str(v) for v in row) + " |" for row in t.itertuples(index=False)]
    md += ["", f"Published baselines ({PUBLISHED_SOURCE}):", "", "| " + " | ".join(pub.columns) + " |",
           "|" + "---|" * len(pub.columns)]
    md += ["| " + " | ".join(str(v) for v in row) + " |" for row in pub.itertuples(index=False)]
    md += ["", "Data: MedMNIST v2 (Yang et al., Scientific Data 10:41, 2023), CC BY 4.0.", ""]
    (out / "results.md").write_text("\n".join(md))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
