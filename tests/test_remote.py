"""Images on shared or object storage (issue 15, item 2): manifest URLs read through fsspec into a
local cache. A file:// study gives the same patches as plain paths; an s3:// study runs against
moto's local S3 server (skipped, saying why, when moto[server] or s3fs is not installed); the cache
is reused; missing objects and unknown protocols are reported by file, row and column; a truncated
remote file is still refused by the integrity check; concurrent workers share one copy."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gastrorad.config import load_study
from gastrorad.data import validate_study
from gastrorad.errors import InputError
from gastrorad.io import remote
from gastrorad.io.remote import RemoteCache
from gastrorad.preprocess import preprocess_study
from gastrorad.preprocess.cache import file_digest, load_patches


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 4-patient S1 study at half matrix size (read-only)."""
    from gastrorad.synth import synthesize
    out = tmp_path_factory.mktemp("remote") / "study"
    synthesize("s1", out, n=4, seed=3, workers=1, matrix_scale=0.5)
    return out


@pytest.fixture
def downloads(monkeypatch) -> list[int]:
    """Files fetched by the remote cache in this process (preprocess runs with workers=1)."""
    counts: list[int] = []
    real = remote._download

    def counting(fs, pairs):
        counts.append(len(pairs))
        return real(fs, pairs)
    monkeypatch.setattr(remote, "_download", counting)
    return counts


def _study(tiny: Path, out: Path, to_ref, **data):
    """The tiny study with its manifest's image and mask references mapped by ``to_ref`` (a relative path ->
    the reference to write), and its output in ``out``."""
    m = pd.read_csv(tiny / "manifest.csv", dtype=str, keep_default_na=False)
    for col in ("image", "mask"):
        m[col] = [to_ref(v) if v else "" for v in m[col]]
    out.mkdir(parents=True, exist_ok=True)
    m.to_csv(out / "manifest.csv", index=False)
    cfg = load_study(tiny / "study.yaml").model_copy(update={"output": out / "run"}, deep=True)
    cfg.data.manifest = out / "manifest.csv"
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def _manifest_problems(cfg, **kwargs) -> list:
    """The manifest's problems found by validate (the 4-patient study's training cohort has one class, which
    validate reports against the clinical table)."""
    return [p for p in validate_study(cfg, **kwargs).problems if p.file == str(cfg.manifest_path)]


def _patches(result) -> list[tuple]:
    return [(r.key, load_patches(r.path)[0].tobytes()) for r in result.index.itertuples()]


@pytest.fixture(scope="module")
def plain(tiny, tmp_path_factory):
    """Patches of the tiny study read from plain paths: the reference of the URL runs."""
    cfg = _study(tiny, tmp_path_factory.mktemp("plain"), lambda v: str(tiny / v))
    res = preprocess_study(cfg, workers=1, validate=False)
    assert not res.problems and res.computed == 4
    return _patches(res)


def test_file_url_manifest_gives_the_patches_of_plain_paths(tiny, plain, tmp_path, downloads):
    cfg = _study(tiny, tmp_path, lambda v: (tiny / v).as_uri())
    res = preprocess_study(cfg, workers=1, validate=False)
    assert not res.problems
    assert _patches(res) == plain  # same cache keys (the key hashes the cached copy's bytes) and same bytes
    assert sum(downloads) == 8  # an image and a mask per patient
    cached = list((tmp_path / "run" / "cache" / "remote").rglob("*.nii.gz"))
    assert len(cached) == 8 and not list((tmp_path / "run").rglob(".partial.*"))


def test_missing_object_and_unknown_protocol_name_file_row_and_column(tiny, tmp_path):
    cfg = _study(tiny, tmp_path, lambda v: (tiny / v).as_uri())
    m = pd.read_csv(cfg.manifest_path, dtype=str, keep_default_na=False)
    m.loc[0, "image"] = (tiny / "images" / "missing.nii.gz").as_uri()  # row 2
    m.loc[1, "mask"] = "xyz://bucket/mask.nii.gz"  # row 3
    m.loc[2, "image"] = "images/missing.nii.gz"  # row 4: a local path, for the wording
    m.to_csv(cfg.manifest_path, index=False)
    tables = _manifest_problems(cfg, check_images=False)
    assert [(p.row, p.column) for p in tables] == [(3, "mask")]
    assert "unknown storage protocol 'xyz://'" in tables[0].reason
    with_images = _manifest_problems(cfg, workers=1)
    remote_missing = [p for p in with_images if p.row == 2]
    local_missing = [p for p in with_images if p.row == 4]
    assert [p.column for p in remote_missing] == ["image"] == [p.column for p in local_missing]
    assert remote_missing[0].reason.split(" (")[0] == local_missing[0].reason.split(" (")[0] \
        == "file or folder does not exist"
    assert remote_missing[0].reason.endswith("missing.nii.gz)") and remote_missing[0].file == str(cfg.manifest_path)


