"""A patient-like upper-abdominal CT phantom in Hounsfield units.

The phantom is built as a tissue label volume on the scanner's own grid (canonical LPS:
``labels[z, y, x]``, x to the patient's left, y posterior, z superior), then each contrast
phase maps the labels to HU with its own enhancement table, adds tissue texture, the
scanner's blur, calibration offset and correlated quantum noise. Geometry is drawn once per
patient, so arterial and venous phases show the same anatomy.

Coordinates are millimetres from the centre of the field of view (x, y) and from the
lowest slice (z). Organ positions are fractions of the body's half-width ``a`` and
half-depth ``b``, so they follow the patient's habitus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from gastrorad.synth.scanners import Scanner

# Tissue labels of the phantom.
AIR, SUBCUT_FAT, MUSCLE, VISC_FAT, CORTICAL, CANCELLOUS, CSF, DISC = 0, 1, 2, 3, 4, 5, 6, 7
LIVER, LIVER_VESSEL, SPLEEN, KID_CORTEX, KID_MEDULLA, AORTA, IVC, PANCREAS = 8, 9, 10, 11, 12, 13, 14, 15
GASTRIC_WALL, GASTRIC_FLUID, GAS, TUMOUR, NECROSIS, NODE, LIVER_MET, BOWEL_WALL = 16, 17, 18, 19, 20, 21, 22, 23
BOWEL_FLUID, GALLBLADDER, MUCOSA, RIB, PORTAL, TABLE, SKIN = 24, 25, 26, 27, 28, 29, 30
N_LABELS = 31

#: Mean HU of each tissue in (arterial, venous) phase.
PHASE_HU: dict[int, tuple[float, float]] = {
    AIR: (-1000, -1000), SUBCUT_FAT: (-105, -105), MUSCLE: (52, 58), VISC_FAT: (-95, -95),
    CORTICAL: (750, 750), CANCELLOUS: (230, 235), CSF: (12, 12), DISC: (85, 90),
    LIVER: (72, 112), LIVER_VESSEL: (80, 150), SPLEEN: (125, 118), KID_CORTEX: (195, 165),
    KID_MEDULLA: (70, 150), AORTA: (300, 165), IVC: (65, 150), PANCREAS: (115, 95),
    GASTRIC_WALL: (70, 80), GASTRIC_FLUID: (8, 8), GAS: (-930, -930), TUMOUR: (80, 95),
    NECROSIS: (22, 25), NODE: (55, 70), LIVER_MET: (60, 55), BOWEL_WALL: (75, 80),
    BOWEL_FLUID: (15, 15), GALLBLADDER: (8, 8), MUCOSA: (125, 100), RIB: (480, 480),
    PORTAL: (110, 170), TABLE: (150, 150), SKIN: (30, 30),
}
#: Texture SD (HU) of each tissue: the fine-grained variation real tissue has beyond noise.
TISSUE_SD: dict[int, float] = {SUBCUT_FAT: 8, VISC_FAT: 10, MUSCLE: 6, LIVER: 5, SPLEEN: 7,
                               CANCELLOUS: 45, PANCREAS: 12, KID_CORTEX: 8, BOWEL_FLUID: 6}
PHASES = ("arterial", "venous")


@dataclass
class Canvas:
    """A label volume on one scanner's grid and helpers to paint shapes into it."""

    scanner: Scanner
    height_mm: float
    labels: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        s = self.scanner
        self.nz = int(round(self.height_mm / s.slice_mm)) + 1
        n = s.matrix
        self.x = (np.arange(n) - (n - 1) / 2) * s.pixel_mm
        self.y = (np.arange(n) - (n - 1) / 2) * s.pixel_mm
        self.z = np.arange(self.nz) * s.slice_mm
        self.labels = np.zeros((self.nz, n, n), dtype=np.uint8)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.labels.shape

    def window(self, lo, hi):
        """Index slices (z, y, x) of the physical box [lo, hi] (x, y, z order) and its coordinates."""
        def rng(coord, a, b):
            i0 = int(np.searchsorted(coord, a, side="left"))
            i1 = int(np.searchsorted(coord, b, side="right"))
            return slice(max(i0, 0), min(i1, len(coord)))
        sx, sy, sz = rng(self.x, lo[0], hi[0]), rng(self.y, lo[1], hi[1]), rng(self.z, lo[2], hi[2])
        zz = self.z[sz][:, None, None]
        yy = self.y[sy][None, :, None]
        xx = self.x[sx][None, None, :]
        return (sz, sy, sx), (xx, yy, zz)

    def ellipsoid(self, centre, semi, *, angle_deg: float = 0.0, power: float = 2.0, margin: float = 0.0):
        """Region and mask of an (optionally super-) ellipsoid rotated about z by ``angle_deg``."""
        sl, level = self.ellipsoid_level(centre, semi, angle_deg=angle_deg, power=power, margin=margin)
        return sl, level <= 1.0

    def ellipsoid_level(self, centre, semi, *, angle_deg: float = 0.0, power: float = 2.0, margin: float = 0.0):
        """Region and the ellipsoid's level function on it (1 on the surface, 0 at the centre)."""
        r = max(semi[0], semi[1]) + margin
        lo = (centre[0] - r, centre[1] - r, centre[2] - semi[2] - margin)
        hi = (centre[0] + r, centre[1] + r, centre[2] + semi[2] + margin)
        sl, (xx, yy, zz) = self.window(lo, hi)
        c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
        dx, dy = xx - centre[0], yy - centre[1]
        u, v = c * dx + s * dy, -s * dx + c * dy
        w = zz - centre[2]
        return sl, np.abs(u / semi[0]) ** power + np.abs(v / semi[1]) ** power + np.abs(w / semi[2]) ** power

    def paint(self, sl, mask, label: int, *, only=None, never=None) -> None:
        """Set ``label`` where ``mask`` is true, optionally only over (or never over) some labels."""
        target = self.labels[sl]
        m = mask
        if only is not None:
            m = m & np.isin(target, only)
        if never is not None:
            m = m & ~np.isin(target, never)
        target[m] = label


