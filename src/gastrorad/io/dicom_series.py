"""DICOM CT series: find the series in a folder, sort the slices, check their geometry.

Headers are read with pydicom (pixel data deferred: only its length is checked against the
file, so a truncated slice is refused), so a folder can be checked quickly; pixels
are then decoded by SimpleITK/GDCM, which handles compressed transfer syntaxes such as
JPEG 2000 and applies each slice's RescaleSlope/RescaleIntercept to give Hounsfield units.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from gastrorad.errors import InputError, Problem
from gastrorad.io.integrity import check_dicom_slice

# Modalities that are never a CT volume even though they sit in the same folder.
_NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "SR", "PR", "KO", "RTPLAN", "RTDOSE"}


@dataclass
class DicomSeries:
    """One series of a folder: its UID, sorted files and the geometry they define."""

    series_uid: str
    files: list[Path] = field(default_factory=list)
    positions: np.ndarray | None = None  # (n, 3) ImagePositionPatient, sorted
    orientation: tuple[float, ...] = ()
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    rows: int = 0
    columns: int = 0
    description: str = ""

    @property
    def normal(self) -> np.ndarray:
        row, col = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        return np.cross(row, col)

    @property
    def slice_spacing(self) -> float:
        if self.positions is None or len(self.positions) < 2:
            return 1.0
        return float(np.median(np.diff(self.positions @ self.normal)))

    @property
    def direction(self) -> tuple[float, ...]:
        row, col, n = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:]), self.normal
        return tuple(float(v) for v in np.column_stack([row, col, n]).ravel())


def scan_folder(folder: str | Path) -> dict[str, DicomSeries]:
    """Group the image files of ``folder`` (recursively) by SeriesInstanceUID.

    Files that are not DICOM, or DICOM objects without pixels (SEG, RTSTRUCT, reports),
    are skipped. Raises :class:`InputError` when nothing usable is found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(Problem(str(folder), "DICOM series folder does not exist"))
    groups: dict[str, DicomSeries] = {}
    headers: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    unreadable: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.stat().st_size == 0:
            raise InputError(Problem(str(path), "empty file (0 bytes) in a DICOM series folder: a slice that was "
                                     "not copied completely? Copy the series again or remove the file"))
        try:
            # Pixel data deferred: its length and offset are known, its bytes are not read here.
            ds = pydicom.dcmread(path, defer_size=4096)
        except Exception:  # not DICOM: DICOMDIR helpers, notes, thumbnails
            unreadable.append(path.name)
            continue
        if str(ds.get("Modality", "")).upper() in _NON_IMAGE_MODALITIES or "Rows" not in ds:
            continue
        check_dicom_slice(path, ds)
        uid = str(ds.get("SeriesInstanceUID", "unknown"))
        headers[uid].append((path, ds))
    if not headers:
        extra = f" ({len(unreadable)} unreadable files)" if unreadable else ""
        raise InputError(Problem(str(folder), f"no readable DICOM image series in folder{extra}"))
    for uid, items in headers.items():
        groups[uid] = _build_series(folder, uid, items)
    return groups


def select_series(folder: str | Path, series_uid: str | None = None) -> DicomSeries:
    """The series of ``folder`` to read: the one named by ``series_uid``, or the only one.

    A folder with several series and no UID is an error that lists the UIDs, because
    guessing (largest series, first found) silently picks the wrong phase.
    """
    groups = scan_folder(folder)
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(Problem(str(folder), f"SeriesInstanceUID {series_uid} not found; "
                                     f"the folder holds {sorted(groups)}"))
        return groups[series_uid]
    if len(groups) > 1:
        listing = "; ".join(f"{uid} ({len(s.files)} slices{', ' + s.description if s.description else ''})"
                            for uid, s in sorted(groups.items()))
        raise InputError(Problem(str(folder), "the folder holds several series; name one with "
                                 f"'<folder>#<SeriesInstanceUID>': {listing}"))
    return next(iter(groups.values()))


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> sitk.Image:
    """Read one CT series as a float32 HU volume with geometry from its headers."""
    series = select_series(folder, series_uid)
    check_series_geometry(series, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(Problem(str(folder), f"unreadable DICOM pixel data: {str(exc).splitlines()[0][:200]}")) from exc
    image = sitk.Cast(image, sitk.sitkFloat32)
    # Geometry from our own sorted, checked headers (GDCM infers spacing from two slices).
    image.SetOrigin(tuple(float(v) for v in series.positions[0]))
    image.SetSpacing((float(series.pixel_spacing[1]), float(series.pixel_spacing[0]), abs(series.slice_spacing)))
    image.SetDirection(series.direction)
    return image


def check_series_geometry(series: DicomSeries, folder: str | Path, *, rel_tol: float = 0.05) -> None:
    """Refuse a series whose slices do not form one regular grid.

    Checks: one orientation, one pixel spacing and one matrix size for all slices; no two
    slices at the same position; slice positions equally spaced within ``rel_tol`` (a
    missing slice or a gap between two stacks is refused rather than interpolated over).
    """
    problems: list[Problem] = []
    if series.positions is None or len(series.files) < 2:
        problems.append(Problem(str(folder), f"series {series.series_uid} has fewer than 2 slices; a CT volume needs several"))
        raise InputError(problems)
    offsets = series.positions @ series.normal
    steps = np.diff(offsets)
    if np.any(np.abs(steps) < 1e-3):
        k = int(np.argmin(np.abs(steps)))
        problems.append(Problem(str(series.files[k + 1]), "two slices share the same position (duplicate slice?)"))
    else:
        median = float(np.median(steps))
        bad = np.nonzero(np.abs(steps - median) > rel_tol * abs(median))[0]
        if bad.size:
            k = int(bad[0])
            problems.append(Problem(
                str(series.files[k + 1]),
                f"inconsistent slice spacing: {steps[k]:.3f} mm between this slice and the previous one, "
                f"{median:.3f} mm elsewhere (missing slices or a gap in the series)"))
    if problems:
        raise InputError(problems)


def _build_series(folder: Path, uid: str, items: list[tuple[Path, pydicom.Dataset]]) -> DicomSeries:
    problems: list[Problem] = []
    first = items[0][1]
    orientation = tuple(float(v) for v in first.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]))
    spacing = tuple(float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    rows, cols = int(first.Rows), int(first.Columns)
    for path, ds in items[1:]:
        o = tuple(float(v) for v in ds.get("ImageOrientationPatient", orientation))
        if np.max(np.abs(np.subtract(o, orientation))) > 1e-4:
            problems.append(Problem(str(path), "ImageOrientationPatient differs from the series' first slice"))
        s = tuple(float(v) for v in ds.get("PixelSpacing", spacing))
        if np.max(np.abs(np.subtract(s, spacing))) > 1e-4:
            problems.append(Problem(str(path), f"PixelSpacing {s} differs from the series' first slice {spacing}"))
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            problems.append(Problem(str(path), f"matrix {ds.Rows}x{ds.Columns} differs from the series' first slice {rows}x{cols}"))
    missing = [str(p) for p, ds in items if "ImagePositionPatient" not in ds]
    if missing:
        problems.append(Problem(missing[0], "slice has no ImagePositionPatient; cannot place it in the volume"))
    if problems:
        raise InputError(problems)
    series = DicomSeries(series_uid=uid, orientation=orientation, pixel_spacing=spacing, rows=rows, columns=cols,
                         description=str(first.get("SeriesDescription", "")))
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in items])
    order = np.argsort(positions @ series.normal, kind="stable")
    series.files = [items[i][0] for i in order]
    series.positions = positions[order]
    return series
