"""The ``gastrorad`` command line: a thin layer over the library, one subcommand per stage.

Every stage reads the study file; everything it does is also a Python function
(named in each command's help), so a notebook can do what the CLI does.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from gastrorad import __version__
from gastrorad.errors import InputError, Problem

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="gastrorad: CT deep-learning radiomics for gastric cancer, from one study file to one report.")


def _width(stream) -> int | None:
    """A terminal keeps its own width (and COLUMNS wins); output to a log file or a pipe gets 160
    columns, not rich's 80, which cut the headline table's confidence intervals to '(0.851-0.…'."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return None if tty or os.environ.get("COLUMNS") else 160


console = Console(stderr=False, width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))


_SCHEDULER_HELP = ("Where per-patient work runs: 'local' (a Dask LocalCluster started for the command), 'serial' "
                   "(this process) or a Dask scheduler address such as tcp://host:8786 (default: compute.scheduler).")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False)


def _log_line(msg: str) -> None:
    """A progress line; not wrapped at 80 columns when the output is a file."""
    console.print(msg, highlight=False, soft_wrap=True)


def _print_problems(problems: list[Problem], limit: int = 50) -> None:
    table = Table(title=f"{len(problems)} problem(s)", show_lines=False)
    for col in ("severity", "file", "row", "column", "reason"):
        table.add_column(col, overflow="fold")
    for p in problems[:limit]:
        table.add_row(p.severity, p.file, "" if p.row is None else str(p.row), p.column or "", p.reason)
    err.print(table)
    if len(problems) > limit:
        err.print(f"... and {len(problems) - limit} more (use --json to write them all)")


def _fail(exc: InputError, code: int = 1) -> None:
    _print_problems(exc.problems)
    raise typer.Exit(code)


def _load(study: Path, profile: str | None = None, *, data: Path | None = None, output: Path | None = None):
    """The study file with an optional profile; ``data`` points manifest/clinical/truth at a
    folder (e.g. a `gastrorad synth` output), ``output`` moves the run folder."""
    from gastrorad.config import load_study
    from gastrorad.recipes import find_study_file
    overrides: dict = {}
    if data is not None:
        data = data.resolve()
        overrides["data"] = {"manifest": str(data / "manifest.csv"), "clinical": str(data / "clinical.csv"),
                             "truth": str(data / "truth.csv") if (data / "truth.csv").exists() else None}
    path = find_study_file(study)
    if output is not None:
        overrides["output"] = str(output.resolve())
    elif not Path(study).exists():  # a recipe by name: its run goes under ./runs, never into the installed package
        overrides["output"] = str((Path.cwd() / "runs" / path.stem).resolve())
    cfg = load_study(path, profile=profile, overrides=overrides)
    _output[:] = [cfg.output_dir.resolve()]
    return cfg


def _print_version(value: bool) -> None:
    if value:
        console.print(f"gastrorad {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                       callback=_print_version)) -> None:
    """gastrorad: CT deep-learning radiomics studies from one study file."""


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write the synthetic study into."),
    kind: str = typer.Option("s1", help="s1 binary NACT response | s2 recurrence + OS | s3 longitudinal multi-lesion "
                                        "| s4 binary single-centre (slices) | s5 dual-phase survival."),
    n: int = typer.Option(300, "--n", help="Number of patients."),
    seed: int = typer.Option(0, help="Seed: the same seed writes the same study."),
    dicom: bool = typer.Option(False, help="Also write DICOM series, SEG and RTSTRUCT masks (manifest points to them)."),
    workers: int = typer.Option(2, help="Worker processes."),
    matrix_scale: float = typer.Option(1.0, help="2.0 doubles the in-plane matrix (e.g. 512 instead of 256)."),
    roi: Optional[str] = typer.Option(None, help="ROI masks: slice (largest axial slice only) or volume (whole "
                                                 "tumour). Default: the paper's (s1, s5 slice; s2, s4 volume)."),
) -> None:
    """Make a synthetic study with a known truth.

    Writes images, masks, manifest, clinical and truth tables and a study.yaml.

    Python: gastrorad.synth.synthesize.
    """
    from gastrorad.synth import synthesize
    from gastrorad.synth.cohort import check_synth_args
    try:
        check_synth_args(kind, n, roi)
    except ValueError as exc:  # a usage error, not a crash: no traceback
        raise typer.BadParameter(str(exc)) from None
    with _progress() as prog:
        task = prog.add_task(f"synth {kind}", total=n)
        res = synthesize(kind, out, n=n, seed=seed, dicom=dicom, workers=workers, matrix_scale=matrix_scale,
                         roi=roi, progress=lambda done: prog.update(task, completed=done))
    console.print(f"wrote {res.n_patients} patients, {res.n_images} images in {res.seconds:.1f} s -> {res.folder}")
    console.print(f"study file: {res.study_file}")


