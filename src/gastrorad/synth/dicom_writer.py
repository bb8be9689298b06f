"""Writing synthetic volumes as DICOM: CT series, SEG and RTSTRUCT.

Only geometry, rescale and synthetic identifiers are written; no real patient data exists
in a synthetic study. Used by ``gastrorad synth --dicom`` to exercise the DICOM readers.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from gastrorad.io.atomic import atomic_write

_RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def _uid(seed: str) -> str:
    # Deterministic UIDs: the same patient and seed give the same files.
    return generate_uid(prefix=None, entropy_srcs=[seed])


def write_ct_series(image: sitk.Image, folder: Path, *, patient_id: str, series_key: str,
                    description: str = "synthetic CT") -> list[Path]:
    """Write an int16 HU volume (LPS, axial) as one CT series, one file per slice.

    Pixels are stored unsigned with RescaleIntercept -1024 (as most scanners do), so the
    reader must apply the rescale to get HU back.
    """
    folder.mkdir(parents=True, exist_ok=True)
    arr = sitk.GetArrayFromImage(image).astype(np.int32)
    stored = np.clip(arr + 1024, 0, 4095).astype(np.uint16)
    spacing = image.GetSpacing()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    study_uid, series_uid = _uid(patient_id + "study"), _uid(patient_id + series_key)
    frame_uid = _uid(patient_id + "frame")
    orientation = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
    today = _dt.date(2024, 1, 1).strftime("%Y%m%d")
    paths = []
    for k in range(arr.shape[0]):
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = _uid(f"{patient_id}{series_key}{k}")
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", patient_id, f"SYNTHETIC^{patient_id}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate = ds.SeriesDate = today
        ds.StudyTime = ds.SeriesTime = "120000"
        # Type 2 attributes: present, empty (a synthetic patient has no birth date or accession).
        ds.PatientBirthDate, ds.PatientSex, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", ""
        ds.StudyID, ds.Manufacturer, ds.PositionReferenceIndicator = "1", "gastrorad-synth", ""
        ds.SeriesDescription = description
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = stored[k].tobytes()
        path = folder / f"CT{k + 1:04d}.dcm"
        with atomic_write(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths


def write_seg(mask: sitk.Image, ct_files: list[Path], path: Path, *, label: str = "tumour") -> Path:
    """Write a binary mask on the CT grid as a DICOM SEG (highdicom) referencing ``ct_files``."""
    import highdicom as hd

    sources = [pydicom.dcmread(p) for p in ct_files]
    arr = sitk.GetArrayFromImage(mask).astype(bool)  # (z, y, x), slices in ct_files order
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label,
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=arr, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=_uid(str(path) + "seg"), series_number=100,
        sop_instance_uid=_uid(str(path) + "seginst"), instance_number=1, manufacturer="gastrorad-synth",
        manufacturer_model_name="synth", software_versions="gastrorad", device_serial_number="0",
        omit_empty_frames=True,
    )
    with atomic_write(path) as tmp:
        seg.save_as(tmp)
    return path


def write_rtstruct(mask: sitk.Image, ct_files: list[Path], path: Path, *, name: str = "GTV") -> Path:
    """Write a binary mask as an RTSTRUCT with one closed planar contour per region and slice."""
    import contourpy

    first = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    arr = sitk.GetArrayFromImage(mask).astype(float)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _RTSTRUCT_STORAGE
    meta.MediaStorageSOPInstanceUID = _uid(str(path) + "rt")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = _RTSTRUCT_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID, ds.PatientName = first.PatientID, first.PatientName
    ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, _uid(str(path) + "rtseries")
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.StructureSetLabel = "synthetic"
    roi = pydicom.Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, name, first.FrameOfReferenceUID
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = [roi]
    contours = []
    for k in range(arr.shape[0]):
        if not arr[k].any():
            continue
        padded = np.pad(arr[k], 1)  # so contours close around regions touching the border
        gen = contourpy.contour_generator(z=padded, line_type="Separate")
        for line in gen.lines(0.5):
            ij = np.asarray(line)[:, ::-1] - 1  # (row, col) of the unpadded slice
            pts = [mask.TransformContinuousIndexToPhysicalPoint((float(c), float(r), float(k))) for r, c in ij[:-1]]
            c = pydicom.Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [round(float(v), 4) for p in pts for v in p]
            contours.append(c)
    rc = pydicom.Dataset()
    rc.ReferencedROINumber = 1
    rc.ROIDisplayColor = [255, 0, 0]
    rc.ContourSequence = contours
    ds.ROIContourSequence = [rc]
    with atomic_write(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
