"""Is an image file complete? Header-against-size checks run before any voxel is allocated.

ITK readers fill a truncated NIfTI with zeros and allocate whatever a header claims, so a
cut-off download or a corrupt header either passed silently or died later with an unrelated
memory error. :func:`check_image_file` reads the header only (plus, for gzip-compressed data,
the stream's trailer, and only when that does not match the header a streaming pass that counts
the decompressed bytes without keeping them) and refuses:

- an empty file, or one that is not the format its name says;
- a header claiming more than :data:`MAX_VOXELS` voxels;
- a file holding fewer bytes than its header promises (truncated), for NIfTI-1/2
  (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd`` + raw) and NRRD (raw or gzip).

:func:`check_dicom_slice` does the same for one DICOM file of a series. Validate and run call
the same functions, so "validate passed" means the run will read every voxel.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from gastrorad.errors import InputError, Problem

#: Largest voxel count accepted (2**30, about 1.07e9: 4.3 GB as float32). A whole-body CT at
#: 512 x 512 x 2000 holds 5.2e8 voxels.
MAX_VOXELS = 2 ** 30

_META_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
               "MET_DOUBLE": 8}
_NRRD_BYTES = {"signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
               "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
               "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
               "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
               "uint32_t": 4, "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8,
               "signed long long int": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8,
               "unsigned long long int": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8}


def _fail(path: Path, reason: str) -> InputError:
    return InputError(Problem(str(path), reason))


def _shape_text(shape) -> str:
    return " x ".join(str(int(s)) for s in shape)


def check_voxel_count(path: Path, shape) -> int:
    """Refuse a header whose voxel count is absurd (before anything is allocated)."""
    n = math.prod(int(s) for s in shape)
    if any(int(s) < 1 for s in shape):
        raise _fail(path, f"header claims an empty or negative image size ({_shape_text(shape)})")
    if n > MAX_VOXELS:
        raise _fail(path, f"header claims {_shape_text(shape)} = {n:,} voxels, more than the {MAX_VOXELS:,} a CT "
                          "can have; the header is corrupt or this is not a CT volume")
    return n


def _compare(path: Path, shape, itemsize: int, have: int, offset: int, what: str) -> None:
    need = offset + check_voxel_count(path, shape) * itemsize
    if have < need:
        raise _fail(path, f"file is truncated: its header promises {_shape_text(shape)} voxels of {itemsize} bytes "
                          f"({need:,} bytes{what}), the file holds {have:,}; copy or export it again")


def gunzipped_size(path: Path, start: int = 0) -> int:
    """Bytes in the gzip stream(s) of ``path`` from byte ``start``; raises InputError if corrupt or cut."""
    total = 0
    try:
        with open(path, "rb") as raw:
            raw.seek(start)
            with gzip.GzipFile(fileobj=raw) as fh:
                while chunk := fh.read(1 << 22):
                    total += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise _fail(path, f"compressed data is truncated or corrupt ({exc}); copy or export the file again") from exc
    return total


def gzip_trailer_size(path: Path) -> int | None:
    """ISIZE of the last gzip member of ``path`` (its uncompressed size modulo 2**32, RFC 1952), read
    from the file's last 4 bytes without decompressing; None if the file is too short to have one."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() < 18:  # 10-byte header + 8-byte trailer
            return None
        fh.seek(-4, 2)
        return int.from_bytes(fh.read(4), "little")


def zlib_size(path: Path, start: int) -> int:
    """Bytes in the zlib stream of ``path`` from byte ``start`` (MetaImage CompressedData)."""
    d = zlib.decompressobj()
    total = 0
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            while chunk := fh.read(1 << 22):
                total += len(d.decompress(chunk))
        total += len(d.flush())
    except zlib.error as exc:
        raise _fail(path, f"compressed data is corrupt ({exc}); copy or export the file again") from exc
    if not d.eof:
        raise _fail(path, "compressed data is truncated (the stream ends early); copy or export the file again")
    return total


