"""Per-patient work on Dask (issue 15): the same patch bytes and features on a LocalCluster, on a
scheduler address and in this process; a failing patient retried once and reported while the
others finish; a rerun computes only what is missing; compute settings never touch the cache
keys; workers do not outlive a killed parent."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import kill_parent
from gastrorad.config import load_study
from gastrorad.io.compute import Compute, TaskFailed, dask_client, map_patients
from gastrorad.preprocess import preprocess_study

def _bytes(index: pd.DataFrame) -> dict[tuple, bytes]:
    """Each patch file's bytes by instance (the npz archive as written, not only the arrays)."""
    return {(r.patient_id, r.phase, r.lesion_id): Path(r.path).read_bytes() for r in index.itertuples()}


def _run(study: Path, out: Path, **compute):
    cfg = load_study(study / "study.yaml")
    cfg = cfg.model_copy(update={"output": out, "compute": cfg.compute.model_copy(update=compute)})
    cfg.preprocess.cache_dir = out / "patches"
    return preprocess_study(cfg, validate=False)


@pytest.fixture(scope="module")
def serial_patches(s1_study, tmp_path_factory):
    res = _run(s1_study, tmp_path_factory.mktemp("serial"), scheduler="serial")
    assert res.problems == [] and res.computed == 8
    return _bytes(res.index)


def test_local_cluster_cuts_the_same_patch_bytes(s1_study, tmp_path, serial_patches):
    res = _run(s1_study, tmp_path, scheduler="local", workers=2)
    assert res.problems == [] and res.computed == 8
    assert _bytes(res.index) == serial_patches


def test_a_scheduler_address_cuts_the_same_patch_bytes(s1_study, tmp_path, serial_patches):
    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster:
        res = _run(s1_study, tmp_path, scheduler=cluster.scheduler_address)
    assert res.problems == [] and res.computed == 8
    assert _bytes(res.index) == serial_patches


def test_an_unreadable_ct_fails_its_patient_only_and_a_rerun_computes_what_is_missing(s1_copy):
    manifest = pd.read_csv(s1_copy / "manifest.csv", dtype=str, keep_default_na=False)
    ct = s1_copy / manifest.image[3]
    good = ct.read_bytes()
    ct.write_bytes(b"not a CT" * 100)
    cfg = load_study(s1_copy / "study.yaml")
    cfg.compute.workers = 2
    res = preprocess_study(cfg)
    assert len(res.problems) == 1, res.problems
    p = res.problems[0]
    assert (p.file, p.row, p.column) == (str(cfg.manifest_path), 5, "image")
    assert "failed on 2 attempt(s)" in p.reason and ct.name in p.reason
    assert res.computed == 7 and len(res.index) == 7
    assert all(Path(x).exists() for x in res.index.path)

    ct.write_bytes(good)
    again = preprocess_study(cfg)
    assert again.problems == [] and (again.computed, again.cached) == (1, 7)


def _count_and_fail(task):
    """Records each attempt in a file; task 'bad' always fails, 'flaky' fails on its first attempt."""
    folder, name = task
    marks = Path(folder) / name
    with open(marks, "a") as fh:
        fh.write("x")
    if name == "bad" or (name == "flaky" and marks.read_text() == "x"):
        raise TaskFailed({"name": name, "ok": False}, f"{name} failed")
    return {"name": name, "ok": True}


@pytest.mark.parametrize("compute", [Compute(scheduler="serial"), Compute(workers=2)], ids=["serial", "dask"])
def test_a_failed_task_is_retried_once(tmp_path, compute):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    seen = []
    tasks = [(str(tmp_path), n) for n in ("good", "bad", "flaky")]
    out = map_patients(_count_and_fail, tasks, compute,
                       on_failure=lambda task, err, attempts: seen.append((task[1], attempts)) or err.result)
    assert {r["name"]: r["ok"] for r in out} == {"good": True, "bad": False, "flaky": True}
    assert {n: (tmp_path / n).read_text() for n in ("good", "bad", "flaky")} == {"good": "x", "bad": "xx",
                                                                               "flaky": "xx"}
    assert seen == [("bad", 2)]


def test_compute_settings_do_not_change_stage_keys(s1_copy):
    import gastrorad.runner as runner
    cfg = load_study(s1_copy / "study.yaml")
    other = cfg.model_copy(deep=True)
    other.compute.scheduler, other.compute.workers, other.compute.threads_per_worker = "tcp://cluster:8786", 64, 4
    other.preprocess.workers = other.radiomics.workers = 7
    for stage in runner.STAGES:
        assert runner.stage_key(stage, cfg) == runner.stage_key(stage, other), stage.name