@app.command()
def validate(
    study: Path = typer.Argument(..., help="Study file (YAML)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write problems and summary as JSON here."),
    images: bool = typer.Option(True, help="Also open every image and mask (--no-images: tables only)."),
    workers: int = typer.Option(4, help="Threads for image checks."),
) -> None:
    """Check and summarise every input of a study.

    Exits 1 when any error is found.

    Python: gastrorad.data.validate_study.
    """
    from gastrorad.data import validate_study
    cfg = _load(study)
    with err.status("validating ..."):
        report = validate_study(cfg, check_images=images, workers=workers)
    for name, table in report.summary.items():
        t = Table(title=name)
        frame = table.reset_index()
        for col in frame.columns:
            t.add_column(str(col))
        for _, row in frame.iterrows():
            t.add_row(*["" if v is None else str(v) for v in row.tolist()])
        console.print(t)
    if json_out:
        from gastrorad.io.atomic import atomic_write_text
        atomic_write_text(json_out, json.dumps({
            "ok": report.ok, "problems": [p.to_dict() for p in report.problems],
            "summary": {k: json.loads(v.reset_index().to_json(orient="records")) for k, v in report.summary.items()},
        }, indent=2))
    if report.problems:
        _print_problems(report.problems)
    n_err = len(report.errors)
    console.print(f"{'OK' if report.ok else 'FAILED'}: {n_err} error(s), {len(report.problems) - n_err} warning(s)")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def preprocess(
    study: Path = typer.Argument(..., help="Study file (YAML)."),
    workers: Optional[int] = typer.Option(None, help="Dask worker processes (default: compute.workers, else "
                                          "preprocess.workers; 1: in this process)."),
    scheduler: Optional[str] = typer.Option(None, help=_SCHEDULER_HELP),
) -> None:
    """Cut ROI patches for every image (cached).

    ROI-first resampling, in parallel over patients on Dask (the study's compute: section).

    Python: gastrorad.preprocess.preprocess_study.
    """
    from gastrorad.preprocess import preprocess_study
    cfg = _load(study)
    with _progress() as prog:
        task = prog.add_task("preprocess", total=None)
        res = preprocess_study(cfg, workers=workers, scheduler=scheduler,
                               progress=lambda d, t: prog.update(task, completed=d, total=t))
    console.print(f"{len(res.index)} patch sets: {res.computed} computed, {res.cached} from cache, "
                  f"{res.seconds:.1f} s; index {cfg.output_dir / 'patches.csv'}")
    if res.problems:
        _print_problems(res.problems)
        raise typer.Exit(1)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), help="Folder for the synthetic cohort and its run."),
    n: int = typer.Option(200, "--n", help="Patients in the synthetic three-centre S1 cohort."),
    seed: int = typer.Option(0),
    profile: str = typer.Option("fast", help="Profile of the recipe ('fast' on a CPU; 'none' = the paper's)."),
) -> None:
    """Quick-start demo: a synthetic three-centre S1 cohort through the s1_nact_resistance recipe.

    Generates the cohort (reused when it already exists with the same size and seed), runs
    every stage with the recipe's fast profile (validate ... report, bundle), then prints the
    headline table (each model's AUC next to the oracle) and where the report is.
    """
    import json

    from gastrorad.runner import run_study
    from gastrorad.synth import synthesize
    t0 = time.perf_counter()
    cohort = out / "s1_cohort"
    stamp = cohort / "synth.json"
    previous = json.loads(stamp.read_text(encoding="utf-8")) if stamp.exists() else {}
    if previous.get("n") == n and previous.get("seed") == seed and previous.get("kind") == "s1":
        console.print(f"synthetic cohort: reusing {cohort.resolve()}")
    else:
        with _progress() as prog:
            task = prog.add_task(f"synthesising {n} S1 patients", total=n)
            synthesize("s1", cohort, n=n, seed=seed, workers=2, progress=lambda d: prog.update(task, completed=d))
    cfg = _load(Path("s1_nact_resistance"), None if profile == "none" else profile, data=cohort, output=out / "run")
    console.print(f"[bold]gastrorad run s1_nact_resistance[/bold] (profile {cfg.profile}) -> {cfg.output_dir.resolve()}")
    run_study(cfg, log=_log_line)
    _run_summary(cfg, time.perf_counter() - t0)