def check_image_file(path: str | Path) -> None:
    """Refuse an image file that is empty, not its format, oversized or truncated (see module doc)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty (0 bytes)")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        _check_nifti(path, name.endswith(".gz"))
    elif name.endswith((".mha", ".mhd")):
        _check_meta(path)
    elif name.endswith((".nrrd", ".nhdr")):
        _check_nrrd(path)


def nifti_header(path: Path):
    """The NIfTI-1 or NIfTI-2 header of ``path`` (nibabel), or InputError naming the file."""
    import nibabel as nib

    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise _fail(path, "not a readable NIfTI file: its name ends in .gz but it is not gzip-compressed")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises ImageFileError, gzip errors, struct errors
        raise _fail(path, "not a readable NIfTI file: no valid NIfTI-1 or NIfTI-2 header (corrupt, or "
                          "another format under a NIfTI name)") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise _fail(path, f"not a NIfTI-1/2 file (read as {type(img).__name__})")
    return img.header


def _check_nifti(path: Path, gz: bool) -> None:
    hdr = nifti_header(path)
    shape = hdr.get_data_shape()
    itemsize = hdr.get_data_dtype().itemsize
    # A single-file NIfTI stores voxels after the header and its 4-byte extension flag; writers
    # (ITK among them) may leave vox_offset at 0, which readers take to mean exactly there.
    offset = max(int(hdr.get_data_offset()), int(hdr["sizeof_hdr"]) + 4)
    check_voxel_count(path, shape)
    if gz:
        need = offset + check_voxel_count(path, shape) * itemsize
        # Fast path: a complete single-member stream (what ITK and nibabel write) ends with ISIZE equal to
        # the bytes the header promises; a cut file ends in compressed data, which matches that number by
        # chance once in 2**32. Anything else (extensions, several members, a cut file) is counted in full.
        if gzip_trailer_size(path) == need % 2 ** 32:
            return
        _compare(path, shape, itemsize, gunzipped_size(path), offset, " after decompression")
    else:
        _compare(path, shape, itemsize, path.stat().st_size, offset, "")


def _text_header(path: Path, sep: str, stop) -> tuple[dict[str, str], int]:
    """Key/value header lines up to and including the line for which ``stop(key)`` is true."""
    fields: dict[str, str] = {}
    with open(path, "rb") as fh:
        while True:
            line = fh.readline(4096)
            if not line:
                break
            text = line.decode("latin-1").strip()
            if sep in text and not text.startswith("#"):
                key, value = text.split(sep, 1)
                fields[key.strip().lower()] = value.strip()
                if stop(key.strip().lower()):
                    return fields, fh.tell()
            elif not text and sep == ":":  # NRRD: a blank line ends the header
                return fields, fh.tell()
        return fields, fh.tell()


def _ints(path: Path, text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split()]
    except ValueError as exc:
        raise _fail(path, f"header field {what} is not a list of integers: '{text[:60]}'") from exc


def detached_data_file(path: str | Path) -> str | None:
    """The single data file a MetaImage (``.mhd``) or detached NRRD (``.nhdr``) header names beside itself,
    or None (voxels in the header's own file, a list or pattern of files, or another format)."""
    path = Path(path)
    if path.name.lower().endswith(".mhd"):
        source = _text_header(path, "=", lambda k: k == "elementdatafile")[0].get("elementdatafile", "LOCAL")
    elif path.name.lower().endswith(".nhdr"):
        fields = _text_header(path, ":", lambda k: False)[0]
        source = fields.get("data file", fields.get("datafile", "LOCAL"))
    else:
        return None
    if source.upper() == "LOCAL" or " " in source or source.upper().startswith("LIST") or "%" in source:
        return None
    return source


def _check_meta(path: Path) -> None:
    fields, end = _text_header(path, "=", lambda k: k == "elementdatafile")
    if "dimsize" not in fields or "elementtype" not in fields:
        raise _fail(path, "not a MetaImage file (no DimSize/ElementType in its header)")
    shape = _ints(path, fields["dimsize"], "DimSize")
    channels = int(fields.get("elementnumberofchannels", "1"))
    itemsize = _META_BYTES.get(fields["elementtype"].upper())
    check_voxel_count(path, shape + [channels])
    if itemsize is None:
        return
    itemsize *= channels
    source = fields.get("elementdatafile", "LOCAL")
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if source.upper() == "LOCAL":
        data_path, start = path, end
    elif " " in source or source.upper().startswith("LIST") or "%" in source:
        return  # several data files: ITK reports those itself
    else:
        data_path, start = path.parent / source, 0
        if not data_path.is_file():
            raise _fail(path, f"its data file '{source}' does not exist beside it")
    if compressed:
        _compare(data_path, shape, itemsize, zlib_size(data_path, start), 0, " after decompression")
    else:
        _compare(data_path, shape, itemsize, data_path.stat().st_size - start, 0, " after the header")


def _check_nrrd(path: Path) -> None:
    with open(path, "rb") as fh:
        if not fh.read(4) == b"NRRD":
            raise _fail(path, "not an NRRD file (it does not start with 'NRRD')")
    fields, end = _text_header(path, ":", lambda k: False)
    if "sizes" not in fields or "type" not in fields:
        raise _fail(path, "NRRD header lacks 'sizes' or 'type'")
    shape = _ints(path, fields["sizes"], "sizes")
    check_voxel_count(path, shape)
    itemsize = _NRRD_BYTES.get(fields["type"].lower())
    encoding = fields.get("encoding", "raw").lower()
    source = fields.get("data file", fields.get("datafile"))
    if itemsize is None or encoding not in ("raw", "gzip", "gz") or int(fields.get("byte skip", "0")) != 0:
        return
    data_path, start = (path, end) if source is None else (path.parent / source, 0)
    if source is not None and not data_path.is_file():
        raise _fail(path, f"its data file '{source}' does not exist beside it")
    if encoding == "raw":
        _compare(data_path, shape, itemsize, data_path.stat().st_size - start, 0, " after the header")
    else:
        _compare(data_path, shape, itemsize, gunzipped_size(data_path, start), 0, " after decompression")


def check_dicom_slice(path: Path, ds) -> None:
    """Refuse a DICOM slice whose native (uncompressed) pixel data is cut short.

    ``ds`` must have been read with ``pydicom.dcmread(path, defer_size=...)`` so that the pixel
    data element is still deferred (its length and file offset known, its bytes unread).
    """
    item = ds.get_item(0x7FE00010, keep_deferred=True)
    if item is None:
        raise _fail(path, "DICOM slice has no pixel data")
    length = getattr(item, "length", None)
    tell = getattr(item, "value_tell", None)
    if length is None or tell is None or length == 0xFFFFFFFF:
        return  # already read (small) or encapsulated (compressed): GDCM checks those frames
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("BitsAllocated", 16)) // 8
    expected *= int(ds.get("NumberOfFrames", 1) or 1)
    have = path.stat().st_size - tell
    if have < min(length, expected):
        raise _fail(path, f"DICOM slice is truncated: pixel data needs {min(length, expected):,} bytes, the file "
                          f"holds {max(have, 0):,}; copy or export the series again")


