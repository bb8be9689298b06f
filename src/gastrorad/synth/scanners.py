"""Centre (scanner and protocol) profiles of the synthetic cohorts.

External cohorts differ from the training centre the way real ones do: matrix and pixel
size, slice spacing, noise, a HU calibration offset and the sharpness of the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scanner:
    """Acquisition of one centre: in-plane matrix and pixel (mm), slice spacing (mm),
    quantum noise SD (HU), calibration offset (HU) and point-spread blur (mm, SD)."""

    name: str
    matrix: int
    pixel_mm: float
    slice_mm: float
    noise_hu: float
    offset_hu: float
    blur_mm: float


#: The default three centres: A is the development centre, B and C external.
CENTRES: dict[str, Scanner] = {
    "A": Scanner("A", matrix=256, pixel_mm=1.50, slice_mm=2.5, noise_hu=12.0, offset_hu=0.0, blur_mm=0.7),
    "B": Scanner("B", matrix=288, pixel_mm=1.35, slice_mm=5.0, noise_hu=18.0, offset_hu=8.0, blur_mm=1.0),
    "C": Scanner("C", matrix=240, pixel_mm=1.60, slice_mm=2.0, noise_hu=9.0, offset_hu=-6.0, blur_mm=0.5),
    "D": Scanner("D", matrix=256, pixel_mm=1.45, slice_mm=3.0, noise_hu=15.0, offset_hu=4.0, blur_mm=0.8),
}


def scaled(scanner: Scanner, factor: float) -> Scanner:
    """The same protocol on a matrix ``factor`` times finer (``factor=2``: a 512 matrix)."""
    return Scanner(scanner.name, int(round(scanner.matrix * factor)), scanner.pixel_mm / factor,
                   scanner.slice_mm, scanner.noise_hu, scanner.offset_hu, scanner.blur_mm)