@app.command()
def train(study: Path = typer.Argument(..., help="Study file (YAML)."),
          phase: Optional[str] = typer.Option(None, help="Phase to train on (default: the first)."),
          progress: bool = typer.Option(True, help="Show the training progress bar (on a terminal; one line per "
                                                   "epoch is printed either way).")) -> None:
    """Train, transfer or distil the deep model.

    Fits on the training cohort only (its validation split or folds pick the checkpoint).

    Python: gastrorad.dl.train.train_model.
    """
    from gastrorad.dl.train import train_model
    cfg = _load(study)
    bar = progress and console.is_terminal
    res = train_model(cfg, phase=phase, progress=bar, log=_log_line)
    console.print(f"trained {len(res.checkpoints)} model(s) in {res.seconds:.1f} s: "
                  + ", ".join(str(p) for p in res.checkpoints))
    for h in res.history:
        console.print(f"  { {k: v for k, v in h.items() if k != 'epochs'} }")


@app.command()
def score(study: Path = typer.Argument(..., help="Study file (YAML)."),
          phase: Optional[str] = typer.Option(None, help="Phase to score (default: the first).")) -> None:
    """Write the DL signature of every patient of every cohort.

    Python: gastrorad.dl.train.score_study.
    """
    from gastrorad.dl.train import score_study
    cfg = _load(study)
    s = score_study(cfg, phase=phase)
    console.print(f"{len(s)} patients scored -> {cfg.output_dir / 'dl_scores.csv'}")
    console.print(s.groupby("cohort")["score"].describe()[["count", "mean", "min", "max"]].to_string())


@app.command(name="extract-features")
def extract_features_cmd(study: Path = typer.Argument(..., help="Study file (YAML)."),
                         checkpoint: Optional[Path] = typer.Option(None, help="Trained model (default: a fresh "
                                                                   "backbone with model.pretrained weights)."),
                         pooling: Optional[str] = typer.Option(None, help="Comma-separated poolings: avg, max, "
                                                               "roi_avg, roi_std, roi_max, roi_p10, roi_p90 (default: "
                                                               "features.pooling).")
                         ) -> None:
    """Deep features per phase, pooled from the last stage or every stage (features section).

    Python: gastrorad.dl.features.extract_features.
    """
    from gastrorad.dl.data import load_sample_table
    from gastrorad.dl.features import extract_features
    from gastrorad.dl.fit import build_feature_network
    from gastrorad.dl.train import load_checkpoint
    cfg = _load(study)
    for phase in cfg.preprocess.phases:
        if checkpoint is not None:
            net = load_checkpoint(checkpoint)
        else:
            s = load_sample_table(cfg, phase)  # a random-initialised extractor is the same for a seed (as `run`)
            net, _ = build_feature_network(cfg, s.channels, s.spatial_dims)
        t = extract_features(cfg, net, phase=phase, pooling=pooling.split(",") if pooling else None)
        console.print(f"{phase}: {len(t)} patients x {t.shape[1] - 2} features -> "
                      f"{cfg.output_dir / f'features_{phase}.csv'}")


