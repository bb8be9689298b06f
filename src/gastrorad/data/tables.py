"""Reading the image manifest and the clinical table (CSV or Parquet).

Both loaders return the table with normalised columns plus the list of problems found,
so :func:`gastrorad.data.validate.validate_study` can report everything at once. Row
numbers in problems are spreadsheet rows (header = row 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gastrorad.errors import InputError, Problem
from gastrorad.io.remote import RemoteCache

if TYPE_CHECKING:
    from gastrorad.config.study import StudyConfig

#: Manifest columns: required, then optional with their defaults.
MANIFEST_REQUIRED = ("patient_id", "image")
MANIFEST_OPTIONAL = {
    "mask": "", "bbox": "", "phase": "venous", "timepoint": 0, "lesion_id": "primary", "lesion_site": "",
    "reader": "", "diameter_mm": np.nan,
}
CLINICAL_REQUIRED = ("patient_id",)  # "center" too when the cohort rules name centres


def sheet_row(index: int) -> int:
    """Spreadsheet row of the 0-based data row ``index`` (header = row 1)."""
    return int(index) + 2


#: Spreadsheet suffixes read through openpyxl (.xlsx, .xlsm) or xlrd (.xls).
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls")
_CSV_DTYPES = {"patient_id": str, "center": str, "cohort": str}


def split_sheet(path: str | Path, sheet: str | None = None) -> tuple[Path, str | None]:
    """``clinical.xlsx#Follow-up`` -> (``clinical.xlsx``, ``Follow-up``); other paths unchanged.

    The ``#`` is only a sheet selector after a spreadsheet suffix, and only when no file has the
    whole name; an explicit ``sheet`` wins over it."""
    text = str(path)
    head, sep, tail = text.rpartition("#")
    if sep and head.lower().endswith(EXCEL_SUFFIXES) and not Path(text).exists():
        return Path(head), sheet if sheet is not None else tail
    return Path(text), sheet


def read_table(path: str | Path, sheet: str | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or Excel table with ``patient_id`` (and ``center``) as strings.

    Excel: the first sheet, or ``sheet`` (also written ``table.xlsx#Sheet``); the header must be
    on row 1 and blank rows are kept, so :func:`sheet_row` names the row the spreadsheet shows.
    """
    path, sheet = split_sheet(path, sheet)
    if not path.exists():
        raise InputError(Problem(str(path), "table does not exist"))
    if sheet is not None and path.suffix.lower() not in EXCEL_SUFFIXES:
        raise InputError(Problem(str(path), f"a sheet ('{sheet}') was named, but this is not a workbook (.xlsx)"))
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt", ".tsv"):
            df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                             dtype=_CSV_DTYPES, keep_default_na=True)
        elif path.suffix.lower() in EXCEL_SUFFIXES:
            df = _read_excel(path, sheet)
        else:
            raise InputError(Problem(str(path), f"unknown table format '{path.suffix}'; use .csv, .parquet or .xlsx"))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(Problem(str(path), f"unreadable table: {exc}")) from exc
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
            if sep in df.columns[0]:
                raise InputError(Problem(str(path), f"the columns seem to be separated by {name} ('{sep}' in the "
                                         f"header '{df.columns[0][:60]}'); gastrorad reads comma-separated .csv or "
                                         "tab-separated .tsv: save the table as 'CSV UTF-8 (comma delimited)'",
                                         row=1))
    for col in ("patient_id", "center", "cohort"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: v if pd.isna(v) else str(v).strip())
    return df


