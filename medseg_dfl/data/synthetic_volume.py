"""Synthetic CT-like abdominal volumes (pure numpy rendering, no I/O).

A body cross-section (fat rim, soft tissue, a spine and a contrast-filled aorta as bright
distractors) holds an organ (label 1) with a few small enhancing lesions (label 2, rare).
Intensities are Hounsfield units stored as int16; air is -1000. The volume is sampled on an
anisotropic grid (thick slices) and placed in the world by an oblique, non-identity affine.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["VOLUME_CLASSES", "make_volume", "volume_affine"]

VOLUME_CLASSES = ("background", "organ", "lesion")


def volume_affine(rng: np.random.Generator, spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxel (i, j, k) -> world (mm, RAS) affine: LPS-like axis flip, a small oblique tilt, an origin."""

    def rot(axis: int, angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        a, b = [i for i in range(3) if i != axis]
        m = np.eye(3)
        m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
        return m

    tilt = np.deg2rad(rng.uniform(3, 10)) * rng.choice([-1, 1])
    spin = np.deg2rad(rng.uniform(2, 8)) * rng.choice([-1, 1])
    rotation = rot(2, np.pi + spin) @ rot(0, tilt)  # the z flip of 180 deg maps LPS voxels to RAS
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = np.round(rng.uniform([60, 80, -300], [120, 160, -100]), 2)
    return affine


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> list[np.ndarray]:
    """Physical coordinates (mm) of voxel centres, origin at the volume centre (broadcastable)."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    return np.meshgrid(*axes, indexing="ij", sparse=True)


def _ellipsoid(coords: list[np.ndarray], centre, radii, wobble: np.ndarray | None = None) -> np.ndarray:
    """Normalised radius (<1 inside) of an axis-aligned ellipsoid, optionally deformed."""
    r = np.sqrt(sum(((c - c0) / rad) ** 2 for c, c0, rad in zip(coords, centre, radii, strict=True)))
    return r if wobble is None else r / wobble


def _body(coords: list[np.ndarray], extent: np.ndarray, rng: np.random.Generator) -> dict:
    """Body outline, fat rim, spine and aorta as boolean masks."""
    x, y, z = coords
    half = extent / 2
    taper = 1 + 0.06 * z / half[2]  # slightly wider towards the feet
    rx, ry = half[0] * rng.uniform(0.82, 0.92) * taper, half[1] * rng.uniform(0.62, 0.72) * taper
    body_r = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    fat = rng.uniform(0.14, 0.2)
    spine_c = (0.0, -ry * 0.62)
    spine_r = np.hypot(x - spine_c[0], y - spine_c[1]) / (half[0] * 0.14)
    aorta_r = np.hypot(x - half[0] * 0.12, y - (spine_c[1] + half[0] * 0.2)) / (half[0] * 0.1)
    return {
        "body": body_r < 1,
        "muscle": body_r < 1 - fat,
        "spine_cortex": spine_r < 1,
        "spine_core": spine_r < 0.7,
        "aorta": aorta_r < 1,
        # An unlabelled organ of similar density (spleen-like) on the other side: location and
        # shape, not intensity alone, tell it from the labelled organ.
        "spleen": np.sqrt(((x - half[0] * 0.5) / (half[0] * 0.16)) ** 2 + ((y + half[1] * 0.05) / (half[1] * 0.28)) ** 2
                          + (z / (half[2] * 0.45)) ** 2) < 1,
    }


def _organ_and_lesions(coords: list[np.ndarray], extent: np.ndarray, rng: np.random.Generator) -> tuple:
    """Organ (deformed ellipsoid on one side of the abdomen) and 1-3 small spherical lesions."""
    x, y, z = coords
    half = extent / 2
    centre = (half[0] * rng.uniform(-0.38, -0.28), half[1] * rng.uniform(0.0, 0.15), half[2] * rng.uniform(-0.1, 0.1))
    radii = (half[0] * rng.uniform(0.38, 0.44), half[1] * rng.uniform(0.42, 0.5), half[2] * rng.uniform(0.6, 0.75))
    phase = rng.uniform(0, 2 * np.pi, 3)
    wobble = 1 + 0.08 * np.sin(x / radii[0] * 2.5 + phase[0]) * np.cos(z / radii[2] * 2 + phase[1]) \
        + 0.05 * np.sin(y / radii[1] * 3 + phase[2])
    organ_r = _ellipsoid(coords, centre, radii, wobble)
    organ = organ_r < 1
    lesions = np.zeros(organ.shape, bool)
    for _ in range(int(rng.integers(1, 4))):
        # Physical spheres: ~3-6 voxels radius in-plane, only 1-2 slices in z (thick slices).
        radius = half[0] * rng.uniform(0.1, 0.18)
        # Sample the lesion centre well inside the organ so it stays (mostly) within it.
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = direction * rng.uniform(0, 0.6)
        lesion_c = tuple(c + o * r for c, o, r in zip(centre, offset, radii, strict=True))
        lesions |= _ellipsoid(coords, lesion_c, (radius,) * 3) < 1
    return organ, lesions & organ


def make_volume(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one CT-like volume; same ``seed`` -> identical arrays.

    Returns ``(image (X, Y, Z) int16 HU, label (X, Y, Z) uint8, affine 4x4 float64)`` with labels
    0 background, 1 organ, 2 lesion. The affine's column norms are the voxel spacing (mm).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"volume shape must be 3 sizes of at least 16 voxels, got {shape}")
    rng = np.random.default_rng(seed)
    inplane = float(np.round(rng.uniform(0.8, 1.0), 2))
    spacing = (inplane, inplane, float(rng.choice([2.0, 2.5, 3.0])))  # thick slices
    coords = _grid(shape, spacing)
    extent = np.array(shape) * np.array(spacing)
    parts = _body(coords, extent, rng)
    organ, lesions = _organ_and_lesions(coords, extent, rng)
    organ &= parts["muscle"] & ~parts["spine_cortex"] & ~parts["aorta"]
    lesions &= organ
    hu = np.full(shape, -1000.0)
    hu[parts["body"]] = rng.uniform(-110, -90)  # subcutaneous fat
    hu[parts["muscle"]] = rng.uniform(30, 45)
    hu[parts["spine_cortex"]] = rng.uniform(600, 800)
    hu[parts["spine_core"]] = rng.uniform(180, 260)
    hu[parts["aorta"]] = rng.uniform(140, 190)  # contrast-filled vessel: bright like a lesion
    organ_hu = rng.uniform(65, 80)
    hu[parts["spleen"] & parts["muscle"]] = organ_hu + rng.uniform(-12, 8)
    hu[organ] = organ_hu
    hu[lesions] = organ_hu + rng.uniform(35, 55)
    sigma_vox = [0.8 / s for s in spacing]  # ~0.8 mm partial-volume blur
    hu = ndimage.gaussian_filter(hu, sigma_vox)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 0.6)
    hu += noise / noise.std() * rng.uniform(6, 9)
    hu[~parts["body"] & (hu < -900)] = -1000  # air outside the body is masked, as many scanners do
    label = np.zeros(shape, np.uint8)
    label[organ] = 1
    label[lesions] = 2
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return image, label, volume_affine(rng, spacing)