@app.command()
def radiomics(study: Path = typer.Argument(..., help="Study file (YAML).")) -> None:
    """Handcrafted radiomics (IBSI first-order, shape, GLCM, GLRLM, GLSZM, GLDM, NGTDM) of each ROI.

    The reference every deep signature is compared with. Python:
    gastrorad.radiomics.study.extract_study_radiomics.
    """
    from gastrorad.radiomics.study import extract_study_radiomics
    cfg = _load(study)
    tables = extract_study_radiomics(cfg, log=lambda line: console.print(line.strip()))
    for phase, t in tables.items():
        console.print(f"{phase}: {len(t)} patients x {t.shape[1] - 2} features -> "
                      f"{cfg.output_dir / f'radiomics_{phase}.csv'}")


@app.command()
def explain(study: Path = typer.Argument(..., help="Study file (YAML)."),
            limit: int = typer.Option(12, help="Patients per cohort."),
            guided: bool = typer.Option(True, help="Guided Grad-CAM (else plain Grad-CAM).")) -> None:
    """Grad-CAM overlays of the trained model.

    Python: gastrorad.dl.explain.explain_study.
    """
    from gastrorad.dl.explain import explain_study
    cfg = _load(study)
    t = explain_study(cfg, limit=limit, guided=guided)
    console.print(f"{len(t)} overlays -> {cfg.output_dir / 'explain'}; mean ROI focus "
                  f"{t.roi_focus.mean():.2f} (map inside ROI / outside)")


@app.command()
def signature(study: Path = typer.Argument(..., help="Study file (YAML).")) -> None:
    """Image signatures: the DL score, or LASSO on deep features.

    Python: gastrorad.models.pipeline.build_signatures.
    """
    from gastrorad.models.pipeline import build_signatures
    cfg = _load(study)
    t = build_signatures(cfg)
    cols = [c for c in t.columns if c not in ("patient_id", "cohort")]
    console.print(f"{len(t)} patients, signatures {cols} -> {cfg.output_dir / 'signatures.csv'}")


@app.command()
def fit(study: Path = typer.Argument(..., help="Study file (YAML).")) -> None:
    """Clinical selection, fusion models, cut-offs, nomogram.

    Fitted on the training cohort, applied to every cohort. Python: gastrorad.models.pipeline.fit_models.
    """
    from gastrorad.models.pipeline import fit_models
    cfg = _load(study)
    res = fit_models(cfg)
    console.print(f"clinical terms kept: {res.selection.get('clinical_terms')}")
    for name, table in res.coefficients.items():
        console.print(f"\n{name} (cut-off {res.cutoffs[name]:.4g}, locked on training)")
        console.print(table.round(4).to_string(index=False))
    console.print(f"\npredictions -> {cfg.output_dir / 'predictions.csv'}")
    if res.nomogram_png:
        console.print(f"nomogram -> {res.nomogram_png}")


@app.command()
def evaluate(study: Path = typer.Argument(..., help="Study file (YAML)."),
             profile: Optional[str] = typer.Option(None, help="Profile of the study file to apply (e.g. fast).")
             ) -> None:
    """Every model on every cohort, cut-offs locked on training: metrics JSON/CSV and figures.

    Python: gastrorad.evaluation.evaluate_study.
    """
    from gastrorad.evaluation import evaluate_study
    cfg = _load(study, profile)
    res = evaluate_study(cfg)
    _print_headline(res.tables["headline"], cfg.outcome.kind)
    console.print(f"metrics -> {cfg.output_dir / 'metrics' / 'metrics.json'} ({res.seconds:.1f} s)")


