"""Benchmark: `gastrorad serve` under a bounded load on loopback, against calling the same
code directly in this process.

Starts `gastrorad serve BUNDLE` as a child process on 127.0.0.1 (a free port, a temporary state
folder, a fresh token), then:

- nomogram calculator: ``--requests`` POSTs to ``/calculate`` at concurrency ``--concurrency``,
  each with one patient's clinical values from the cohort; baseline: ``calculate`` (which runs
  ``score_models``, predict's scoring code) on the same values in this process, one at a time and
  at the same concurrency in threads (the scoring is pandas code that holds the GIL, so at
  concurrency 16 on 2 cores latency is mostly queueing, served or not);
- image jobs: ``--jobs`` uploads (NIfTI image + mask + clinical values) at concurrency
  ``--job-concurrency``, each polled until done; baseline: ``predict_patients`` on the same
  patient in this process (median of 3).

Every served number is compared with the direct one (a difference > 1e-9 counts as an error).
Prints p50/p95 latency, errors, the server's RSS before, between and after the phases, and the
ratio p50 / direct. The server is stopped at the end, whatever happens.

    python bench/serve.py [--bundle demo/run/bundle] [--cohort demo/s1_cohort] [--requests 200]
                          [--concurrency 16] [--jobs 10] [--job-concurrency 2] [--rounds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


def load(fn, items, concurrency: int) -> tuple[list[float], int, float]:
    """Run ``fn`` (-> (seconds, errors)) over ``items`` at ``concurrency``: latencies, errors, wall time."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        out = list(pool.map(fn, items))
    return [dt for dt, _ in out], sum(e for _, e in out), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("demo/run/bundle"))
    ap.add_argument("--cohort", type=Path, default=Path("demo/s1_cohort"))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--job-concurrency", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both phases (RSS after each)")
    args = ap.parse_args()

    import httpx
    import psutil

    from gastrorad.bundle import predict_patients
    from gastrorad.serve.calculator import calculate
    from gastrorad.serve.registry import load_models

    model = next(iter(load_models([args.bundle]).values()))
    wanted = model.info["clinical_required"]
    clin = pd.read_csv(args.cohort / "clinical.csv", dtype={"patient_id": str})
    man = pd.read_csv(args.cohort / "manifest.csv", dtype={"patient_id": str})
    patients = [{"patient_id": r.patient_id, "values": {v: getattr(r, v) for v in wanted}}
                for r in clin.itertuples()]
    patients = [{"patient_id": p["patient_id"], "values": {k: (v.item() if hasattr(v, "item") else v)
                                                           for k, v in p["values"].items()}} for p in patients]

    tmp = Path(tempfile.mkdtemp(prefix="gastrorad-bench-serve-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "gastrorad.cli", "serve", "--state", str(tmp)]
    token = subprocess.run([*cli, "--create-token", "bench"], env=env, capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    proc = subprocess.Popen([*cli, str(args.bundle), "--port", str(port), "--workers", str(args.job_concurrency)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        server = psutil.Process(proc.pid)
        rss = {"start": server.memory_info().rss}

        # ---- nomogram calculator --------------------------------------------------------------
        direct, expected = [], {}
        for p in patients:
            t0 = time.perf_counter()
            res, _ = calculate(model, p["values"], p["patient_id"])
            direct.append(time.perf_counter() - t0)
            expected[p["patient_id"]] = res["models"]
        def direct_one(i):  # the same calls at the same concurrency, in threads of this process
            p = patients[i % len(patients)]
            t0 = time.perf_counter()
            calculate(model, p["values"], p["patient_id"])
            return time.perf_counter() - t0
        with ThreadPoolExecutor(args.concurrency) as pool:
            direct_conc = list(pool.map(direct_one, range(args.requests)))

        def one(i):
            p = patients[i % len(patients)]
            with httpx.Client(timeout=60) as c:
                t0 = time.perf_counter()
                r = c.post(f"{base}/models/{model.id}/calculate", json=p, headers=headers)
                dt = time.perf_counter() - t0
            if r.status_code != 200:
                return dt, 1
            got = r.json()["models"]
            bad = any((g["score"] is None) != (expected[p["patient_id"]][k]["score"] is None) or
                      (g["score"] is not None and abs(g["score"] - expected[p["patient_id"]][k]["score"]) > 1e-9)
                      for k, g in got.items())
            return dt, int(bad)
        lat, errors, wall = load(one, range(args.requests), args.concurrency)
        rss["after_calculator"] = server.memory_info().rss
        print(f"nomogram calculator: {args.requests} requests at concurrency {args.concurrency} in {wall:.1f} s "
              f"({args.requests / wall:.0f}/s); latency p50 {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms; "
              f"errors {errors}; direct call p50 {pct(direct, 50):.2f} ms one at a time, "
              f"p50 {pct(direct_conc, 50):.1f} "
              f"ms / p95 {pct(direct_conc, 95):.1f} ms at concurrency {args.concurrency} in threads; ratio p50 "
              f"served/direct {pct(lat, 50) / pct(direct, 50):.1f} (one at a time), "
              f"{pct(lat, 50) / pct(direct_conc, 50):.2f} (same concurrency)")

        # ---- image jobs -----------------------------------------------------------------------
        cases = []
        for r in man.drop_duplicates("patient_id").head(args.jobs).itertuples():
            values = next(p["values"] for p in patients if p["patient_id"] == r.patient_id)
            cases.append((r.patient_id, args.cohort / r.image, args.cohort / r.mask, values))
        ref_times, ref = [], {}
        for pid, image, mask, values in cases[:3]:
            d = tmp / "direct" / pid
            d.mkdir(parents=True)
            pd.DataFrame([{"patient_id": pid, "image": str(image.resolve()), "mask": str(mask.resolve()),
                           "phase": model.info["phases"][0], **values}]).to_csv(d / "patients.csv", index=False)
            t0 = time.perf_counter()
            preds = predict_patients(args.bundle, d / "patients.csv", d / "out",
                                     gradcam=model.info["signature"] == "dl_probability").predictions
            ref_times.append(time.perf_counter() - t0)
            ref[pid] = dict(zip(preds.model, preds.score))

        def job(case):
            pid, image, mask, values = case
            ph = model.info["phases"][0]
            with httpx.Client(timeout=300) as c:
                t0 = time.perf_counter()
                r = c.post(f"{base}/models/{model.id}/jobs", headers=headers,
                           data={"patient_id": pid, "clinical": json.dumps(values)},
                           files={f"image_{ph}": (image.name, image.read_bytes()),
                                  f"mask_{ph}": (mask.name, mask.read_bytes())})
                if r.status_code != 202:
                    return time.perf_counter() - t0, 1
                jid = r.json()["job_id"]
                while True:
                    s = c.get(f"{base}/jobs/{jid}", headers=headers).json()
                    if s["status"] in ("done", "failed"):
                        break
                    time.sleep(0.1)
                dt = time.perf_counter() - t0
            if s["status"] != "done":
                return dt, 1
            bad = pid in ref and any(abs(g["score"] - ref[pid][k]) > 1e-9 for k, g in s["result"]["models"].items())
            return dt, int(bad)
        jlat, jerr, wall = load(job, cases, args.job_concurrency)
        rss["after_jobs"] = server.memory_info().rss
        print(f"image jobs: {len(cases)} at concurrency {args.job_concurrency} in {wall:.1f} s; latency (upload to "
              f"result) p50 {pct(jlat, 50):.0f} ms, p95 {pct(jlat, 95):.0f} ms; errors {jerr}; direct "
              f"predict_patients p50 {pct(ref_times, 50):.0f} ms; ratio p50 served/direct "
              f"{pct(jlat, 50) / pct(ref_times, 50):.2f}")
        # more rounds of both: memory should level off
        for r in range(2, args.rounds + 1):
            errors += load(one, range(args.requests), args.concurrency)[1]
            jerr += load(job, cases, args.job_concurrency)[1]
            rss[f"after_round_{r}"] = server.memory_info().rss
        print(f"{args.rounds} rounds of both: errors {errors} (calculator, total), {jerr} (jobs, total)")
        print("server RSS (MB): " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in rss.items()))
        leftovers = [p for p in (tmp / "jobs").rglob("*") if p.is_dir() and p.name in ("uploads", "work")]
        print(f"upload/work folders left after the jobs: {len(leftovers)}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