def test_radiomics_features_are_identical_on_dask(s1_study):
    from gastrorad.data.tables import load_manifest
    from gastrorad.radiomics.table import extract_feature_table
    manifest, _ = load_manifest(s1_study / "manifest.csv", s1_study)
    manifest = manifest[manifest.patient_id.isin(sorted(manifest.patient_id)[:4])]
    here = extract_feature_table(manifest, workers=Compute(scheduler="serial"))
    dask = extract_feature_table(manifest, workers=Compute(workers=2))
    assert here.problems == [] and len(here.table) == 4
    pd.testing.assert_frame_equal(here.table, dask.table, check_exact=True)


def test_unknown_scheduler_is_an_input_error():
    from gastrorad.errors import InputError
    with pytest.raises(InputError, match="compute.scheduler"):
        Compute(scheduler="lcoal")


def test_local_cluster_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, time\n"
        "from gastrorad.io.compute import Compute, dask_client\n"
        "if __name__ == '__main__':\n"
        "    with dask_client(Compute(workers=2)) as client:\n"
        "        print(' '.join(str(p) for p in client.run(os.getpid).values()), flush=True)\n"
        "        time.sleep(120)\n")
    workers, alive = kill_parent(script, 20)
    assert len(workers) == 2
    assert not alive, f"Dask workers {alive} outlived their killed parent"


def test_a_patient_holds_one_ct_at_a_time(s1_copy, monkeypatch):
    import shutil
    import weakref

    import gastrorad.preprocess.pipeline as pipeline
    from gastrorad.data.tables import load_manifest
    cfg = load_study(s1_copy / "study.yaml")
    cfg.preprocess.phases = ["venous", "arterial"]
    manifest, _ = load_manifest(cfg.manifest_path, cfg.manifest_path.parent)
    venous = manifest[manifest.patient_id == manifest.patient_id.iloc[0]].iloc[0].to_dict()
    arterial = dict(venous, phase="arterial", image_path=venous["image_path"].replace(".nii", "_arterial.nii"))
    shutil.copy(venous["image_path"], arterial["image_path"])
    live: list[weakref.ref] = []
    held = []
    read = pipeline.read_image

    def counting_read(path, **kw):
        held.append(sum(r() is not None for r in live))  # CTs of this patient still alive at this read
        image = read(path, **kw)
        live.append(weakref.ref(image))
        return image

    monkeypatch.setattr(pipeline, "read_image", counting_read)
    res = pipeline.process_patient((cfg, [venous, arterial, dict(venous, lesion_id="node")]))
    assert res["problems"] == [] and res["computed"] == 3
    assert held == [0, 0]  # each CT read once for its instances, and gone before the next is read


def test_cli_scheduler_option(s1_copy):
    from typer.testing import CliRunner

    from gastrorad.cli import app
    runner = CliRunner()
    ok = runner.invoke(app, ["preprocess", str(s1_copy / "study.yaml"), "--scheduler", "serial"])
    assert ok.exit_code == 0, ok.output
    assert "8 patch sets: 8 computed" in ok.output
    bad = runner.invoke(app, ["preprocess", str(s1_copy / "study.yaml"), "--scheduler", "lcoal"])
    assert bad.exit_code == 1 and "compute.scheduler" in bad.output and "Traceback" not in bad.output


def _environment(name: str):
    import os
    return os.environ.get(name)


def test_local_workers_start_without_distributeds_malloc_trim_threshold():
    """distributed's MALLOC_TRIM_THRESHOLD_=65536 switches off glibc's dynamic mmap threshold: a worker
    spent about a third more CPU per patient than this process (bench/scale.py). Thread limits stay."""
    with dask_client(Compute(workers=1)) as client:
        assert list(client.run(_environment, "MALLOC_TRIM_THRESHOLD_").values()) == [None]
        assert list(client.run(_environment, "OMP_NUM_THREADS").values()) == ["1"]


def test_two_overlapping_runs_start_their_clusters_without_a_port_warning():
    """The scheduler's HTTP endpoint used distributed's default port 8787; a second run started while
    another held it printed 'Perhaps you already have a cluster running?' on the user's console."""
    import socket
    import warnings

    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:
        pass  # something already holds it: the situation this test wants
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(Compute(workers=1)) as client:
                assert client.submit(sum, [1, 2]).result() == 3
        assert not [w for w in caught if "port" in str(w.message)], [str(w.message) for w in caught]
    finally:
        holder.close()