@app.command()
def report(study: Path = typer.Argument(..., help="Study file (YAML)."),
           profile: Optional[str] = typer.Option(None, help="Profile of the study file to apply.")) -> None:
    """The self-contained HTML report of a run.

    Python: gastrorad.report.build_report.
    """
    from gastrorad.report import build_report
    cfg = _load(study, profile)
    path = build_report(cfg)
    console.print(f"report -> {path.resolve()}")


@app.command()
def run(study: Path = typer.Argument(..., help="Study file (YAML) or recipe."),
        profile: Optional[str] = typer.Option(None, help="Profile of the study file to apply (e.g. fast)."),
        data: Optional[Path] = typer.Option(None, help="Folder with manifest.csv, clinical.csv (and truth.csv) "
                                            "replacing the study file's data paths (e.g. a `gastrorad synth` folder)."),
        output: Optional[Path] = typer.Option(None, help="Run folder (default: the study file's output)."),
        from_stage: Optional[str] = typer.Option(None, "--from", help="Rerun from this stage on."),
        only: Optional[str] = typer.Option(None, help="Run only these stages (comma-separated)."),
        force: bool = typer.Option(False, help="Ignore the cache: rerun every stage."),
        workers: Optional[int] = typer.Option(None, help="Dask worker processes for the per-patient stages "
                                              "(overrides compute.workers; never changes results or the cache)."),
        scheduler: Optional[str] = typer.Option(None, help=_SCHEDULER_HELP),
        ) -> None:
    """Every stage of a study from one file, cached and resumable.

    Stages: validate, preprocess, train, score, extract-features, signature, fit, evaluate,
    explain, report, bundle. A rerun redoes only what changed; a killed run resumes.
    Python: gastrorad.runner.run_study.
    """
    from gastrorad.runner import run_study
    cfg = _load(study, profile, data=data, output=output)
    cfg.compute = cfg.compute.model_copy(update={k: v for k, v in (("workers", workers), ("scheduler", scheduler))
                                                 if v is not None})
    t0 = time.perf_counter()
    console.print(f"[bold]gastrorad run[/bold] {cfg.name}" + (f" (profile {cfg.profile})" if cfg.profile else "")
                  + f" -> {cfg.output_dir.resolve()}")
    run_study(cfg, start=from_stage, only=[s.strip() for s in only.split(",")] if only else None, force=force,
              log=_log_line)
    _run_summary(cfg, time.perf_counter() - t0)


def _run_summary(cfg, seconds: float) -> None:
    import pandas as pd
    head = cfg.output_dir / "metrics" / "headline.csv"
    if head.exists() and head.stat().st_size > 1:
        _print_headline(pd.read_csv(head), cfg.outcome.kind)
    console.print(f"\nDone in {seconds:.0f} s.")
    for label, rel in (("report", "report.html"), ("metrics", "metrics/metrics.json"), ("bundle", "bundle")):
        p = cfg.output_dir / rel
        if p.exists():
            console.print(f"  {label:<8}: {p.resolve()}")


def _print_headline(h, kind: str) -> None:
    """Cohort x model table of AUC / C-index (95% CI) next to the oracle."""
    import pandas as pd

    from gastrorad.stats.table1 import cohort_order
    if h is None or h.empty:
        return
    stat = "AUC" if kind == "binary" else "C-index"
    models = list(dict.fromkeys(h.model))
    table = Table(title=f"Headline: {stat} (95% CI) per cohort" + ("; oracle = the planted true risk"
                                                                  if "oracle" in h.columns else ""))
    for col in ["cohort", "n", *models] + (["oracle"] if "oracle" in h.columns else []):
        table.add_column(str(col))
    for cohort in sorted(pd.unique(h.cohort), key=cohort_order):
        d = h[h.cohort == cohort].set_index("model")
        cells = [f"{d.loc[m, 'auc_or_c']:.3f} ({d.loc[m, 'lower']:.3f}-{d.loc[m, 'upper']:.3f})" if m in d.index
                 else "-" for m in models]
        extra = [f"{d['oracle'].iloc[0]:.3f}"] if "oracle" in h.columns and pd.notna(d["oracle"].iloc[0]) else (
            ["-"] if "oracle" in h.columns else [])
        table.add_row(str(cohort), str(int(d["n"].iloc[0])), *cells, *extra)
    console.print(table)