def tube_distance(canvas: Canvas, points: np.ndarray, radii: np.ndarray, pad: float = 30.0):
    """Signed distance (mm) to a tube of varying radius along a polyline (negative inside).

    Returns the index region and the distance field on it, for painting walls, lumens and
    wall-thickening tumours from one field.
    """
    lo = points.min(axis=0) - radii.max() - pad
    hi = points.max(axis=0) + radii.max() + pad
    sl, (xx, yy, zz) = canvas.window(lo, hi)
    shape = np.broadcast_shapes(xx.shape, yy.shape, zz.shape)
    best = np.full(shape, np.inf, dtype=np.float32)
    for p0, p1, r0, r1 in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        d = p1 - p0
        length2 = float(d @ d)
        t = ((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1] + (zz - p0[2]) * d[2]) / length2
        t = np.clip(t, 0.0, 1.0)
        dist = np.sqrt((xx - p0[0] - t * d[0]) ** 2 + (yy - p0[1] - t * d[1]) ** 2 + (zz - p0[2] - t * d[2]) ** 2)
        np.minimum(best, dist - (r0 + t * (r1 - r0)), out=best)
    return sl, best


def smooth_field(rng: np.random.Generator, shape, sigma_vox, dtype=np.float32) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian random field with correlation length ``sigma_vox`` (voxels)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(dtype), sigma_vox, mode="reflect")
    sd = float(f.std())
    return f / sd if sd > 0 else f