def test_a_protocol_whose_package_is_missing_names_the_package(tiny, tmp_path):
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed, so gs:// is readable here")
    except ImportError:
        pass
    cfg = _study(tiny, tmp_path, lambda v: f"gs://bucket/{v}")
    problems = _manifest_problems(cfg, check_images=False)
    assert all("gs:// needs gcsfs: pip install gcsfs" in p.reason for p in problems)
    assert sorted((p.row, p.column) for p in problems) == [(r, c) for r in range(2, 6) for c in ("image", "mask")]


def test_truncated_remote_file_is_refused_by_the_integrity_check(tiny, tmp_path):
    data = (tiny / "images" / "P0001_venous.nii.gz").read_bytes()
    short = tmp_path / "store" / "P0001_venous.nii.gz"
    short.parent.mkdir()
    short.write_bytes(data[: len(data) // 2])
    cfg = _study(tiny, tmp_path, lambda v: short.as_uri() if v == "images/P0001_venous.nii.gz" else (tiny / v).as_uri())
    res = preprocess_study(cfg, workers=1, validate=False)
    assert [(p.row, p.column) for p in res.problems] == [(2, "image")]
    assert "truncated" in res.problems[0].reason or "incomplete" in res.problems[0].reason, res.problems[0]
    assert res.computed == 3


def test_dicom_folder_url_is_fetched_whole_with_the_digest_of_the_local_folder(tmp_path, downloads):
    series = tmp_path / "series"
    for rel in ("a.dcm", "b.dcm", "sub/c.dcm"):
        (series / rel).parent.mkdir(parents=True, exist_ok=True)
        (series / rel).write_bytes(rel.encode() * 100)
    cache = RemoteCache(tmp_path / "cache")
    local = cache.local(series.as_uri() + "#1.2.3")
    assert local.endswith("/series#1.2.3") and sum(downloads) == 3
    assert file_digest(local) == file_digest(str(series) + "#1.2.3")
    assert cache.local(series.as_uri() + "#1.2.3") == local and sum(downloads) == 3  # reused, nothing fetched
    (series / "b.dcm").write_bytes(b"changed, and of another size")
    again = cache.local(series.as_uri())
    assert Path(again).parent != Path(local.split("#")[0]).parent and sum(downloads) == 6
    assert not Path(local.split("#")[0]).exists()  # the out-of-date copy was removed
    assert (Path(again) / "b.dcm").read_bytes() == b"changed, and of another size"


def test_workers_caching_one_url_at_once_share_one_intact_copy(tmp_path, monkeypatch):
    src = tmp_path / "ct.nii.gz"
    src.write_bytes(os.urandom(1 << 16))
    real, barrier = remote._download, threading.Barrier(4)

    def together(fs, pairs):  # every worker downloads before any renames: the race the rename must survive
        real(fs, pairs)
        barrier.wait(timeout=10)
    monkeypatch.setattr(remote, "_download", together)
    cache = RemoteCache(tmp_path / "cache")
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: cache.local(src.as_uri()), range(4)))
    assert len(set(paths)) == 1 and Path(paths[0]).read_bytes() == src.read_bytes()
    assert not list((tmp_path / "cache").rglob(".partial.*"))


def test_credentials_are_refused_in_the_study_file(tiny):
    cfg = load_study(tiny / "study.yaml")
    with pytest.raises(ValueError, match="looks like a credential"):
        cfg.data.storage_options = {"s3": {"secret": "abc"}}
    cfg.data.storage_options = {"s3": {"endpoint_url": "http://127.0.0.1:9000"}}
    assert cfg.remote_cache_dir == cfg.output_dir / "cache" / "remote"


def test_predict_keeps_urls_of_the_patients_file(tmp_path):
    from gastrorad.bundle.predict import _absolute
    assert _absolute(tmp_path, "s3://bucket/P1/ct#1.2.3") == "s3://bucket/P1/ct#1.2.3"
    assert _absolute(tmp_path, "ct.nii.gz") == str(tmp_path / "ct.nii.gz")


# --- s3:// against moto's local S3 server -------------------------------------------------------------

