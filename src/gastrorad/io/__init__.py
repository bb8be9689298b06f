"""Reading CT images and ROI masks into one canonical orientation (LPS), and atomic writes."""

from gastrorad.io.atomic import atomic_write, atomic_write_text
from gastrorad.io.geometry import CANONICAL_ORIENTATION, Geometry, geometry_mismatch, to_canonical
from gastrorad.io.images import read_image, read_image_geometry, write_image
from gastrorad.io.masks import read_mask

__all__ = [
    "CANONICAL_ORIENTATION",
    "Geometry",
    "atomic_write",
    "atomic_write_text",
    "geometry_mismatch",
    "read_image",
    "read_image_geometry",
    "read_mask",
    "to_canonical",
    "write_image",
]