@app.command()
def predict(bundle: Path = typer.Argument(..., help="Model bundle folder (<run>/bundle)."),
            patients: Path = typer.Argument(..., help="New patients: manifest columns (patient_id, image, mask or "
                                                      "bbox, phase, ...) plus per-patient clinical columns."),
            out: Path = typer.Option(Path("predictions"), help="Output folder."),
            clinical: Optional[Path] = typer.Option(None, help="Clinical table of the new patients (instead of "
                                                    "clinical columns in the patients file)."),
            gradcam: bool = typer.Option(True, help="Draw Grad-CAM overlays."),
            workers: int = typer.Option(1, help="Dask worker processes for patch cutting (1: in this process)."),
            scheduler: Optional[str] = typer.Option(None, help=_SCHEDULER_HELP)) -> None:
    """Apply a locked model bundle to new patients: scores, risk groups, nomogram points, Grad-CAM.

    Python: gastrorad.bundle.predict_patients.
    """
    from gastrorad.bundle import predict_patients
    _output[:] = [out.resolve()]
    res = predict_patients(bundle, patients, out, clinical=clinical, gradcam=gradcam, workers=workers,
                           scheduler=scheduler, log=_log_line)
    p = res.predictions
    console.print(f"{p.patient_id.nunique()} patients scored with {p.model.nunique()} model(s) -> "
                  f"{(res.folder / 'predictions.csv').resolve()}")


_output: list[Path] = []  # the output folder of the running command, named when a write fails without a path

_STORAGE_HINTS = {
    errno.EACCES: "no permission; fix the folder's permissions or choose another output folder",
    errno.EPERM: "operation not permitted; choose another output folder",
    errno.ENOSPC: "the disk is full; free some space or choose an output folder on another disk",
    errno.EDQUOT: "your disk quota is used up; free some space or choose another output folder",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another output folder",
    errno.EEXIST: "a file stands where a folder is needed; choose another output folder",
    errno.EISDIR: "a folder stands where a file is needed",
    errno.ENOENT: "no such file or folder",
}


def storage_message(exc: BaseException) -> str | None:
    """One line naming the path and the reason for a storage fault, or None if ``exc`` is not one.

    Covers OSError (permissions, full disk, a file where a folder is needed) and the
    RuntimeErrors that torch's and ITK's writers raise for the same faults.
    """
    if isinstance(exc, OSError):
        where = exc.filename or (f"the output folder {_output[0]}" if _output else "the output folder")
        hint = _STORAGE_HINTS.get(exc.errno or -1)
        reason = exc.strerror or str(exc)
        return f"cannot write or read {where}: {reason}" + (f" ({hint})" if hint else "")
    text = str(exc)
    if isinstance(exc, RuntimeError) and any(k in text for k in ("PytorchStreamWriter", "No space left",
                                                                  "Could not create IO object", "write failed")):
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
        return f"cannot write a file: {first[:240]} (full disk or no permission? choose another output folder)"
    cause = exc.__cause__ or exc.__context__
    return storage_message(cause) if cause is not None and cause is not exc else None


def _guarded(fn):
    """Run a command so that a bad input or a storage fault ends in one message and exit 1, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            _fail(exc)
        except (OSError, RuntimeError) as exc:
            message = storage_message(exc)
            if message is None:
                raise
            err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper


from gastrorad import cli_init, cli_serve  # noqa: E402  (``gastrorad init`` and ``serve``, in their own modules)

cli_init.register(app)
cli_serve.register(app)

for _info in app.registered_commands:
    _info.callback = _guarded(_info.callback)


def main() -> None:
    try:
        app()
    except InputError as exc:  # anything not caught by a command
        _print_problems(exc.problems)
        sys.exit(1)


if __name__ == "__main__":
    main()
