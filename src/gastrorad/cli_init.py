"""``gastrorad init``: the command; the work is :func:`gastrorad.studyinit.init_study`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
import typer
from rich.table import Table


def init(
    out: Path = typer.Argument(..., help="Study folder to write manifest.csv, clinical.csv, study.yaml into."),
    images: Path = typer.Option(..., help="Folder of CT images: NIfTI/NRRD/MHA/MHD files or DICOM series folders."),
    masks: Path = typer.Option(..., help="Folder of ROI masks: label images, or DICOM SEG/RTSTRUCT."),
    clinical: Path = typer.Option(..., help="Clinical table: .csv, .xlsx (or table.xlsx#Sheet), .parquet."),
    sheet: Optional[str] = typer.Option(None, help="Sheet of an .xlsx table (default: the first)."),
    recipe: str = typer.Option("s1_nact_resistance", help="Recipe the study file starts from (a name in recipes/, "
                                                          "or a study file)."),
    pattern: Optional[str] = typer.Option(None, help="Regex searched in each file's path relative to its folder, "
                                          "extensions stripped (e.g. 'venous/P001_n1_mask'); group 'id' = patient, "
                                          "optional groups 'lesion' and 'phase'. Default: the file name without "
                                          "a _mask/_seg/_label suffix."),
    outcome: Optional[str] = typer.Option(None, help="Outcome column: a 0/1 label, or TIME,EVENT (default: "
                                          "detected)."),
    patient_column: Optional[str] = typer.Option(None, help="Lesion-level study: each lesion its own row, this "
                                                 "column naming its patient (default 'patient', on when a patient "
                                                 "has several lesion masks)."),
    phase_pattern: Optional[str] = typer.Option(None, help="Regex whose group 'phase' (or first group) gives the "
                                                "phase from the path (default: the words arterial, venous, portal, "
                                                "delayed, plain)."),
    force: bool = typer.Option(False, help="Overwrite the files of an earlier init in OUT."),
) -> None:
    """Make a study folder from images, masks and a clinical spreadsheet.

    Pairs images and masks by patient (and phase, lesion), writes manifest.csv, clinical.csv and a
    study.yaml from the recipe with the outcome, cohorts, clinical variables, phases, patch side
    and window read off the data (a comment in the file says why), prints what did not match,
    then validates the study. Exits 1 when validation finds errors.

    Python: gastrorad.studyinit.init_study.
    """
    from gastrorad.cli import _print_problems, console, err
    from gastrorad.studyinit import init_study
    with err.status("reading images, masks and the clinical table ..."):
        res = init_study(out, images, masks, clinical, sheet=sheet, recipe=recipe, pattern=pattern, outcome=outcome,
                         patient_column=patient_column, phase_pattern=phase_pattern, force=force)
    print_result(res, console)
    if res.problems:
        _print_problems(res.problems)
    n_err = sum(p.severity == "error" for p in res.problems)
    console.print(f"{'OK' if res.ok else 'FAILED'}: validate found {n_err} error(s), "
                  f"{len(res.problems) - n_err} warning(s); study file {(res.folder / 'study.yaml')}",
                  highlight=False, soft_wrap=True)
    raise typer.Exit(0 if res.ok else 1)


def print_result(res, console) -> None:
    """The matched counts, the unmatched items, the detected settings and validate's summary."""
    console.print(f"matched {res.pairs} image/mask pair(s): {res.patients} patient(s) with a clinical row"
                  + (f", {res.units} lesion units" if res.lesion_level else "") + f" -> {res.folder}",
                  highlight=False, soft_wrap=True)
    if len(res.unmatched):
        console.print(_table(f"not matched ({len(res.unmatched)}; all in unmatched.csv)", res.unmatched.head(40)))
        if len(res.unmatched) > 40:
            console.print(f"... and {len(res.unmatched) - 40} more in unmatched.csv")
    else:
        console.print("every image, mask and clinical row matched")
    choices = [(c.setting, c.value, c.why) for c in res.choices]
    console.print(_table("detected (written as comments in study.yaml)",
                         pd.DataFrame(choices, columns=["setting", "value", "why"])))
    for w in res.warnings:
        console.print(f"warning: {w}", highlight=False, soft_wrap=True)
    for name in ("patients", "outcome"):
        if name in res.summary:
            console.print(_table(name, res.summary[name].reset_index()))


def _table(title: str, frame: pd.DataFrame) -> Table:
    t = Table(title=title)
    for col in frame.columns:
        t.add_column(str(col), overflow="fold")
    for row in frame.itertuples(index=False):
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def register(app: typer.Typer) -> None:
    app.command(name="init")(init)
