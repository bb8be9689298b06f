"""Benchmark: per-patient stages on Dask distributed, 1 vs 2 workers, against one process.

On a synthetic S1 cohort (``gastrorad.synth``, generated once and cached under
``bench/out/scale/``), each configuration cuts every patient's patches
(``preprocess_study``) and extracts the handcrafted radiomics table
(``extract_feature_table``) from an empty cache:

- ``serial``: in this process (``compute.scheduler: serial``), the baseline;
- ``dask-1`` / ``dask-2``: a Dask LocalCluster of 1 / 2 single-threaded worker processes,
  used through its address (``compute.scheduler: tcp://...``), as a SLURM or Kubernetes
  cluster would be.

Each configuration runs in its own Python process, so its peak resident memory
(``ru_maxrss`` of each worker and of the driver) is its own. Prints patients/s per stage,
the speed-up of 2 workers over 1 and over the serial path, peak RSS per worker, the
per-patient cost in worker-seconds (the input of the README's cost model) and whether the
patch bytes and feature tables of every configuration are identical.

    python bench/scale.py [--patients 2000] [--matrix-scale 0.5] [--workers 2]

Patient deep features stay in one process (batched torch inference, see the README);
this bench measures the per-patient stages that run on Dask. Each run folder is deleted after
its digests are taken (2.4 MB of patches per patient); the cohort stays (about 0.9 MB per
patient at matrix scale 0.5).
"""

from __future__ import annotations

import sys
from pathlib import Path

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "scale"


def cohort(n: int, matrix_scale: float, seed: int = 0) -> tuple[Path, float | None]:
    """The synthetic cohort (made once); returns its folder and the seconds it took to make, if made now."""
    from gastrorad.synth import synthesize
    folder = OUT / f"s1_n{n}_m{matrix_scale:g}"
    stamp = folder / "synth.json"
    if stamp.exists():
        meta = json.loads(stamp.read_text())
        if (meta.get("n"), meta.get("matrix_scale"), meta.get("seed")) == (n, matrix_scale, seed):
            return folder, None
    t0 = time.perf_counter()
    synthesize("s1", folder, n=n, seed=seed, workers=2, matrix_scale=matrix_scale)
    seconds = time.perf_counter() - t0
    (folder / "bench_generation.json").write_text(json.dumps({"seconds": seconds}))
    return folder, seconds


def _study(folder: Path, mode: str, scheduler: str):
    from gastrorad.config import load_study
    cfg = load_study(folder / "study.yaml")
    run = OUT / f"run_{folder.name}_{mode}"
    shutil.rmtree(run, ignore_errors=True)  # an empty cache: every patient is computed
    cfg = cfg.model_copy(update={"output": run})
    cfg.preprocess.cache_dir = run / "patches"
    cfg.compute.scheduler = scheduler
    return cfg


def _stages(cfg, compute) -> dict:
    from gastrorad.preprocess import preprocess_study
    from gastrorad.radiomics.study import settings_for
    from gastrorad.radiomics.table import extract_feature_table
    t0 = time.perf_counter()
    pre = preprocess_study(cfg, validate=False)
    t1 = time.perf_counter()
    rad = extract_feature_table(cfg.manifest_path, settings=settings_for(cfg), cache_dir=cfg.output_dir / "radiomics",
                                workers=compute, phases=cfg.preprocess.phases)
    t2 = time.perf_counter()
    assert not pre.problems and not rad.problems, (pre.problems[:3], rad.problems[:3])
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(pre.index.path):
        digest.update(Path(path).read_bytes())
    features = hashlib.blake2b(rad.table.to_csv(index=False).encode(), digest_size=16).hexdigest()
    shutil.rmtree(cfg.output_dir, ignore_errors=True)  # 2.4 MB of patches per patient: 4.8 GB at 2000
    return {"patients": int(pre.index.patient_id.nunique()), "preprocess_s": t1 - t0, "radiomics_s": t2 - t1,
            "patches_digest": digest.hexdigest(), "features_digest": features}


def run_one(folder: Path, mode: str) -> dict:
    """One configuration, in this (fresh) process."""
    from gastrorad.io.compute import Compute, dask_client, process_usage, worker_usage
    load = os.getloadavg()[0]
    if mode == "serial":
        compute = Compute(scheduler="serial")
        before = process_usage()["cpu_s"]
        out = _stages(_study(folder, mode, "serial"), compute)
        used = process_usage()
        out.update(workers=1, cluster_start_s=0.0, worker_peak_rss_mb=[used["peak_rss_mb"]],
                   worker_cpu_s=used["cpu_s"] - before, driver_cpu_s=0.0)
    else:
        workers = int(mode.split("-")[1])
        t0 = time.perf_counter()
        with dask_client(Compute(workers=workers)) as client:
            start = time.perf_counter() - t0
            address = client.scheduler.address
            cpu0, driver0 = sum(u["cpu_s"] for u in worker_usage(client).values()), process_usage()["cpu_s"]
            out = _stages(_study(folder, mode, address), Compute(scheduler=address))
            used = worker_usage(client)
        out.update(workers=workers, cluster_start_s=start,
                   worker_peak_rss_mb=sorted(u["peak_rss_mb"] for u in used.values()),
                   worker_cpu_s=sum(u["cpu_s"] for u in used.values()) - cpu0,
                   driver_cpu_s=process_usage()["cpu_s"] - driver0)
    out.update(mode=mode, driver_peak_rss_mb=process_usage()["peak_rss_mb"],
               load_before=load, load_after=os.getloadavg()[0])
    return out


