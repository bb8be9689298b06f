"""Reading CT volumes: NIfTI, NRRD, MHA/MHD and DICOM series folders, all to LPS float32 HU.

An image reference is a path: a file, a DICOM series folder, or ``folder#SeriesInstanceUID``
to pick one series from a folder that holds several.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from gastrorad.errors import InputError, Problem
from gastrorad.io.atomic import atomic_write
from gastrorad.io.dicom_series import check_series_geometry, read_dicom_series, select_series
from gastrorad.io.geometry import Geometry, canonical_geometry, to_canonical
from gastrorad.io.integrity import check_image_file, is_nifti2, read_nifti2

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def split_reference(ref: str | Path) -> tuple[Path, str | None]:
    """Split ``folder#UID`` into the folder and the SeriesInstanceUID (or ``None``)."""
    text = str(ref)
    if "#" in text:
        path, uid = text.rsplit("#", 1)
        return Path(path), uid or None
    return Path(text), None


def is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def read_image(ref: str | Path, *, canonical: bool = True, float32: bool = True) -> sitk.Image:
    """Read a CT volume as float32 (HU) in the canonical LPS orientation.

    ``float32=False`` keeps a file's own pixel type (label images: no cast of every voxel).

    Raises :class:`~gastrorad.errors.InputError` naming the file and the reason when the
    path is missing, of an unknown format or unreadable.
    """
    path, uid = split_reference(ref)
    if not path.exists():
        raise InputError(Problem(str(path), "file or folder does not exist"))
    if path.is_dir():
        image = read_dicom_series(path, uid)
    elif is_image_file(path) or path.suffix.lower() == ".dcm" or not path.suffix:
        check_image_file(path)
        try:
            image = read_nifti2(path) if is_nifti2(path) else sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise InputError(Problem(str(path), f"unreadable image: {str(exc).strip().splitlines()[-1][:200]}")) from exc
        if float32 and image.GetNumberOfComponentsPerPixel() == 1:
            image = sitk.Cast(image, sitk.sitkFloat32)
    else:
        raise InputError(Problem(str(path), f"unknown image format '{path.suffix}'; use one of "
                                 f"{', '.join(IMAGE_SUFFIXES)} or a DICOM series folder"))
    if image.GetDimension() != 3:
        raise InputError(Problem(str(path), f"expected a 3D volume, found {image.GetDimension()}D"))
    return to_canonical(image) if canonical else image


def read_image_geometry(ref: str | Path, *, canonical: bool = True) -> Geometry:
    """Geometry of an image from its header, after the file was checked to hold every voxel it promises.

    The check (:func:`gastrorad.io.integrity.check_image_file`) is the one :func:`read_image`
    makes, so an image that passes here is read completely in a run.
    """
    path, uid = split_reference(ref)
    if not path.exists():
        raise InputError(Problem(str(path), "file or folder does not exist"))
    if path.is_dir():
        series = select_series(path, uid)
        check_series_geometry(series, path)
        geom = Geometry((series.columns, series.rows, len(series.files)),
                        (series.pixel_spacing[1], series.pixel_spacing[0], abs(series.slice_spacing)),
                        tuple(float(v) for v in series.positions[0]), series.direction)
    elif is_nifti2(path):
        check_image_file(path)
        geom = Geometry(*read_nifti2(path, header_only=True))
    else:
        check_image_file(path)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputError(Problem(str(path), f"unreadable image header: {str(exc).strip().splitlines()[-1][:200]}")) from exc
        geom = Geometry.of(reader)
        if len(geom.size) != 3:
            raise InputError(Problem(str(path), f"expected a 3D volume, found {len(geom.size)}D"))
    return canonical_geometry(geom) if canonical else geom


def write_image(image: sitk.Image, path: str | Path, *, compress: bool = True) -> Path:
    """Write ``image`` atomically; the format follows the file name (``.nii.gz``, ``.nrrd``, ``.mha``)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path