def _nifti2_frame(img) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Spacing, origin and direction (LPS) of a nibabel image: its RAS affine with two rows negated."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return (tuple(float(s) for s in spacing), tuple(float(v) for v in affine[:3, 3]),
            tuple(float(v) for v in (affine[:3, :3] / spacing).ravel()))


def read_nifti2(path: Path, *, header_only: bool = False):
    """Read a NIfTI-2 volume (ITK reads NIfTI-1 only) in the file's own frame.

    Returns a SimpleITK image, or with ``header_only`` the tuple (size, spacing, origin,
    direction) without reading voxels. NIfTI's affine maps voxel (i, j, k) to RAS millimetres;
    ITK's geometry is LPS, so the first two rows change sign. nibabel applies scl_slope/scl_inter.
    """
    import nibabel as nib
    import SimpleITK as sitk

    img = nib.load(str(path))
    if len(img.shape) != 3:
        raise _fail(path, f"expected a 3D volume, found shape {_shape_text(img.shape)}")
    spacing, origin, direction = _nifti2_frame(img)
    if header_only:
        return tuple(int(s) for s in img.shape), spacing, origin, direction
    data = np.asarray(img.dataobj, dtype=np.float32)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def is_nifti2(path: Path) -> bool:
    """True when ``path`` is a NIfTI file with the 540-byte NIfTI-2 header."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return False
    import nibabel as nib

    try:
        return isinstance(nib.load(str(path)), nib.Nifti2Image)
    except Exception:
        return False
