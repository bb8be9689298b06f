"""Lesions of the phantom: the gastric tumour (wall thickening), lymph nodes, liver metastases.

The tumour's appearance is driven by its latent imaging phenotype, the same numbers the
outcome model uses, so a model that reads the image can recover the planted signal:

- ``thickness_mm`` and ``length_mm`` (tied to T stage): how far the wall is thickened;
- ``heterogeneity`` (>= 0): amplitude of a correlated random texture inside the tumour;
- ``necrosis`` (0-0.7): radius fraction of a low-attenuation core;
- ``enhancement`` (HU): extra uptake over the tumour's base attenuation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gastrorad.synth.anatomy import (GAS, GASTRIC_FLUID, GASTRIC_WALL, LIVER, LIVER_MET, LIVER_VESSEL, MUCOSA,
                                     NECROSIS, NODE, PORTAL, TUMOUR, VISC_FAT, Canvas, point_on_centreline,
                                     smooth_field)

#: Sites as arc-length fractions along the stomach's centreline (cardia to pylorus).
SITES = {"cardia": 0.12, "body": 0.45, "antrum": 0.80}


@dataclass
class TumourSpec:
    site: str
    angle_deg: float
    length_mm: float
    thickness_mm: float
    heterogeneity: float
    necrosis: float
    enhancement: float
    serosal_invasion: bool = False


def _perpendicular(tangent: np.ndarray, angle_deg: float) -> np.ndarray:
    ref = np.array((0.0, 0.0, 1.0)) if abs(tangent[2]) < 0.9 else np.array((1.0, 0.0, 0.0))
    u = np.cross(tangent, ref)
    u /= np.linalg.norm(u)
    v = np.cross(tangent, u)
    ang = np.deg2rad(angle_deg)
    return np.cos(ang) * u + np.sin(ang) * v


def paint_tumour(canvas: Canvas, stomach: dict, spec: TumourSpec, rng: np.random.Generator,
                 extra_hu: np.ndarray) -> np.ndarray:
    """Thicken the gastric wall at ``spec.site``; return the tumour mask (z, y, x) bool.

    ``extra_hu`` (float32, volume-shaped) receives the tumour's texture and enhancement.
    """
    pts, radii = stomach["points"], stomach["radii"]
    s = SITES[spec.site]
    centre, tangent, i = point_on_centreline(pts, s)
    radius = float(np.interp(s, np.linspace(0, 1, len(radii)), radii))
    normal = _perpendicular(tangent, spec.angle_deg)
    anchor = centre + normal * radius
    sl, dist = stomach["region"], stomach["dist"]
    zz = canvas.z[sl[0]][:, None, None]
    yy = canvas.y[sl[1]][None, :, None]
    xx = canvas.x[sl[2]][None, None, :]
    dx, dy, dz = xx - anchor[0], yy - anchor[1], zz - anchor[2]
    along = dx * tangent[0] + dy * tangent[1] + dz * tangent[2]
    across2 = dx ** 2 + dy ** 2 + dz ** 2 - along ** 2
    half_len = spec.length_mm / 2
    half_wid = min(spec.length_mm * 0.45, radius * 1.3)
    footprint = (along / half_len) ** 2 + across2 / half_wid ** 2
    # Thickness tapers from the centre of the plaque to its edge; the margin is irregular.
    shape = dist.shape
    wobble = smooth_field(rng, shape, (1.0, 3.0, 3.0)) * 1.5
    taper = np.sqrt(np.clip(1.0 - footprint, 0.0, 1.0))
    inner = -(stomach["wall_mm"] + (spec.thickness_mm - stomach["wall_mm"]) * taper) + wobble
    outer = (3.0 * taper + wobble) if spec.serosal_invasion else 0.5 * wobble
    region = canvas.labels[sl]
    allowed = np.isin(region, [GASTRIC_WALL, MUCOSA, GASTRIC_FLUID, GAS, VISC_FAT])
    tumour = (footprint <= 1.0) & (dist >= inner) & (dist <= outer) & allowed
    region[tumour] = TUMOUR
    if spec.necrosis > 0.05 and tumour.any():
        # Necrotic core: the inner part of the thickened wall, scaled by the necrosis fraction.
        depth = (dist - inner) / np.maximum(outer - inner, 1e-3)
        core = tumour & (footprint <= spec.necrosis ** 0.7) & (np.abs(depth - 0.5) < 0.45 * spec.necrosis ** 0.5)
        region[core] = NECROSIS
    tex = smooth_field(rng, shape, (0.8, 2.0, 2.0))
    extra = extra_hu[sl]
    extra[tumour] += (spec.enhancement + 65.0 * spec.heterogeneity * tex[tumour]).astype(np.float32)
    full = np.zeros(canvas.shape, dtype=bool)
    full[sl] = tumour
    return full


def paint_ball(canvas: Canvas, centre, radius_mm: float, label: int, rng: np.random.Generator,
               extra_hu: np.ndarray, *, only, rim_hu: float = 0.0, texture_hu: float = 8.0) -> np.ndarray:
    """A roughly round lesion (node or metastasis); returns its mask."""
    r = max(radius_mm, 1.0)
    elong = rng.uniform(0.8, 1.2, size=3)
    sl, level = canvas.ellipsoid_level(centre, (r * elong[0], r * elong[1], r * elong[2]), angle_deg=rng.uniform(0, 180))
    region = canvas.labels[sl]
    ball = (level <= 1.0) & np.isin(region, only)
    region[ball] = label
    extra = extra_hu[sl]
    if ball.any():
        extra[ball] += texture_hu * smooth_field(rng, ball.shape, 1.0)[ball]
        if rim_hu:
            rim = ball & (level > 0.5)
            extra[rim] += rim_hu
    full = np.zeros(canvas.shape, dtype=bool)
    full[sl] = ball
    return full


def paint_node(canvas, centre, radius_mm, rng, extra_hu) -> np.ndarray:
    """A perigastric lymph node in fat."""
    return paint_ball(canvas, centre, radius_mm, NODE, rng, extra_hu, only=[VISC_FAT])


def paint_liver_met(canvas, centre, radius_mm, rng, extra_hu) -> np.ndarray:
    """A hypo-attenuating liver metastasis with an enhancing rim."""
    return paint_ball(canvas, centre, radius_mm, LIVER_MET, rng, extra_hu,
                      only=[LIVER, LIVER_VESSEL, PORTAL], rim_hu=35.0, texture_hu=10.0)