@pytest.fixture(scope="module")
def s3():
    """``(endpoint, filesystem)`` of a moto S3 server in a thread of this process, stopped at the end."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install "
                                      "'moto[server]'): the s3:// tests need a local S3-compatible server")
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install s3fs): s3:// cannot be read")
    import fsspec
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
            mp.setenv(k, v)  # moto accepts any credentials; real ones come from the environment just so
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            fs = fsspec.filesystem("s3", endpoint_url=endpoint, skip_instance_cache=True)
            yield endpoint, fs
        finally:
            server.stop()


def test_s3_manifest_gives_the_patches_of_plain_paths_and_reuses_its_cache(tiny, plain, s3, tmp_path, downloads):
    endpoint, fs = s3
    fs.mkdir("study1")
    fs.put(str(tiny / "images"), "study1/images", recursive=True)
    fs.put(str(tiny / "masks"), "study1/masks", recursive=True)
    cfg = _study(tiny, tmp_path, lambda v: f"s3://study1/{v}", storage_options={"s3": {"endpoint_url": endpoint}})

    assert not _manifest_problems(cfg, check_images=False) and sum(downloads) == 0  # nothing fetched
    first = preprocess_study(cfg, workers=1, validate=False)
    assert not first.problems and _patches(first) == plain and sum(downloads) == 8

    again = preprocess_study(cfg, workers=1, validate=False)  # cached copies and patches: no download, no work
    assert (again.cached, again.computed, sum(downloads)) == (4, 0, 8)

    fs.pipe("study1/images/P0002_venous.nii.gz", (tiny / "images" / "P0001_venous.nii.gz").read_bytes())
    changed = preprocess_study(cfg, workers=1, validate=False)  # one object replaced: one download, one instance
    assert (changed.computed, changed.cached, sum(downloads)) == (1, 3, 9)


def test_s3_missing_object_and_truncated_object_are_reported_by_row(tiny, s3, tmp_path):
    endpoint, fs = s3
    fs.mkdir("study2")
    fs.put(str(tiny / "images"), "study2/images", recursive=True)
    fs.put(str(tiny / "masks"), "study2/masks", recursive=True)
    data = (tiny / "images" / "P0003_venous.nii.gz").read_bytes()
    fs.pipe("study2/images/P0003_venous.nii.gz", data[: len(data) // 3])
    fs.rm("study2/masks/P0002_venous_primary.nii.gz")
    cfg = _study(tiny, tmp_path, lambda v: f"s3://study2/{v}", storage_options={"s3": {"endpoint_url": endpoint}})
    res = preprocess_study(cfg, workers=1, validate=False)
    by_row = {p.row: p for p in res.problems}
    assert sorted(by_row) == [3, 4] and res.computed == 2
    assert by_row[3].column == "mask" and "does not exist" in by_row[3].reason
    assert "s3://study2/masks/P0002_venous_primary.nii.gz" in by_row[3].reason
    assert by_row[4].column == "image" and "truncated" in by_row[4].reason
    # the URL, not the cached copy (the retry count follows it)
    assert "(s3://study2/images/P0003_venous.nii.gz)" in by_row[4].reason
    assert str(cfg.remote_cache_dir) not in by_row[4].reason and "failed on 2 attempt(s)" in by_row[4].reason
    with pytest.raises(InputError, match="does not exist"):
        RemoteCache(tmp_path / "c", {"s3": {"endpoint_url": endpoint}}).fingerprint("s3://study2/none.nii.gz")



def test_handcrafted_features_read_urls_through_the_cache(tiny, tmp_path, downloads):
    from gastrorad.radiomics.table import extract_feature_table
    rows = pd.read_csv(tiny / "manifest.csv", dtype=str, keep_default_na=False).head(2)
    plain = extract_feature_table([{**r, "image": str(tiny / r["image"]), "mask": str(tiny / r["mask"])}
                                   for r in rows.to_dict("records")])
    urls = extract_feature_table([{**r, "image": (tiny / r["image"]).as_uri(), "mask": (tiny / r["mask"]).as_uri()}
                                  for r in rows.to_dict("records")], remote=RemoteCache(tmp_path / "cache"))
    assert not urls.problems and sum(downloads) == 4
    pd.testing.assert_frame_equal(urls.table, plain.table)


def test_a_killed_download_leaves_nothing_a_locked_run_keeps(tmp_path):
    from gastrorad.io.lock import remove_stale_temporaries
    partial = tmp_path / "cache" / "remote" / "abc" / ".partial.0123.xyz" / "ct.nii.gz"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")
    remove_stale_temporaries(tmp_path)
    assert not partial.parent.exists() and (tmp_path / "cache" / "remote" / "abc").is_dir()


def test_a_metaimage_header_url_brings_its_data_file(tmp_path, downloads):
    import SimpleITK as sitk
    from gastrorad.io.images import read_image
    img = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    sitk.WriteImage(img, str(tmp_path / "ct.mhd"), useCompression=False)  # ct.mhd + ct.raw
    local = RemoteCache(tmp_path / "cache").local((tmp_path / "ct.mhd").as_uri())
    assert (Path(local).parent / "ct.raw").is_file() and sum(downloads) == 2
    assert np.array_equal(sitk.GetArrayFromImage(read_image(local, canonical=False)), sitk.GetArrayFromImage(img))


def test_run_stage_key_lists_urls_without_downloading(tiny, tmp_path, downloads):
    import shutil
    from gastrorad.runner import _images_fingerprint
    store = tmp_path / "store"
    shutil.copytree(tiny / "images", store / "images")
    shutil.copytree(tiny / "masks", store / "masks")
    cfg = _study(tiny, tmp_path, lambda v: (store / v).as_uri())
    before = _images_fingerprint(cfg)
    assert _images_fingerprint(cfg) == before and sum(downloads) == 0
    (store / "masks" / "P0001_venous_primary.nii.gz").write_bytes(b"replaced")
    assert _images_fingerprint(cfg) != before and sum(downloads) == 0