def _input_mb_per_patient(folder: Path) -> float:
    import pandas as pd
    m = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    size = sum((folder / f).stat().st_size for f in set(m.image) | set(m["mask"]) if f)
    return size / 2 ** 20 / m.patient_id.nunique()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--matrix-scale", type=float, default=0.5, help="0.5: a 128 in-plane matrix (keeps 2000 "
                    "patients at about 2 GB on disk); 2.0: a clinical 512 matrix.")
    ap.add_argument("--workers", type=int, default=2, help="The largest Dask cluster measured.")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--cohort", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.cohort, args.one)))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    folder, generated = cohort(args.patients, args.matrix_scale)
    gen = json.loads((folder / "bench_generation.json").read_text())["seconds"] if (
        folder / "bench_generation.json").exists() else float("nan")
    print(f"cohort: {args.patients} synthetic S1 patients, matrix scale {args.matrix_scale:g}, "
          f"{_input_mb_per_patient(folder):.2f} MB of CT and mask per patient, in {folder}"
          + (f" (generated now in {generated:.0f} s)" if generated is not None else
             f" (cached; generated in {gen:.0f} s)"))
    modes = ["serial", "dask-1"] + ([f"dask-{args.workers}"] if args.workers > 1 else [])
    results = {}
    for mode in modes:
        proc = subprocess.run([sys.executable, __file__, "--one", mode, "--cohort", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{mode} failed:\n{proc.stderr[-4000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"  {mode:<7} done: preprocess {r['preprocess_s']:.1f} s, radiomics {r['radiomics_s']:.1f} s")

    n = args.patients
    base = results["dask-1"]
    print(f"\n{'mode':<8}{'workers':>8}{'start s':>9}{'preproc p/s':>13}{'radiomics p/s':>15}{'both p/s':>10}"
          f"{'speed-up':>10}{'CPU-s/patient':>15}{'CPU share':>11}{'load':>11}  peak RSS per worker MB (driver)")
    for mode, r in results.items():
        both = r["preprocess_s"] + r["radiomics_s"]
        speed = (base["preprocess_s"] + base["radiomics_s"]) / both
        rss = ", ".join(f"{v:.0f}" for v in r["worker_peak_rss_mb"])
        share = r["worker_cpu_s"] / (both * r["workers"])  # below 1: the workers waited (for I/O or for a core)
        print(f"{mode:<8}{r['workers']:>8}{r['cluster_start_s']:>9.1f}{n / r['preprocess_s']:>13.1f}"
              f"{n / r['radiomics_s']:>15.1f}{n / both:>10.2f}{speed:>9.2f}x"
              f"{r['worker_cpu_s'] / n:>9.3f}+{r['driver_cpu_s'] / n:.3f}{share:>11.2f}"
              f"{r['load_before']:>5.1f}-{r['load_after']:<5.1f}  {rss} ({r['driver_peak_rss_mb']:.0f})")
    print("CPU-s/patient: worker + driver CPU seconds per patient; CPU share: worker CPU / (wall x workers); "
          "load: the machine's 1-min load average before-after")
    if f"dask-{args.workers}" in results:
        top = results[f"dask-{args.workers}"]
        both = top["preprocess_s"] + top["radiomics_s"]
        serial = results["serial"]["preprocess_s"] + results["serial"]["radiomics_s"]
        print(f"\n{args.workers} workers vs serial: {serial / both:.2f}x; vs 1 worker: "
              f"{(base['preprocess_s'] + base['radiomics_s']) / both:.2f}x")
    same = {(r["patches_digest"], r["features_digest"]) for r in results.values()}
    print(f"patch bytes and feature tables identical across {', '.join(results)}: {'yes' if len(same) == 1 else 'NO'}")
    (OUT / f"results_{folder.name}.json").write_text(json.dumps({"patients": n, "matrix_scale": args.matrix_scale,
                                                                 "generation_s": gen, "results": results}, indent=2))
    if len(same) != 1:
        sys.exit(1)


if __name__ == "__main__":
    main()