@dataclass
class Habitus:
    """One patient's body: half-width ``a`` and half-depth ``b`` (mm), subcutaneous fat,
    the stomach's shape and filling, and random offsets of the organs."""

    a: float
    b: float
    fat_mm: float
    muscle_mm: float
    stomach_scale: float
    gas_fraction: float
    jitter: np.ndarray  # (8, 3) organ offsets in mm
    disc_phase: float

    @classmethod
    def draw(cls, rng: np.random.Generator, bmi: float = 22.5) -> "Habitus":
        fat = float(np.clip(8 + (bmi - 18) * 2.6 + rng.normal(0, 3), 5, 45))
        a = float(np.clip(150 + (bmi - 22) * 3.5 + rng.normal(0, 7), 128, 182))
        b = float(np.clip(a * rng.uniform(0.68, 0.78), 85, 135))
        return cls(a=a, b=b, fat_mm=fat, muscle_mm=float(rng.uniform(5, 9)),
                   stomach_scale=float(rng.uniform(0.85, 1.15)), gas_fraction=float(rng.uniform(0.08, 0.45)),
                   jitter=rng.normal(0, 5, size=(8, 3)), disc_phase=float(rng.uniform(0, 30)))


def stomach_centreline(h: Habitus, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Control points (x, y, z mm) and radii of the stomach from cardia to pylorus.

    The order defines the site coordinate ``s`` in [0, 1]: cardia near 0, body ~0.45,
    antrum ~0.8.
    """
    a, b, j = h.a, h.b, h.jitter[0]
    pts = np.array([
        (0.14 * a, 0.30 * b, 0.93 * height),   # gastro-oesophageal junction
        (0.36 * a, 0.22 * b, 0.84 * height),   # fundus
        (0.44 * a, -0.02 * b, 0.70 * height),  # upper body
        (0.40 * a, -0.30 * b, 0.55 * height),  # lower body
        (0.20 * a, -0.50 * b, 0.43 * height),  # angulus
        (-0.05 * a, -0.52 * b, 0.38 * height),  # antrum
        (-0.22 * a, -0.40 * b, 0.40 * height),  # pylorus
    ]) + j
    radii = np.array([10, 36, 36, 32, 26, 20, 10], dtype=float) * h.stomach_scale
    return pts, radii


def point_on_centreline(points: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Point at arc-length fraction ``s`` of the polyline, its unit tangent and segment index."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    target = s * cum[-1]
    i = int(np.clip(np.searchsorted(cum, target) - 1, 0, len(seg) - 1))
    t = (target - cum[i]) / seg[i]
    tangent = (points[i + 1] - points[i]) / seg[i]
    return points[i] + t * (points[i + 1] - points[i]), tangent, i


def build_anatomy(canvas: Canvas, h: Habitus, rng: np.random.Generator) -> dict:
    """Paint the normal anatomy into ``canvas``; return landmarks needed for lesions."""
    a, b, H = h.a, h.b, canvas.height_mm
    j = h.jitter
    full = (slice(None),) * 3
    xx, yy = canvas.x[None, None, :], canvas.y[None, :, None]
    zz = canvas.z[:, None, None]
    # Body outline: a super-ellipse, a little flatter at the back; slightly wider below.
    widen = 1.0 + 0.04 * (1 - zz / H)
    body = (np.abs(xx / (a * widen)) ** 2.3 + np.abs((yy - 0.08 * b * (yy > 0)) / b) ** 2.3) <= 1.0
    canvas.paint(full, np.broadcast_to(body, canvas.shape), SKIN)
    dermis = (np.abs(xx / (a * widen - 2.5)) ** 2.3 + np.abs((yy - 0.08 * b * (yy > 0)) / (b - 2.5)) ** 2.3) <= 1.0
    canvas.paint(full, np.broadcast_to(dermis, canvas.shape), SUBCUT_FAT)
    fa, fb = a - h.fat_mm, b - h.fat_mm * 0.8
    wall = (np.abs(xx / (fa * widen)) ** 2.3 + np.abs(yy / fb) ** 2.3) <= 1.0
    canvas.paint(full, np.broadcast_to(wall, canvas.shape), MUSCLE)
    ia, ib = fa - h.muscle_mm, fb - h.muscle_mm
    cavity = (np.abs(xx / (ia * widen)) ** 2.3 + np.abs(yy / ib) ** 2.3) <= 1.0
    cavity = np.broadcast_to(cavity, canvas.shape)
    canvas.paint(full, cavity, VISC_FAT)
    for side in (-1, 1):  # rectus abdominis, thicker than the lateral wall
        canvas.paint(*canvas.ellipsoid((side * 0.13 * a, -(fb - h.muscle_mm - 2), H / 2), (0.11 * a, 6.5, H)), MUSCLE,
                     only=[VISC_FAT])

    # Spine, placed from the back: spinous process, canal, vertebral body, discs;
    # paraspinal muscles behind, psoas beside the body in the lower slices.
    back = fb - 4
    vy = back - 66
    canal = back - 38
    body_region = [SUBCUT_FAT, MUSCLE, VISC_FAT]
    for side in (-1, 1):
        canvas.paint(*canvas.ellipsoid((side * 36, back - 22, H / 2), (30, 24, H), power=2.4), MUSCLE, only=body_region)
        canvas.paint(*canvas.ellipsoid((side * 34, vy + 4, 0.0), (17, 15, 0.55 * H)), MUSCLE, only=[VISC_FAT])
    sl, body_v = canvas.ellipsoid((0, vy, H / 2), (21, 17, H), power=2.2)
    canvas.paint(sl, body_v, CORTICAL)
    canvas.paint(*canvas.ellipsoid((0, vy, H / 2), (18.5, 14.5, H), power=2.2), CANCELLOUS)
    canvas.paint(*canvas.ellipsoid((0, canal, H / 2), (13, 12, H)), CORTICAL)
    canvas.paint(*canvas.ellipsoid((0, canal, H / 2), (8, 7.5, H)), CSF)
    canvas.paint(*canvas.ellipsoid((0, (canal + back) / 2 - 4, H / 2), (4.5, (back - canal) / 2 - 7, H)), CORTICAL,
                 only=body_region)
    for side in (-1, 1):  # transverse processes
        canvas.paint(*canvas.ellipsoid((side * 19, canal - 3, H / 2), (9, 3, H)), CORTICAL, only=body_region)
    # Discs every ~32 mm: the vertebral body turns to disc on those slices.
    disc_z = (canvas.z + h.disc_phase) % 32.0 < 7.0
    sl, body_v = canvas.ellipsoid((0, vy, H / 2), (21, 17, H), power=2.2)
    canvas.paint(sl, body_v & disc_z[sl[0], None, None], DISC, only=[CORTICAL, CANCELLOUS])
    # CT table under the patient's back.
    table_y = 1.08 * b + 4
    ty = canvas.y[None, :, None]
    tx = canvas.x[None, None, :]
    arc = table_y + 0.0011 * tx ** 2
    table = (ty >= arc) & (ty <= arc + 4.0) & (np.abs(tx) < 0.9 * a + 40)
    canvas.paint(full, np.broadcast_to(table, canvas.shape), TABLE, only=[AIR])

    # Ribs in the upper half: bony ovals along the inner body wall, appearing and
    # disappearing from slice to slice as oblique ribs do.
    for k, phi in enumerate(np.deg2rad(np.linspace(-60, 240, 19))):
        if np.pi * 0.3 < phi < np.pi * 0.7 or np.pi * 1.38 < phi or phi < -np.pi * 0.38:
            continue  # no ribs over the anterior midline or beside the spine
        rx, ry = (fa - h.muscle_mm * 0.5) * np.cos(phi), -(fb - h.muscle_mm * 0.5) * np.sin(phi)
        present = ((canvas.z / 24.0 + k * 0.41) % 1.0 < 0.4) & (canvas.z > (0.35 + 0.25 * np.sin(phi) ** 2) * H)
        sl, oval = canvas.ellipsoid((rx, ry, H / 2), (9, 5, H), angle_deg=-np.rad2deg(phi) + 90)
        oval = oval & present[sl[0], None, None]
        canvas.paint(sl, oval, RIB, only=[MUSCLE, SUBCUT_FAT, VISC_FAT])

    # Liver (right upper quadrant, left lobe across the midline), gallbladder, vessels.
    liver_c = np.array((-0.42 * a, -0.05 * b, 0.74 * H)) + j[2]
    sl, liver = canvas.ellipsoid(liver_c, (0.52 * a, 0.78 * b, 0.42 * H), angle_deg=-12, power=2.4)
    canvas.paint(sl, liver & cavity[sl], LIVER, only=[VISC_FAT])
    sl, lobe = canvas.ellipsoid((0.05 * a + j[2, 0], -0.52 * b, 0.80 * H), (0.42 * a, 0.28 * b, 0.2 * H))
    canvas.paint(sl, lobe & cavity[sl], LIVER, only=[VISC_FAT])
    canvas.paint(*canvas.ellipsoid(liver_c + (0.15 * a, -0.35 * b, -0.3 * H), (16, 13, 25)), GALLBLADDER, only=[LIVER])
    hilum = liver_c + np.array((0.25 * a, 0.05 * b, -0.12 * H))
    for _ in range(6):
        direction = rng.normal(size=3) * np.array((1.0, 1.0, 0.6))
        direction[0] = -abs(direction[0])
        direction /= np.linalg.norm(direction)
        length = rng.uniform(45, 85)
        path = [hilum]
        for step in range(3):
            direction = direction + rng.normal(0, 0.35, size=3)
            direction /= np.linalg.norm(direction)
            path.append(path[-1] + direction * length / 3)
        sl_t, dist = tube_distance(canvas, np.array(path), np.array([5.0, 3.5, 2.5, 1.5]), pad=2)
        canvas.paint(sl_t, dist <= 0, PORTAL if _ < 4 else LIVER_VESSEL, only=[LIVER])
    # Spleen (left, posterior), kidneys (lower half), pancreas, aorta, IVC.
    spleen_c = np.array((0.56 * a, vy - 5, 0.68 * H)) + j[3]
    sl, spleen = canvas.ellipsoid(spleen_c, (0.16 * a, 0.36 * b, 0.24 * H), angle_deg=35)
    canvas.paint(sl, spleen & cavity[sl], SPLEEN, only=[VISC_FAT, MUSCLE])
    for side, zc in ((-1, 0.20 * H), (1, 0.26 * H)):
        c = np.array((side * (0.30 * a + 18), vy + 2, zc)) + j[4] * 0.5
        ang = -side * 30
        sl, k_out = canvas.ellipsoid(c, (24, 32, 0.26 * H), angle_deg=ang)
        canvas.paint(sl, k_out, KID_CORTEX, only=[VISC_FAT, MUSCLE])
        sl, k_in = canvas.ellipsoid(c, (16, 23, 0.2 * H), angle_deg=ang)
        canvas.paint(sl, k_in, KID_MEDULLA, only=[KID_CORTEX])
        sl, sinus = canvas.ellipsoid(c - np.array((side * 9, 4, 0)), (7, 11, 0.12 * H), angle_deg=ang)
        canvas.paint(sl, sinus, VISC_FAT, only=[KID_MEDULLA, KID_CORTEX])
    pan = np.array([(-0.15 * a, -0.02 * b, 0.40 * H), (0.10 * a, 0.02 * b, 0.44 * H),
                    (0.35 * a, 0.15 * b, 0.50 * H), (0.50 * a, 0.30 * b, 0.54 * H)]) + j[5] * 0.5
    sl, dist = tube_distance(canvas, pan, np.array([13.0, 10.0, 9.0, 7.0]), pad=2)
    canvas.paint(sl, dist <= 0, PANCREAS, only=[VISC_FAT])
    canvas.paint(*canvas.ellipsoid((14 + j[7, 0] * 0.3, vy - 30, H / 2), (11.5, 11.5, H)), AORTA)
    canvas.paint(*canvas.ellipsoid((-26 + j[7, 1] * 0.3, vy - 26, H / 2), (13, 9, H)), IVC, never=[CORTICAL, CANCELLOUS])

    # Bowel in the lower abdomen: transverse colon with gas, small-bowel loops with fluid.
    colon = np.array([(-0.55 * a, -0.35 * b, 0.30 * H), (-0.1 * a, -0.62 * b, 0.22 * H),
                      (0.35 * a, -0.55 * b, 0.24 * H), (0.62 * a, -0.1 * b, 0.34 * H)]) + j[6] * 0.5
    sl, dist = tube_distance(canvas, colon, np.full(4, 17.0), pad=2)
    free = np.isin(canvas.labels[sl], [VISC_FAT])
    canvas.labels[sl][(dist <= 0) & free] = BOWEL_WALL
    canvas.labels[sl][(dist <= -2.5) & (canvas.labels[sl] == BOWEL_WALL)] = GAS
    for _ in range(9):
        c = np.array((rng.uniform(-0.3, 0.55) * a, rng.uniform(-0.6, 0.15) * b, rng.uniform(0.0, 0.3) * H))
        r = rng.uniform(9, 14)
        sl, loop = canvas.ellipsoid(c, (r, r, rng.uniform(15, 30)))
        canvas.paint(sl, loop, BOWEL_WALL, only=[VISC_FAT])
        sl, lumen = canvas.ellipsoid(c, (r - 2.5, r - 2.5, 30))
        canvas.paint(sl, lumen, BOWEL_FLUID if rng.random() < 0.7 else GAS, only=[BOWEL_WALL])
    return {"cavity": cavity, "liver_centre": liver_c, "spine_y": vy, "aorta": (14.0, vy - 30)}


def paint_stomach(canvas: Canvas, h: Habitus, wall_mm: float = 4.0) -> dict:
    """Stomach with an enhancing mucosa, muscular wall and a fluid/gas lumen (gas anterior,
    as in a supine patient). Returns its centreline and distance field for the tumour."""
    pts, radii = stomach_centreline(h, canvas.height_mm)
    sl, dist = tube_distance(canvas, pts, radii, pad=25)
    region = canvas.labels[sl]
    soft = np.isin(region, [VISC_FAT, LIVER, SPLEEN, PANCREAS, BOWEL_WALL, BOWEL_FLUID, GAS, PORTAL, LIVER_VESSEL, MUSCLE])
    stomach = (dist <= 0) & soft
    region[stomach] = GASTRIC_WALL
    region[(dist <= -wall_mm * 0.6) & stomach] = MUCOSA
    lumen = (dist <= -wall_mm) & stomach
    region[lumen] = GASTRIC_FLUID
    ys = canvas.y[sl[1]][None, :, None]
    lumen_y = np.broadcast_to(ys, lumen.shape)[lumen]
    if lumen_y.size:
        level = np.quantile(lumen_y, h.gas_fraction)
        region[lumen & (ys < level)] = GAS
    return {"points": pts, "radii": radii, "region": sl, "dist": dist, "wall_mm": wall_mm}


def render_phase(labels: np.ndarray, phase: str, scanner: Scanner, rng: np.random.Generator,
                 extra_hu: np.ndarray | None = None, texture: np.ndarray | None = None) -> np.ndarray:
    """HU volume of one contrast phase from a label volume.

    Adds per-tissue texture, ``extra_hu`` (tumour texture and enhancement, from the
    lesion model), the scanner's blur, HU offset and spatially correlated noise.
    """
    col = PHASES.index(phase)
    lut = np.array([PHASE_HU[k][col] for k in range(N_LABELS)], dtype=np.float32)
    sd = np.array([TISSUE_SD.get(k, 3.0) for k in range(N_LABELS)], dtype=np.float32)
    hu = lut[labels]
    if texture is None:
        texture = smooth_field(rng, labels.shape, (0.5, 1.2, 1.2))
    hu += sd[labels] * texture
    if extra_hu is not None:
        hu += extra_hu
    sigma_xy = scanner.blur_mm / scanner.pixel_mm
    hu = ndimage.gaussian_filter(hu, (0.35, sigma_xy, sigma_xy), mode="nearest")
    noise = ndimage.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), (0, 0.7, 0.7))
    noise *= scanner.noise_hu / max(float(noise.std()), 1e-6)
    hu += noise + scanner.offset_hu
    outside = labels == AIR
    hu[outside] = -1000 + noise[outside] * 0.3 + scanner.offset_hu
    return np.clip(hu, -1024, 3071)
