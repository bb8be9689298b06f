"""Benchmark: seconds per patient of the frozen-feature path, per patch mode, against a plain
PyTorch loop over the same patches and network in this process.

For each patch mode (slice2d, roi_slices, stack25d, volume3d) the S1 recipe's ``fast`` profile is
run on a small synthetic S1 cohort (generated once, cached under ``bench/out/features``; the
papers' single-slice ROI, or with ``--roi volume`` a mask over the whole tumour, where
``roi_slices`` cuts every ROI slice) up to its patches; then, on the same patch files and the
network the run would build (the profile's bank of ``features.networks`` random-init copies):

- gastrorad: ``extract_features`` with an empty feature cache (read patch files, batch, every
  stage, every pooling of the profile, write the cache and the table);
- baseline: a plain loop: ``np.load`` each patch (every sample of it), batch, ``torch.inference_mode`` forward
  through the same stages, global average pooling only (fewer features: a lower bound);
- gastrorad again with a warm cache (what a rerun of the study costs).

Prints samples (network inputs) per patient, seconds per patient (preprocess, features cold,
baseline, features warm), the number of features, and the ratio gastrorad / baseline: what the
ROI poolings, every stage's pooling, the per-patch cache (hash, atomic write) and the feature
table cost over a bare forward pass.

    python bench/features.py [--patients 24] [--roi paper|volume] [--modes slice2d roi_slices stack25d volume3d]
                             [--backbone tiny]
"""

from __future__ import annotations

from pathlib import Path

import argparse  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent

MODES = {  # study-file overrides per mode (the fast profile's other settings are kept)
    "slice2d": {"preprocess": {"patch": {"mode": "slice2d", "side_mm": 80.0, "size": [80, 80], "mask_channel": True}}},
    # every slice of the ROI, each cut as slice2d cuts the largest (one sample per slice; the same as slice2d
    # on the papers' single-slice ROI)
    "roi_slices": {"preprocess": {"patch": {"mode": "roi_slices", "side_mm": 80.0, "size": [80, 80],
                                            "mask_channel": True}}},
    "stack25d": {"preprocess": {"patch": {"mode": "stack25d", "side_mm": 80.0, "size": [80, 80],
                                          "mask_channel": True}}},
    # the VOI's bounding box as a volume; no mask channel there, so no ROI poolings
    "volume3d": {"preprocess": {"patch": {"mode": "volume3d", "size": [32, 48, 48]}},
                 "model": {"spatial_dims": 3}, "features": {"pooling": ["avg", "max"]}},
}


def _config(data: Path, out: Path, mode: str, backbone: str):
    from gastrorad.config import load_study
    from gastrorad.recipes import find_study_file
    from gastrorad.config.study import deep_merge
    return load_study(find_study_file("s1_nact_resistance"), profile="fast", overrides=deep_merge({
        "data": {"manifest": str(data / "manifest.csv"), "clinical": str(data / "clinical.csv")},
        "output": str(out), "model": {"backbone": backbone}}, MODES[mode]))


def plain_loop(net, files: list[str], batch_size: int, patch) -> float:
    """Seconds for the baseline: load, batch, forward, global average pooling of every stage."""
    from gastrorad.preprocess.cache import load_patches
    from gastrorad.preprocess.patches import holds_samples
    t0 = time.perf_counter()
    arrays = []
    for f in files:
        arr, _, _ = load_patches(f)  # roi_slices: (slices, C, H, W), one sample per slice; else one sample (C, ...)
        arrays.append(torch.as_tensor(arr if holds_samples(arr, patch) else arr[None], dtype=torch.float32))
    x = torch.cat(arrays)
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            maps = net.stage_features(x[s:s + batch_size][:, :_in(net)])
            torch.cat([f.flatten(2).mean(-1) for _, f in maps], dim=1).numpy()
    return time.perf_counter() - t0


def _in(net) -> int:
    return int(net.state_dict()["backbone." + net.backbone.first_conv].shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--roi", choices=["paper", "volume"], default="paper",
                    help="the papers' largest-slice ROI, or a mask over the whole tumour")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--root", type=Path, default=HERE / "out" / "features")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from gastrorad.dl.data import load_sample_table
    from gastrorad.dl.features import extract_features
    from gastrorad.dl.fit import build_feature_network
    from gastrorad.runner import run_study
    from gastrorad.synth import synthesize
    roi = "" if a.roi == "paper" else f"_roi{a.roi}"  # each ROI kind cached apart
    data = a.root / f"s1_n{a.patients}{roi}"
    if not (data / "truth.csv").exists():
        synthesize("s1", data, n=a.patients, seed=0, workers=2, roi=None if a.roi == "paper" else a.roi)
    rows = []
    for mode in a.modes:
        out = a.root / f"run_{mode}_{a.backbone}{roi}"
        cfg = _config(data, out, mode, a.backbone)
        shutil.rmtree(out, ignore_errors=True)  # cold: patches are cut again
        t0 = time.perf_counter()
        run_study(cfg, only=["validate", "preprocess"], log=lambda s: None)
        t_pre = time.perf_counter() - t0
        phase = cfg.preprocess.phases[0]
        s = load_sample_table(cfg, phase)
        net, _ = build_feature_network(cfg, s.channels, s.spatial_dims)  # what `gastrorad run` extracts with
        files = list(s.frame.drop_duplicates("path").path)
        patch = cfg.preprocess.patch
        # warm-up of both paths outside the timed runs (thread pool, allocator, lazy imports of MONAI)
        plain_loop(net, files[:4], 4, patch)
        extract_features(cfg, net, phase=phase)
        shutil.rmtree(out / "cache" / "features", ignore_errors=True)
        t0 = time.perf_counter()
        table = extract_features(cfg, net, phase=phase)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        extract_features(cfg, net, phase=phase)
        t_warm = time.perf_counter() - t0
        t_plain = plain_loop(net, files, cfg.features.batch_size, patch)
        n = table.patient_id.nunique()
        from gastrorad.preprocess.cache import load_patches
        rows.append({"mode": mode, "patients": n, "samples/pt": len(s.frame) / n,
                     "patch": "x".join(map(str, load_patches(files[0])[0].shape[-3:])),
                     "features": table.shape[1] - 2,
                     "preprocess_s/pt": t_pre / n, "features_cold_s/pt": t_cold / n,
                     "plain_loop_s/pt": t_plain / n, "features_warm_s/pt": t_warm / n,
                     "ratio_cold_to_plain": t_cold / t_plain})
    t = pd.DataFrame(rows)
    print(f"\nFrozen features ({a.backbone} x {cfg.features.networks}, random init), S1 synthetic, {a.patients} "
          f"patients, {'whole-tumour' if a.roi == 'volume' else 'largest-slice'} ROI, {torch.get_num_threads()} threads")
    print(t.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
