"""``gastrorad run``: every stage of a study in order, cached and resumable.

Each stage has a key: a hash of the study-file sections it reads and of the bytes of the
files it reads (for ``preprocess``, the size and modification time of every image and
mask). When a stage finishes, a stamp ``<output>/.run/<stage>.json`` records its key and
the hashes of the files it wrote. A rerun skips a stage whose key is unchanged and whose
outputs are intact, so a changed parameter redoes exactly the stages downstream of it, and a
killed run resumes at the stage it was in (files are written atomically, so nothing is
half-written; the patch cache keeps every patch already cut).

The run folder (SPEC section 3)::

    config.resolved.yaml   the study file with every default filled in (and the profile applied)
    versions.json          software versions;  run.json: seed, profile, stages run and their times
    patches.csv, cache/    patch index and per-instance patch cache
    models/                checkpoints, models.json, fit.json, coefficients, nomogram points
    dl_scores.csv, features_<phase>.csv, radiomics_<phase>.csv, signatures.csv, predictions.csv
    metrics/               metrics.json and one CSV per table
    figures/               PNG + SVG
    explain/               Grad-CAM overlays
    report.html            the report
    bundle/                the locked model for ``gastrorad predict``
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from gastrorad.config.study import StudyConfig
from gastrorad.errors import InputError, Problem, StatisticsWarning
from gastrorad.io.atomic import atomic_write_text
from gastrorad.io.hashing import code_hash, file_hash
from gastrorad.io.lock import run_folder_lock


@dataclass
class Stage:
    name: str
    run: Callable[[StudyConfig], object]
    sections: tuple[str, ...]  # dotted study-file paths the stage reads
    inputs: Callable[[StudyConfig], list[Path]]
    outputs: Callable[[StudyConfig], list[Path]]
    enabled: Callable[[StudyConfig], bool] = lambda cfg: True


def _section(cfg: StudyConfig, dotted: str):
    """A study-file section as the stage key sees it: without worker counts, which change where
    the work runs, never its results (like the ``compute:`` section, which no stage reads)."""
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", exclude={"workers"} if "workers" in type(obj).model_fields else None)
    return str(obj) if isinstance(obj, Path) else obj


def _images_fingerprint(cfg: StudyConfig) -> str:
    """Size and mtime of every image and mask the manifest names (folders: of their files); for a URL,
    what its storage reports (size, ETag, mtime: one listing, no download)."""
    from gastrorad.data.tables import load_manifest, remote_cache
    from gastrorad.io.remote import is_url
    manifest, _ = load_manifest(cfg.manifest_path, cfg.manifest_path.parent)
    remote = remote_cache(cfg)
    h = hashlib.sha256()
    for ref in sorted(set(manifest.get("image_path", [])) | set(manifest.get("mask_path", [])) - {""}):
        if is_url(ref):
            try:
                h.update(f"{ref}|{remote.fingerprint(ref)}\n".encode())
            except InputError:
                h.update(f"{ref}|<missing>\n".encode())  # reported by the stage itself, with its row
            continue
        p = Path(str(ref).partition("#")[0])
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                st = f.stat()
                h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def stage_key(stage: Stage, cfg: StudyConfig) -> str:
    from gastrorad import __version__
    h = hashlib.sha256()
    # The package's code, not only its version: a developer install that changes code reruns stages.
    h.update(f"{stage.name}|gastrorad {__version__}|code {code_hash()}".encode())
    h.update(json.dumps({s: _section(cfg, s) for s in stage.sections}, sort_keys=True, default=str).encode())
    from gastrorad.data.tables import split_sheet
    for p in stage.inputs(cfg):
        p = split_sheet(p)[0] if p is not None else p  # clinical.xlsx#Sheet: the workbook's bytes
        h.update(str(p.name).encode())
        h.update(file_hash(p).encode() if p.is_file() else b"<missing>")
    if stage.name == "preprocess":
        h.update(_images_fingerprint(cfg).encode())
    return h.hexdigest()


def _stamp_path(cfg: StudyConfig, name: str) -> Path:
    return cfg.output_dir / ".run" / f"{name}.json"


def is_fresh(stage: Stage, cfg: StudyConfig, key: str) -> bool:
    path = _stamp_path(cfg, stage.name)
    if not path.exists():
        return False
    stamp = json.loads(path.read_text(encoding="utf-8"))
    if stamp.get("key") != key:
        return False
    for rel, digest in stamp.get("outputs", {}).items():
        p = cfg.output_dir / rel
        if not p.is_file() or file_hash(p) != digest:
            return False
    return True


@contextlib.contextmanager
def recording_statistics_warnings():
    """Collect the :class:`~gastrorad.errors.StatisticsWarning` s raised inside the block (R's
    warnings: no convergence, separation, a test that cannot be computed) as a list of
    ``{"message", "count"}``, identical messages counted once; other warnings pass through."""
    caught: list[dict] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always", StatisticsWarning)
        yield caught
    counts: dict[str, int] = {}
    for r in records:
        if issubclass(r.category, StatisticsWarning):
            counts[str(r.message)] = counts.get(str(r.message), 0) + 1
        else:  # not ours to record: shown as Python would have shown it
            warnings.warn_explicit(r.message, r.category, r.filename, r.lineno)
    caught.extend({"message": m, "count": n} for m, n in counts.items())


def _write_stamp(cfg: StudyConfig, stage: Stage, key: str, seconds: float, caught: list[dict] | None = None) -> None:
    outputs = {}
    for p in stage.outputs(cfg):
        if p.is_file():
            outputs[str(p.relative_to(cfg.output_dir))] = file_hash(p)
    atomic_write_text(_stamp_path(cfg, stage.name), json.dumps({"stage": stage.name, "key": key, "seconds": seconds,
                                                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                                "outputs": outputs, "warnings": caught or []},
                                                               indent=2))


# -- the stages ------------------------------------------------------------------------------------------------
def _dl(cfg: StudyConfig) -> bool:
    return cfg.has_images and (cfg.signature.method == "dl_probability" or cfg.longitudinal is not None)


def _images(cfg: StudyConfig) -> bool:
    return cfg.has_images


def _longitudinal(cfg: StudyConfig) -> bool:
    return cfg.longitudinal is not None


def _hcr(cfg: StudyConfig) -> bool:
    from gastrorad.radiomics.study import radiomics_enabled
    return radiomics_enabled(cfg)


def _radiomics_paths(cfg: StudyConfig, readers: bool = False) -> list[Path]:
    from gastrorad.radiomics.study import radiomics_paths, radiomics_reader_paths, radiomics_settings_path
    return radiomics_paths(cfg) + ([*radiomics_reader_paths(cfg), radiomics_settings_path(cfg)] if readers else [])


def _models_json(cfg):
    return cfg.output_dir / "models" / ("longitudinal.json" if _longitudinal(cfg) else "models.json")


def _checkpoints(cfg: StudyConfig) -> list[Path]:
    p = _models_json(cfg)
    if not p.exists():
        return []
    meta = json.loads(p.read_text(encoding="utf-8"))
    if _longitudinal(cfg):
        return [Path(c) for paths in meta.values() for c in paths]
    return [Path(c) for c in meta["checkpoints"]]


def _validate(cfg):
    from gastrorad.data import validate_study
    rep = validate_study(cfg)
    rep.raise_if_errors()
    warned = [p for p in rep.problems if p.severity == "warning"]
    for p in warned[:10]:  # e.g. too few events per variable, ROIs that do not suit the patch side
        _printer(f"    validate: {p}")
    if len(warned) > 10:
        _printer(f"    validate: {len(warned) - 10} more warning(s) in validation.json")
    atomic_write_text(cfg.output_dir / "validation.json",
                      json.dumps({"ok": rep.ok, "problems": [p.__dict__ for p in rep.problems]}, indent=2, default=str))


def _preprocess(cfg):
    from gastrorad.preprocess import preprocess_study
    res = preprocess_study(cfg, validate=False, progress=_progress_printer("preprocess"))
    if res.problems:
        raise InputError(res.problems)


def _train(cfg):
    if _longitudinal(cfg):
        from gastrorad.dl.longitudinal.train import train_longitudinal
        train_longitudinal(cfg)
        return
    from gastrorad.dl.train import train_model
    train_model(cfg, progress=False, log=_printer)  # one line per epoch, also in a log file


def _score(cfg):
    if _longitudinal(cfg):
        from gastrorad.dl.longitudinal.train import score_longitudinal
        score_longitudinal(cfg)
        return
    from gastrorad.dl.train import score_study
    score_study(cfg)


def _features(cfg):
    from gastrorad.dl.data import load_sample_table
    from gastrorad.dl.features import extract_features
    from gastrorad.dl.fit import build_feature_network
    from gastrorad.dl.train import save_checkpoint
    s = load_sample_table(cfg, cfg.preprocess.phases[0])
    net, in_channels = build_feature_network(cfg, s.channels, s.spatial_dims)
    # the extractor is saved so the bundle applies exactly these weights to new patients
    save_checkpoint(cfg.output_dir / "models" / "feature_extractor.pt", net, channels=in_channels,
                    spatial_dims=s.spatial_dims, cfg=cfg, backbone=net.name, history=[])
    from gastrorad.dl.features import extract_reader_features
    for phase in cfg.preprocess.phases:
        extract_features(cfg, net, phase=phase, progress=_progress_printer(f"features {phase}"))
        extract_reader_features(cfg, net, phase=phase)  # re-segmentations, for the ICC filter


def _radiomics(cfg):
    from gastrorad.radiomics.study import extract_study_radiomics
    extract_study_radiomics(cfg, progress=_progress_printer("radiomics"), log=_printer)


def _signature(cfg):
    from gastrorad.models.pipeline import build_signatures
    build_signatures(cfg, log=_printer)


def _fit(cfg):
    from gastrorad.models.pipeline import fit_models
    fit_models(cfg)


def _evaluate(cfg):
    from gastrorad.evaluation import evaluate_study
    evaluate_study(cfg)


def _explain(cfg):
    if _longitudinal(cfg):
        from gastrorad.dl.longitudinal.explain import explain_longitudinal
        explain_longitudinal(cfg, limit=cfg.report.gradcam)
        return
    from gastrorad.dl.explain import explain_study
    explain_study(cfg, limit=cfg.report.gradcam)


def _report(cfg):
    from gastrorad.report import build_report
    build_report(cfg)


def _bundle(cfg):
    from gastrorad.bundle import export_bundle
    export_bundle(cfg)


def _out(*names):
    return lambda cfg: [cfg.output_dir / n for n in names]


_DATA = ("data", "outcome", "cohorts", "clinical.variables", "clinical.categorical", "preprocess.phases", "seed",
         "harmonize")
_PRE = ("preprocess.spacing", "preprocess.interpolation", "preprocess.window", "preprocess.windows_by_site",
        "preprocess.normalize", "preprocess.patch", "preprocess.phases", "preprocess.cache_dir")
_MODEL = ("model", "augment", "training", "seed", "outcome", "cohorts", "longitudinal")

STAGES: list[Stage] = [
    Stage("validate", _validate, _DATA, lambda c: [p for p in (c.manifest_path, c.clinical_path) if p],
          _out("validation.json")),
    Stage("preprocess", _preprocess, _PRE, lambda c: [c.manifest_path], _out("patches.csv"), _images),
    Stage("train", _train, _MODEL, lambda c: [c.output_dir / "patches.csv", c.clinical_path],
          lambda c: [_models_json(c), *_checkpoints(c)], _dl),
    Stage("score", _score, ("training.aggregate", "training.top_k", "augment", "longitudinal"),
          lambda c: [c.output_dir / "patches.csv", c.clinical_path, _models_json(c), *_checkpoints(c)],
          _out("dl_scores.csv"), _dl),
    Stage("extract-features", _features, ("model", "training.pooling", "features", "seed"),
          lambda c: [c.output_dir / "patches.csv", c.clinical_path],
          lambda c: [c.output_dir / f"features_{p}.csv" for p in c.preprocess.phases]
          + [c.output_dir / "models" / "feature_extractor.pt"], lambda c: _images(c) and not _dl(c)),
    Stage("radiomics", _radiomics, ("radiomics", "preprocess.spacing", "preprocess.interpolation", "preprocess.window",
                                    "preprocess.phases", "data", "cohorts"),
          lambda c: [c.manifest_path, c.clinical_path], lambda c: _radiomics_paths(c, readers=True),
          lambda c: _hcr(c)),
    Stage("signature", _signature, ("signature", "radiomics", "harmonize", "clinical.categorical", "seed", "outcome",
                                    "cohorts", "longitudinal"),
          lambda c: [c.clinical_path] if not _images(c) else ([c.output_dir / "dl_scores.csv"] if _dl(c) else
                     [c.output_dir / f"features_{p}{r}.csv" for p in c.preprocess.phases for r in ("", "_readers")]
                     + [c.resolve(v) for v in c.signature.icc_features.values()]) + [c.clinical_path]
          + (_radiomics_paths(c, readers=True) if _hcr(c) else [])
          + ([c.manifest_path] if _longitudinal(c) else []),
          _out("signatures.csv", "signatures.json", "harmonize.json", "centre_effects.csv")),
    Stage("fit", _fit, ("clinical", "fusion", "outcome", "cohorts", "seed", "evaluation.horizons"),
          lambda c: [c.output_dir / "signatures.csv", c.clinical_path],
          _out("predictions.csv", "models/fit.json")),
    Stage("evaluate", _evaluate, ("evaluation", "fusion", "report.readers", "outcome", "seed"),
          lambda c: [c.output_dir / "predictions.csv", c.output_dir / "models" / "fit.json",
                     c.output_dir / "signatures.csv", c.clinical_path]
          + ([c.resolve(c.data.truth)] if c.data.truth else []),
          _out("metrics/metrics.json", "metrics/performance.csv", "metrics/headline.csv")),
    Stage("explain", _explain, ("report.gradcam",), lambda c: [_models_json(c), *_checkpoints(c),
                                                               c.output_dir / "patches.csv"],
          _out("explain/gradcam.csv"), lambda c: _dl(c) and c.report.gradcam > 0),
    Stage("report", _report, ("report", "name", "harmonize"),
          lambda c: [c.output_dir / "metrics" / "metrics.json", c.output_dir / "models" / "fit.json",
                     c.output_dir / "signatures.json", c.output_dir / "centre_effects.csv"]
          + ([c.output_dir / "explain" / "gradcam.csv"] if _dl(c) and c.report.gradcam > 0 else [])
          + sorted((c.output_dir / "figures").glob("*.png")) + sorted((c.output_dir / "explain").rglob("*.png")),
          _out("report.html")),
    Stage("bundle", _bundle, ("preprocess", "model", "training", "features", "signature", "fusion", "outcome", "clinical",
                              "longitudinal", "harmonize"),
          lambda c: [c.output_dir / "models" / "fit.json", c.output_dir / "signatures.json",
                     c.output_dir / "harmonize.json"]
          + (_checkpoints(c) if _dl(c) else [c.output_dir / "models" / "feature_extractor.pt"] if _images(c) else []),
          _out("bundle/bundle.json")),
]
STAGE_NAMES = [s.name for s in STAGES]

_printer: Callable[[str], None] = print


def _progress_printer(name: str):
    last = [0.0]

    def show(done, total):
        now = time.perf_counter()
        if done == total or now - last[0] > 5:
            last[0] = now
            _printer(f"    {name}: {done}/{total} patients")
    return show


def write_run_metadata(cfg: StudyConfig) -> None:
    from gastrorad.report.versions import software_versions
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    resolved = cfg.model_dump(mode="json")
    header = (f"# Resolved study file of '{cfg.name}' (every default filled in"
              + (f", profile '{cfg.profile}' applied" if cfg.profile else "") + ").\n")
    atomic_write_text(out / "config.resolved.yaml", header + yaml.safe_dump(resolved, sort_keys=False))
    atomic_write_text(out / "versions.json", json.dumps(software_versions(), indent=2))


def run_study(cfg: StudyConfig, *, start: str | None = None, only: list[str] | None = None,
              force: bool = False, log: Callable[[str], None] = print) -> dict[str, str]:
    """Run the enabled stages in order; returns stage -> "ran" / "cached" / "skipped".

    ``start``: rerun from this stage on (earlier stages are taken from the cache if fresh,
    else run); ``only``: run just these stages (forced); ``force``: ignore every stamp.
    """
    global _printer
    _printer = log
    for name in [start, *(only or [])]:
        if name is not None and name not in STAGE_NAMES:
            raise InputError(Problem("command line", f"unknown stage '{name}' (stages: {', '.join(STAGE_NAMES)})"))
    status: dict[str, str] = {}
    with run_folder_lock(cfg.output_dir):  # one writer per run folder; clears a killed run's temporaries
        _run_stages(cfg, start, only, force, log, status)
    return status


def _run_stages(cfg: StudyConfig, start, only, force, log, status: dict[str, str]) -> None:
    """The body of :func:`run_study`, run while holding the run folder's lock; fills ``status``."""
    write_run_metadata(cfg)
    times: dict[str, float] = {}
    forced_from = STAGE_NAMES.index(start) if start else len(STAGE_NAMES)
    t_all = time.perf_counter()
    try:
        for i, stage in enumerate(STAGES):
            if only and stage.name not in only:
                continue
            if not stage.enabled(cfg):
                status[stage.name] = "skipped"
                continue
            key = stage_key(stage, cfg)
            forced = force or bool(only) or i >= forced_from
            if not forced and is_fresh(stage, cfg, key):
                status[stage.name] = "cached"
                log(f"  {stage.name:<17} cached")
                continue
            log(f"  {stage.name:<17} running ...")
            status[stage.name] = "failed"
            t0 = time.perf_counter()
            with recording_statistics_warnings() as caught:
                stage.run(cfg)
            seconds = time.perf_counter() - t0
            for w in caught:
                log(f"  {stage.name:<17} warning: {w['message']}" + (f" (x{w['count']})" if w["count"] > 1 else ""))
            _write_stamp(cfg, stage, key, seconds, caught)
            status[stage.name] = "ran"
            times[stage.name] = round(seconds, 2)
            log(f"  {stage.name:<17} done in {seconds:.1f} s")
    finally:
        run_json = cfg.output_dir / "run.json"
        previous = json.loads(run_json.read_text(encoding="utf-8")) if run_json.exists() else {}
        history = previous.get("history", []) + [{"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": status,
                                                  "seconds": times,
                                                  "total_seconds": round(time.perf_counter() - t_all, 2)}]
        atomic_write_text(run_json, json.dumps({"study": cfg.name, "seed": cfg.seed, "profile": cfg.profile,
                                                "stages": STAGE_NAMES, "history": history}, indent=2))

