"""Synthetic Wright/Giemsa-stained peripheral blood smears (pure numpy rendering, no I/O).

The picture is built the way light goes through a stained slide (Beer-Lambert): every object adds
optical density (OD) along its stain's colour vector, and the camera sees
``illumination * exp(-OD)``. Overlapping cells therefore darken where they overlap, as on glass.

Labels: 0 background, 1 red blood cell, 2 white blood cell, 3 platelet. Where objects overlap the
label follows WBC > platelet > RBC (the rarer, clinically interesting object wins).

Magnification: ``cell_diameter`` (px, the typical red-cell diameter; default ``DEFAULT_CELL_DIAMETER``)
scales every object, texture and the focus blur. The cell layout is drawn first, in units of the
default magnification, so ``make_smear(round(256 * k), seed, cell_diameter=25 * k)`` shows the
same cells at ``k`` times the magnification (textures differ). :func:`make_smear` also returns
the instance map (one id per cell, same overlap priority, a class per id): the ground truth for
counting. Platelets (2-3 um against ~7.5 um red cells: 0.25-0.4 of the red-cell diameter) never
touch each other or a white cell by chance, so each one is its own blob in the mask; only the
deliberate clumps of ``variety`` overlap, and their instance ids say how many platelets they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["DEFAULT_CELL_DIAMETER", "SMEAR_CLASSES", "SmearSample", "make_blood_smear", "make_smear"]

SMEAR_CLASSES = ("background", "rbc", "wbc", "platelet")

# Stain colour vectors: OD per unit amount in (R, G, B), from target colours on white light.
_RBC_OD = np.array([0.10, 0.42, 0.36])  # salmon pink haemoglobin + eosin
_NUCLEUS_OD = np.array([0.95, 1.55, 0.55])  # azure/methylene blue purple chromatin
_NEUTRO_CYTO_OD = np.array([0.10, 0.20, 0.14])  # pale pink-lilac, fine granules
_LYMPH_CYTO_OD = np.array([0.28, 0.20, 0.07])  # pale sky blue
_PLATELET_OD = np.array([0.55, 0.95, 0.35])  # purple granulomere
_RBC_RADIUS = 12.5  # px; WBCs and platelets are sized relative to this
DEFAULT_CELL_DIAMETER = 2 * _RBC_RADIUS  # px: the typical red-cell diameter at the default magnification
# Platelets are 2-3 um, red cells ~7.5 um: the platelet's longer semi-axis is this share of the
# slide's red-cell radius (equivalent diameter ~0.25-0.4 of the red cell's, tests/data).
_PLATELET_SIZE = (0.29, 0.41)
_PLATELET_REACH = 1.3  # outline noise reaches up to 1/(1 - 0.25) = 1.33 semi-axes; the gap covers the rest
_PLATELET_GAP = 3.0  # px (default magnification) kept between two platelets and from a white cell


@dataclass
class SmearSample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 class per pixel
    instances: np.ndarray  # (H, W) int32: 0 background, else the id of the cell that shows there
    instance_class: np.ndarray  # (n + 1,) class of each id (index 0: background)
    cell_diameter: float  # px, the magnification it was rendered at (mean red-cell diameter)


def _slide_style(rng: np.random.Generator) -> dict:
    """Per-slide staining, illumination, focus and noise (what differs between two labs)."""

    def jitter(vec: np.ndarray, amount: float) -> np.ndarray:
        return vec * rng.uniform(1 - amount, 1 + amount, 3)

    stain = rng.uniform(0.8, 1.25)
    return {
        "background": rng.uniform([232, 226, 222], [248, 242, 246]),
        "rbc": jitter(_RBC_OD, 0.15) * stain,
        "nucleus": jitter(_NUCLEUS_OD, 0.12) * rng.uniform(0.85, 1.15),
        "neutro_cyto": jitter(_NEUTRO_CYTO_OD, 0.2) * stain,
        "lymph_cyto": jitter(_LYMPH_CYTO_OD, 0.2),
        "platelet": jitter(_PLATELET_OD, 0.15) * rng.uniform(0.85, 1.15),
        "rbc_radius": _RBC_RADIUS * rng.uniform(0.9, 1.1),
        "density": rng.uniform(0.7, 1.15),
        "blur": rng.uniform(0.5, 1.5),
        "noise": rng.uniform(0.3, 0.7),
        "vignette": rng.uniform(0.0, 0.12),
        "gradient": rng.uniform(-0.05, 0.05, 2),
    }


def _patch(size: int, cy: float, cx: float, half: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """Bounding-box slices around (cy, cx) and the pixel offsets (dy, dx) inside it."""
    y0, y1 = max(int(cy - half), 0), min(int(cy + half) + 2, size)
    x0, x1 = max(int(cx - half), 0), min(int(cx + half) + 2, size)
    dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    return slice(y0, y1), slice(x0, x1), dy - cy, dx - cx


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (chromatin, granules, cell outlines)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-8)


def _place(rng: np.random.Generator, size: int, n: int, min_dist: np.ndarray,
           taken: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
    """Dart throwing: up to ``n`` centres keeping ``min_dist[i]`` from everything in ``taken``.

    ``taken`` holds (y, x, keep-out radius); accepted centres are appended to it.
    """
    out: list[tuple[float, float]] = []
    candidates = rng.uniform(-8, size + 8, (n * 30, 2))
    for (y, x), dist in zip(candidates, np.resize(min_dist, len(candidates)), strict=True):
        if len(out) == n:
            break
        if taken:
            arr = np.asarray(taken)
            gap = np.hypot(arr[:, 0] - y, arr[:, 1] - x) - arr[:, 2]
            if gap.min() < dist * 0.5:
                continue
        out.append((float(y), float(x)))
        taken.append((float(y), float(x), float(dist) * 0.5))
    return out


def _draw_rbc(od: np.ndarray, label: np.ndarray, rng: np.random.Generator, cy: float, cx: float,
              radius: float, stain: np.ndarray, ident: int = 1, look: tuple | None = None) -> None:
    """A biconcave disc: darker rim, pale centre, slightly elliptical and wobbly outline.

    ``look`` (hard negatives): ``(rim, spikes, spike_depth, rim_stain)``: a rim of OD ``rim``
    (default 0.18) in ``rim_stain`` (default the cell's stain), and a crenated outline of ``spikes``
    points ``spike_depth`` deep (0: smooth)."""
    rim, spikes, depth, rim_stain = look if look is not None else (0.18, 0, 0.0, stain)
    a = radius * rng.uniform(0.92, 1.08)
    b = a * rng.uniform(0.88, 1.0)
    theta = rng.uniform(0, np.pi)
    sy, sx, dy, dx = _patch(label.shape[0], cy, cx, a + 3)
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    phi = np.arctan2(v, u)
    wobble = 1 + 0.03 * np.cos(rng.integers(3, 6) * phi + rng.uniform(0, 6.3))
    if spikes:
        wobble = wobble + depth * np.maximum(np.cos(spikes * phi), 0) ** 3
    r = np.hypot(u / a, v / b) / wobble
    edge = np.clip((1 - r) * a + 0.5, 0, 1)  # ~1 px anti-aliased boundary
    pallor = rng.uniform(0.2, 0.45) if rng.random() > 0.08 else 0.9  # a few spherocytes
    centre = rng.uniform(0.45, 0.6)
    thickness = pallor + (1 - pallor) * np.clip((r - 0.1) / centre, 0, 1) ** 1.5
    ring = np.exp(-(((r - 0.9) / 0.08) ** 2))  # refractile rim
    amount = edge * (thickness + 0.18 * ring) * rng.uniform(0.85, 1.15)
    od[sy, sx] += amount[..., None] * stain
    if look is not None:
        od[sy, sx] += (edge * (rim - 0.18) * ring)[..., None] * rim_stain
    label[sy, sx][r <= 1.0] = ident


def _nucleus_field(rng: np.random.Generator, dy: np.ndarray, dx: np.ndarray, radius: float,
                   kind: str) -> np.ndarray:
    """Soft (0..1) nucleus mask: lobes joined by thin strands (neutrophil), a round blob
    (lymphocyte) or a kidney-shaped one (monocyte)."""
    if kind == "monocyte":
        notch_angle = rng.uniform(0, 2 * np.pi)
        oy, ox = rng.uniform(-0.12, 0.12, 2) * radius
        body = 1 - np.hypot(dy - oy, dx - ox) / (radius * rng.uniform(0.6, 0.7))
        notch = 1 - np.hypot(dy - oy - 0.55 * radius * np.sin(notch_angle),
                             dx - ox - 0.55 * radius * np.cos(notch_angle)) / (radius * 0.35)  # fmt: skip
        return np.clip(np.minimum(body, -notch) * radius * 0.8 + 0.5, 0, 1)
    if kind == "lymphocyte":
        oy, ox = rng.uniform(-0.12, 0.12, 2) * radius
        r = np.hypot(dy - oy, dx - ox) / (radius * rng.uniform(0.74, 0.84))
        return np.clip((1 - r) * radius * 0.8 + 0.5, 0, 1)
    n_lobes = int(rng.integers(2, 5))
    sigma = radius * rng.uniform(0.19, 0.23)
    start = rng.uniform(0, 2 * np.pi)
    span = rng.uniform(1.6, 2.6) * (n_lobes - 1) / 3 + 0.5
    angles = start + np.linspace(0, span, n_lobes) + rng.normal(0, 0.15, n_lobes)
    arc = radius * rng.uniform(0.4, 0.5)
    field = np.zeros_like(dy)
    for ang in angles:
        ly, lx = arc * np.sin(ang), arc * np.cos(ang)
        field += np.exp(-((dy - ly) ** 2 + (dx - lx) ** 2) / (2 * sigma**2))
    return 1 / (1 + np.exp(-(field - 0.55) / 0.06))


def _draw_wbc(od: np.ndarray, label: np.ndarray, rng: np.random.Generator, cy: float, cx: float,
              radius: float, kind: str, style: dict, zoom: float = 1.0, ident: int = 2) -> None:
    """A leukocyte: lighter granular cytoplasm and a purple, clumped (lobed) nucleus."""
    sy, sx, dy, dx = _patch(label.shape[0], cy, cx, radius + 3)
    shape = dy.shape
    r = np.hypot(dy, dx) / (radius * (1 + 0.04 * _smooth_noise(rng, shape, radius / 3)))
    cell = np.clip((1 - r) * radius + 0.5, 0, 1)
    cyto_stain = {"lymphocyte": style["lymph_cyto"], "monocyte": 0.5 * (style["lymph_cyto"] + style["neutro_cyto"])
                  }.get(kind, style["neutro_cyto"])  # fmt: skip
    granules = 1 + 0.35 * _smooth_noise(rng, shape, 0.8 * zoom)
    nucleus = _nucleus_field(rng, dy, dx, radius, kind) * cell
    chromatin = 1 + 0.22 * _smooth_noise(rng, shape, 1.2 * zoom)
    od[sy, sx] += (cell * granules)[..., None] * cyto_stain
    od[sy, sx] += (nucleus * chromatin)[..., None] * style["nucleus"]
    label[sy, sx][r <= 1.0] = ident


def _draw_platelet(od: np.ndarray, label: np.ndarray, rng: np.random.Generator, cy: float, cx: float,
                   radius: float, stain: np.ndarray, zoom: float = 1.0, ident: int = 3) -> None:
    """An irregular purple granular fragment of semi-axis ``radius`` (px, already zoomed), one
    connected piece (a speck of outline noise would count as a second platelet)."""
    sy, sx, dy, dx = _patch(label.shape[0], cy, cx, _PLATELET_REACH * radius + 3)
    theta = rng.uniform(0, np.pi)
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    r = np.hypot(u, v / rng.uniform(0.7, 1.0)) / radius
    r = r * (1 + 0.1 * np.clip(_smooth_noise(rng, dy.shape, max(1.0 * zoom, 0.35 * radius)), -2.5, 2.5))
    body = np.clip((1 - r) * radius + 0.5, 0, 1)
    granular = np.clip(1 + 0.3 * _smooth_noise(rng, dy.shape, 0.5 * zoom), 0.4, 1.6)
    od[sy, sx] += (body * (0.55 + 0.45 * granular * (r < 0.75)))[..., None] * stain
    pieces, n = ndimage.label(r <= 1.0)
    if n:
        keep = pieces == 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(r), pieces, np.arange(1, n + 1))))
        label[sy, sx][keep] = ident


def _illumination(size: int, style: dict) -> np.ndarray:
    """Background brightness with a vignette and a tilt (uneven Koehler illumination)."""
    yy, xx = (np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5) * 2
    field = 1 - style["vignette"] * (yy**2 + xx**2) / 2 + style["gradient"][0] * yy + style["gradient"][1] * xx
    return field[..., None] * style["background"]


def _cell_layout(rng: np.random.Generator, size: float, style: dict) -> dict:
    """How many of each cell (scaled with the field's area) and where they go."""
    area = (size / 256.0) ** 2
    rbc_r = style["rbc_radius"]
    n_wbc = 0 if rng.random() < 0.15 else 1 + rng.poisson(0.25 * area)
    kinds = ["lymphocyte" if rng.random() < 0.35 else "neutrophil" for _ in range(n_wbc)]
    wbc_r = np.array([rbc_r * (rng.uniform(1.1, 1.3) if k == "lymphocyte" else rng.uniform(1.55, 1.85))
                      for k in kinds])
    taken: list[tuple[float, float, float]] = []
    wbc_xy = _place(rng, size, n_wbc, 2.2 * wbc_r + 4, taken) if n_wbc else []
    for i, (y, x) in enumerate(wbc_xy):
        taken[i] = (y, x, wbc_r[i] - 0.3 * rbc_r)  # RBCs may crowd the leukocyte's edge
    n_rbc = int(rng.poisson(72 * area * style["density"]))
    # Most RBCs just touch; about one in six may overlap a neighbour noticeably.
    min_dist = rbc_r * np.where(rng.random(n_rbc) < 0.17, 1.2, rng.uniform(1.7, 2.0, n_rbc))
    rbc_xy = _place(rng, size, n_rbc, min_dist, taken)
    n_plt = int(rng.poisson(9 * area))
    sizes = rbc_r * rng.uniform(*_PLATELET_SIZE, n_plt)
    candidates = rng.uniform(2, size - 2, (3 * n_plt, 2))
    blocked = [(y, x, r + _PLATELET_GAP) for (y, x), r in zip(wbc_xy, wbc_r, strict=False)]
    keep = _keep_apart(candidates, np.resize(sizes, len(candidates)), blocked, n_plt)
    wbcs = list(zip(wbc_xy, kinds, wbc_r, strict=False))  # fewer than asked when there is no room
    return {"wbc": wbcs, "rbc": rbc_xy, "platelet": candidates[keep],
            "platelet_radius": np.resize(sizes, len(candidates))[keep]}


def _keep_apart(xy: np.ndarray, radii: np.ndarray, blocked: list[tuple[float, float, float]],
                limit: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Indices of the first ``limit`` platelets (in order) that keep ``_PLATELET_GAP`` px from every
    platelet kept before them and from each ``(y, x, radius)`` in ``blocked`` (white cells).
    Platelets of the same ``groups`` value >= 0 (one deliberate clump) may overlap each other."""
    groups = np.full(len(xy), -1) if groups is None else groups
    kept: list[int] = []
    for i, ((y, x), radius) in enumerate(zip(xy, radii, strict=True)):
        if len(kept) == limit:
            break
        reach = _PLATELET_REACH * radius
        if any(np.hypot(by - y, bx - x) < br + reach for by, bx, br in blocked):
            continue
        if kept:
            others = np.asarray(kept)
            near = np.hypot(xy[others, 0] - y, xy[others, 1] - x) < (
                _PLATELET_REACH * radii[others] + reach + _PLATELET_GAP)
            if (near & ((groups[others] < 0) | (groups[others] != groups[i]))).any():
                continue
        kept.append(i)
    return np.asarray(kept, dtype=int)


def _check_size(size: int, cell_diameter: float | None) -> float:
    """The zoom factor (1.0 at the default magnification); refuses sizes nothing fits in."""
    if int(size) < 32:
        raise ValueError(f"blood-smear size must be at least 32 pixels, got {size}")
    if cell_diameter is None:
        return 1.0
    if not 4.0 <= float(cell_diameter) <= 400.0:
        raise ValueError(f"cell_diameter must be between 4 and 400 pixels, got {cell_diameter}")
    return float(cell_diameter) / DEFAULT_CELL_DIAMETER


def _render_cells(rng: np.random.Generator, size: int, zoom: float, style: dict, layout: dict):
    """Optical density and one instance map per class (ids numbered across classes: RBC, platelet, WBC)."""
    od = np.zeros((size, size, 3))
    rbc, plt, wbc = (np.zeros((size, size), np.int32) for _ in range(3))
    ident = 0
    looks = layout.get("rbc_look") or [None] * len(layout["rbc"])
    for (cy, cx), look in zip(layout["rbc"], looks, strict=True):
        ident += 1
        _draw_rbc(od, rbc, rng, cy * zoom, cx * zoom, style["rbc_radius"] * zoom, style["rbc"], ident, look)
    for (cy, cx), radius in zip(layout["platelet"], layout["platelet_radius"], strict=True):
        ident += 1
        _draw_platelet(od, plt, rng, cy * zoom, cx * zoom, radius * zoom, style["platelet"], zoom, ident)
    for (cy, cx), kind, radius in layout["wbc"]:
        ident += 1
        _draw_wbc(od, wbc, rng, cy * zoom, cx * zoom, radius * zoom, kind, style, zoom, ident)
    classes = np.zeros(ident + 1, np.uint8)
    n_rbc, n_plt = len(layout["rbc"]), len(layout["platelet"])
    classes[1 : n_rbc + 1], classes[n_rbc + 1 : n_rbc + n_plt + 1], classes[n_rbc + n_plt + 1 :] = 1, 3, 2
    return od, (rbc, plt, wbc), classes


def _add_variety(extra: np.random.Generator, layout: dict, style: dict, field: float) -> None:
    """Variety beyond the sample data (drawn from a separate stream, so the red cells stay those of
    the plain field): monocytes, a wider range of platelet sizes, platelet clumps (overlapping on
    purpose: one instance id per platelet), more focus blur."""
    rbc_r = style["rbc_radius"]
    layout["wbc"] = [((y, x), "monocyte", rbc_r * extra.uniform(1.8, 2.2)) if extra.random() < 0.25 else (xy, k, r)
                     for (xy, k, r) in layout["wbc"] for (y, x) in [xy]]  # fmt: skip
    xy, radii, groups = [], [], []
    for clump in range(extra.poisson(0.5 * (field / 256.0) ** 2)):
        n = int(extra.integers(3, 8))
        xy.append(extra.uniform(10, field - 10, 2) + extra.normal(0, 0.35 * rbc_r, (n, 2)))
        radii.append(rbc_r * extra.uniform(*_PLATELET_SIZE, n))
        groups.append(np.full(n, clump))
    singles = np.asarray(layout["platelet"], dtype=float).reshape(-1, 2)
    xy.append(singles)
    radii.append(layout["platelet_radius"] * extra.uniform(0.85, 1.35, len(singles)))
    groups.append(np.full(len(singles), -1))
    xy, radii, groups = np.concatenate(xy), np.concatenate(radii), np.concatenate(groups)
    blocked = [(y, x, r + _PLATELET_GAP) for (y, x), _, r in layout["wbc"]]
    keep = _keep_apart(xy, radii, blocked, len(xy), groups)  # clumps first: singles make way for them
    layout["platelet"], layout["platelet_radius"] = xy[keep], radii[keep]
    style["blur"] = extra.uniform(0.5, 2.5)


def _add_hard_negatives(extra: np.random.Generator, layout: dict, style: dict, field: float) -> None:
    """What real smears show that is not a platelet (drawn from a separate stream): red cells that
    overlap a neighbour by a third to half their width (darker lens-shaped overlaps), dark or
    lilac-tinted red-cell rims, crenated (spiky) red cells. All stay labelled ``rbc``."""
    rbc_r = style["rbc_radius"]
    pairs = [xy for xy in layout["rbc"] if extra.random() < 0.2]
    angles = extra.uniform(0, 2 * np.pi, len(pairs))
    gaps = rbc_r * extra.uniform(1.0, 1.4, len(pairs))
    partners = [np.clip((y + g * np.sin(a), x + g * np.cos(a)), -8, field + 8)
                for (y, x), a, g in zip(pairs, angles, gaps, strict=True)]  # fmt: skip
    layout["rbc"] = list(layout["rbc"]) + [(float(y), float(x)) for y, x in partners]
    looks = []
    for _ in layout["rbc"]:
        if extra.random() < 0.4:
            looks.append(None)
            continue
        tint = extra.uniform(0.0, 0.5)
        spikes = int(extra.integers(9, 16)) if extra.random() < 0.25 else 0
        looks.append((extra.uniform(0.5, 1.2), spikes, extra.uniform(0.08, 0.18),
                      (1 - tint) * style["rbc"] + tint * style["platelet"]))
    layout["rbc_look"] = looks


def _add_debris(extra: np.random.Generator, od: np.ndarray, layout: dict, style: dict, zoom: float) -> None:
    """Dark-red fragments and blue-black stain precipitate, smaller than any platelet (radius 0.1-0.25
    red-cell radii) and kept off the platelets; they change no label (background or the cell below)."""
    size, rbc_r = od.shape[0], style["rbc_radius"]
    n = int(extra.poisson(8 * (size / zoom / 256.0) ** 2))
    platelets = np.asarray(layout["platelet"], dtype=float).reshape(-1, 2)
    reach = _PLATELET_REACH * np.asarray(layout["platelet_radius"], dtype=float) + _PLATELET_GAP
    for (y, x), radius in zip(extra.uniform(0, size / zoom, (n, 2)), rbc_r * extra.uniform(0.1, 0.25, n), strict=True):
        if len(platelets) and (np.hypot(platelets[:, 0] - y, platelets[:, 1] - x) < reach + radius).any():
            continue
        stain = style["rbc"] * extra.uniform(1.5, 3.0) if extra.random() < 0.5 else style["nucleus"] * extra.uniform(0.6, 1.2)
        sy, sx, dy, dx = _patch(size, y * zoom, x * zoom, radius * zoom + 2)
        body = np.clip(radius * zoom - np.hypot(dy, dx) + 0.5, 0, 1)
        od[sy, sx] += body[..., None] * stain


def make_smear(size: int, seed: int, cell_diameter: float | None = None, variety: bool = False,
               hard_negatives: bool = False) -> SmearSample:
    """Render one ``size`` x ``size`` smear field with its instance map; same arguments -> same arrays.

    ``cell_diameter`` (px) sets the magnification; ``None`` is :data:`DEFAULT_CELL_DIAMETER`.
    ``variety`` adds monocytes, larger platelets, platelet clumps and a wider focus-blur range.
    ``hard_negatives`` adds what real smears show that is not a platelet: overlapping red cells, dark
    or lilac rims, crenated red cells (labelled ``rbc``), red debris and stain precipitate (unlabelled).
    """
    zoom = _check_size(size, cell_diameter)
    rng = np.random.default_rng(seed)
    style = _slide_style(rng)
    layout = _cell_layout(rng, size / zoom, style)
    if variety:
        _add_variety(np.random.default_rng([seed, 1]), layout, style, size / zoom)
    if hard_negatives:
        _add_hard_negatives(np.random.default_rng([seed, 3]), layout, style, size / zoom)
    od, (rbc, plt, wbc), classes = _render_cells(rng, size, zoom, style, layout)
    if hard_negatives:
        _add_debris(np.random.default_rng([seed, 4]), od, layout, style, zoom)
    instances = np.where(plt > 0, plt, rbc)
    instances[wbc > 0] = wbc[wbc > 0]
    label = classes[instances]
    image = _illumination(size, style) * np.exp(-od)
    blur = style["blur"] * zoom
    image = ndimage.gaussian_filter(image, (blur, blur, 0))
    image += rng.normal(0, style["noise"], image.shape) + rng.normal(0, style["noise"] * 0.5, (size, size, 1))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return SmearSample(image, label, instances, classes, style["rbc_radius"] * 2 * zoom)


def make_blood_smear(size: int, seed: int, cell_diameter: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render one ``size`` x ``size`` smear field; same ``seed`` -> identical arrays.

    Returns ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)`` with labels 0 background,
    1 RBC, 2 WBC, 3 platelet (overlaps: WBC > platelet > RBC). See :func:`make_smear` for the
    instance map and ``cell_diameter``.
    """
    sample = make_smear(size, seed, cell_diameter)
    return sample.image, sample.label