def _read_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    """One sheet of a workbook, typed as the same table saved as CSV would be."""
    import csv
    import datetime as dt
    import io
    where = f"{path}#{sheet}" if sheet else str(path)
    rows = _excel_rows(path, sheet, where)
    while rows and all(_blank(v) for v in rows[-1]):
        rows.pop()  # trailing blank rows are not patients
    if not rows or all(_blank(v) for v in rows[0]):
        first = next((i + 1 for i, r in enumerate(rows) if not all(_blank(v) for v in r)), None)
        hint = f"; the first filled row is {first}: delete the rows above it" if first else "; the sheet is empty"
        raise InputError(Problem(where, "the header (column names) must be on row 1" + hint, row=1))
    width = max((i + 1 for r in rows for i, v in enumerate(r) if not _blank(v)), default=0)

    def text(v):
        if _blank(v):
            return ""
        if isinstance(v, dt.datetime):
            return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat(sep=" ")
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, float) and v.is_integer():
            return str(int(v))  # an ID typed as a number (1001.0) reads as 1001
        return str(v)

    buf = io.StringIO()
    writer = csv.writer(buf)
    header = [text(v) or f"Unnamed: {i}" for i, v in enumerate(list(rows[0]) + [None] * width)][:width]
    writer.writerow(header)
    for r in rows[1:]:
        writer.writerow([text(v) for v in (list(r) + [None] * width)[:width]])
    buf.seek(0)
    return pd.read_csv(buf, dtype=_CSV_DTYPES, keep_default_na=True, skip_blank_lines=False)


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _excel_rows(path: Path, sheet: str | None, where: str) -> list[tuple]:
    """Cell values of a sheet, row 1 first, blank rows included."""
    if path.suffix.lower() == ".xls":
        try:
            import xlrd
        except ImportError:
            raise InputError(Problem(str(path), "reading .xls (Excel 97-2003) needs xlrd: pip install xlrd, "
                                     "or save the workbook as .xlsx")) from None
        book = xlrd.open_workbook(str(path))
        names = book.sheet_names()
        if sheet is not None and sheet not in names:
            raise InputError(Problem(where, f"no sheet '{sheet}' in the workbook (sheets: {', '.join(names)})"))
        ws = book.sheet_by_name(sheet) if sheet is not None else book.sheet_by_index(0)
        return [tuple(_xls_value(c, book.datemode) for c in ws.row(i)) for i in range(ws.nrows)]
    try:
        import openpyxl
    except ImportError:
        raise InputError(Problem(str(path), "reading .xlsx needs openpyxl: pip install openpyxl "
                                 "(or save the sheet as CSV)")) from None
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        names = book.sheetnames
        if sheet is not None and sheet not in names:
            raise InputError(Problem(where, f"no sheet '{sheet}' in the workbook (sheets: {', '.join(names)})"))
        ws = book[sheet] if sheet is not None else book[names[0]]
        return [tuple(r) for r in ws.iter_rows(min_row=1, values_only=True)]
    finally:
        book.close()


def _xls_value(cell, datemode: int):
    import xlrd
    if cell.ctype == xlrd.XL_CELL_DATE:
        return xlrd.xldate.xldate_as_datetime(cell.value, datemode)
    return None if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK) else cell.value


def load_manifest(path: str | Path, base_dir: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Read the manifest, fill optional columns with their defaults, resolve paths.

    Adds ``image_path`` and ``mask_path`` (absolute) beside the columns as written, and
    ``row`` (spreadsheet row) for error messages downstream.
    """
    path, base_dir = Path(path), Path(base_dir)
    df = read_table(path)
    problems: list[Problem] = []
    for col in MANIFEST_REQUIRED:
        if col not in df.columns:
            problems.append(Problem(str(path), "required column is missing", column=col))
    allowed = set(MANIFEST_REQUIRED) | set(MANIFEST_OPTIONAL) | {"cohort"}
    for col in df.columns:
        if col not in allowed:
            problems.append(Problem(str(path), "unknown column (manifest columns: "
                                    + ", ".join(sorted(allowed)) + ")", column=col))
    if any(p.reason == "required column is missing" for p in problems):
        return df, problems
    for col, default in MANIFEST_OPTIONAL.items():
        if col not in df.columns:
            df[col] = default
    for col in ("mask", "bbox", "phase", "lesion_id", "lesion_site", "reader", "image"):
        df[col] = df[col].map(lambda v: "" if pd.isna(v) else str(v).strip())
    df["phase"] = df["phase"].replace("", "venous")
    df["lesion_id"] = df["lesion_id"].replace("", "primary")
    df["row"] = [sheet_row(i) for i in range(len(df))]
    tp = pd.to_numeric(df["timepoint"], errors="coerce")
    for i in np.nonzero((tp.isna() & df["timepoint"].notna()) | (tp < 0) | (tp % 1 != 0))[0]:
        problems.append(Problem(str(path), f"timepoint '{df['timepoint'].iloc[i]}' is not a non-negative integer",
                                row=sheet_row(i), column="timepoint"))
    df["timepoint"] = tp.fillna(0).astype(int)
    for i, pid in enumerate(df["patient_id"]):
        if pd.isna(pid) or pid == "":
            problems.append(Problem(str(path), "empty patient_id", row=sheet_row(i), column="patient_id"))
    for col in ("patient_id", "lesion_id", "phase", "reader"):
        problems += _unsafe_ids(path, df, col)
    df["image_path"] = [resolve_reference(base_dir, v) for v in df["image"]]
    df["mask_path"] = [resolve_reference(base_dir, v) if v else "" for v in df["mask"]]
    problems += _url_problems(path, df)
    return df, problems


def _url_problems(path: Path, df: pd.DataFrame) -> list[Problem]:
    """A problem per URL whose protocol is unknown or needs a package that is not installed (no download)."""
    from gastrorad.io.remote import is_url, protocol_problem
    out = []
    for col in ("image", "mask"):
        for i, v in enumerate(df[col]):
            reason = protocol_problem(v) if is_url(v) else None
            if reason:
                out.append(Problem(str(path), f"{reason} ({v})", row=sheet_row(i), column=col))
    return out


def _unsafe_ids(path: Path, df: pd.DataFrame, col: str) -> list[Problem]:
    """A problem per non-empty value of ``col`` that cannot be part of a file name."""
    from gastrorad.io.safe_paths import id_problem
    out = []
    for i, v in enumerate(df[col]):
        if pd.isna(v) or v == "":
            continue
        reason = id_problem(v)
        if reason:
            out.append(Problem(str(path), f"{col} {str(v)[:40]!r} {reason}", row=sheet_row(i), column=col))
    return out


def resolve_reference(base: Path, ref: str) -> str:
    """Resolve a path (keeping a '#selector' suffix) against the study folder; URLs (``s3://...``,
    ``file://...``) are kept as written and read through :class:`gastrorad.io.remote.RemoteCache`."""
    from gastrorad.io.remote import is_url
    if not ref:
        return ""
    if is_url(ref):
        return ref
    head, sep, tail = ref.partition("#")
    p = Path(head)
    p = p if p.is_absolute() else base / p
    return str(p) + (sep + tail if sep else "")


def remote_cache(cfg: "StudyConfig") -> RemoteCache:
    """The study's cache of images and masks given as URLs (``data.remote_cache``, ``data.storage_options``)."""
    return RemoteCache(cfg.remote_cache_dir, cfg.data.storage_options)


def local_row(row: dict, remote: RemoteCache) -> dict:
    """A manifest row whose ``image_path`` and ``mask_path`` are local files: URLs are fetched into
    ``remote`` (an unchanged cached copy is reused), plain paths are kept."""
    return {**row, "image_path": remote.local(row["image_path"], column="image"),
            "mask_path": remote.local(row["mask_path"], column="mask")}


def load_clinical(path: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Read the clinical table; check required columns and duplicated patients."""
    path = Path(path)
    df = read_table(path)
    problems: list[Problem] = []
    for col in CLINICAL_REQUIRED:
        if col not in df.columns:
            problems.append(Problem(str(path), "required column is missing", column=col))
    if "patient_id" in df.columns:
        seen: dict[str, int] = {}
        for i, pid in enumerate(df["patient_id"]):
            if pd.isna(pid) or pid == "":
                problems.append(Problem(str(path), "empty patient_id", row=sheet_row(i), column="patient_id"))
                continue
            if pid in seen:
                problems.append(Problem(str(path), f"duplicated patient '{pid}' (first at row {seen[pid]})",
                                        row=sheet_row(i), column="patient_id"))
            else:
                seen[pid] = sheet_row(i)
        problems += _unsafe_ids(path, df, "patient_id")
    if "center" in df.columns:
        for i in np.nonzero(df["center"].isna().to_numpy())[0]:
            problems.append(Problem(str(path), "missing centre", row=sheet_row(i), column="center"))
    df["row"] = [sheet_row(i) for i in range(len(df))]
    return df, problems
