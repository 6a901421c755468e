"""A self-contained HTML evaluation report: one file, no network access, opens in any browser.

Takes plain values (rows of numbers, arrays, PNG bytes), not engine types, so it sits below the
engine. Pictures are base64 PNG data URIs; the CSS and the few lines of JavaScript that sort the
per-case table (click a column header) are inline.

- :func:`case_panel_png`: a 2D case as image | truth | prediction side by side; a 3D case as three
  rows (sagittal, coronal, axial) through the centre of the largest connected error region.
  Thumbnails are downscaled to ``size`` pixels per panel and palette-quantised (small files).
- :func:`render_report`: the page (summary per class, sortable per-case table, worst cases, curves).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from medseg_dfl.visualize.overlays import CLASS_COLOURS

__all__ = ["CaseFigure", "SummaryRow", "case_panel_png", "error_centre", "png_data_uri", "render_report"]

_ALPHA = 0.45
_GAP = 4  # pixels between panels
_MAX_ZOOM = 4.0


@dataclass(frozen=True)
class SummaryRow:
    """One foreground class: metric -> (mean, std, n) over the cases."""

    name: str
    stats: dict[str, tuple[float, float, int]]


@dataclass(frozen=True)
class CaseFigure:
    case_id: str
    caption: str
    png: bytes


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _grey_or_rgb(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """(H, W[, C]) any dtype -> (H, W, 3) uint8, 1st..99th percentile stretched; black when None."""
    if image is None:
        return np.zeros((*shape, 3), np.uint8)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
    else:
        image = np.repeat(image[..., None], 3, axis=-1)
    low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 1.0)
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0, 1)
    return (scaled * 255).astype(np.uint8)


def _paint(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.astype(np.float32)
    for label in np.unique(mask):
        if label == 0:
            continue
        colour = np.array(CLASS_COLOURS[(int(label) - 1) % len(CLASS_COLOURS)], np.float32)
        where = mask == label
        out[where] = (1 - _ALPHA) * out[where] + _ALPHA * colour
    return out.astype(np.uint8)


def _fit(array: np.ndarray, size: int, aspect: float, nearest: bool) -> Image.Image:
    """Resize an (H, W[, 3]) array so its longer display side is ``size`` (aspect = row/col spacing);
    a small one grows at most ``_MAX_ZOOM`` times (a 64-voxel slice is unreadable at 64 px)."""
    h, w = array.shape[0] * aspect, array.shape[1]
    scale = min(_MAX_ZOOM, size / max(h, w))
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    picture = Image.fromarray(array)
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return picture if target == picture.size else picture.resize(target, resample)


def _row(image: np.ndarray | None, truth: np.ndarray, prediction: np.ndarray, size: int, aspect: float) -> Image.Image:
    base = _grey_or_rgb(image, truth.shape)
    panels = [_fit(base, size, aspect, False), _fit(_paint(base, truth), size, aspect, False),
              _fit(_paint(base, prediction), size, aspect, False)]  # fmt: skip
    w, h = panels[0].size
    row = Image.new("RGB", (3 * w + 2 * _GAP, h), (255, 255, 255))
    for i, panel in enumerate(panels):
        row.paste(panel, (i * (w + _GAP), 0))
    return row


def error_centre(truth: np.ndarray, prediction: np.ndarray) -> tuple[int, ...]:
    """Centre (voxel index) of the largest connected region where prediction and truth disagree;
    of the truth's foreground when they agree everywhere; of the volume when both are empty."""
    for region in (truth != prediction, truth > 0):
        labels, count = ndimage.label(region)
        if count:
            largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
            return tuple(int(round(c)) for c in ndimage.center_of_mass(labels == largest))
    return tuple(n // 2 for n in truth.shape)


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # An adaptive palette: a quarter of the size of an RGB PNG of a stained smear, and looks the same.
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def case_panel_png(image: np.ndarray | None, truth: np.ndarray, prediction: np.ndarray, *, size: int = 200,
                   spacing: Sequence[float] | None = None) -> bytes:  # fmt: skip
    """PNG of image | truth | prediction (colours over the image, black without one).

    2D: arrays in display order, rows first: image (H, W) or (H, W, C), masks (H, W). 3D: image
    (X, Y, Z), masks (X, Y, Z) in voxel order with ``spacing``; three rows (sagittal, coronal, axial)
    through :func:`error_centre`, superior/anterior up.
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    if truth.ndim == 2:
        return _png(_row(image, truth, prediction, size, 1.0))
    if truth.ndim != 3:
        raise ValueError(f"need a 2D or 3D label map, got shape {truth.shape}")
    spacing = list(spacing) if spacing is not None else [1.0, 1.0, 1.0]
    rows = []
    for axis, index in enumerate(error_centre(truth, prediction)):
        plane_axes = [a for a in range(3) if a != axis]

        def plane(a: np.ndarray, axis: int = axis, index: int = index) -> np.ndarray:
            return np.flipud(np.take(a, index, axis=axis).T)  # (vertical, horizontal), second axis up

        aspect = float(spacing[plane_axes[1]]) / float(spacing[plane_axes[0]])
        rows.append(_row(None if image is None else plane(np.asarray(image)), plane(truth), plane(prediction),
                         size, aspect))  # fmt: skip
    width = max(r.size[0] for r in rows)
    sheet = Image.new("RGB", (width, sum(r.size[1] for r in rows) + _GAP * 2), (255, 255, 255))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.size[1] + _GAP
    return _png(sheet)


def legend_png(class_names: Sequence[str]) -> bytes:
    """A small strip of the class colours with their names (foreground classes)."""
    picture = Image.new("RGB", (170 * max(1, len(class_names) - 1), 20), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    for i, name in enumerate(class_names[1:]):
        draw.rectangle((i * 170 + 2, 4, i * 170 + 16, 16), fill=CLASS_COLOURS[i % len(CLASS_COLOURS)])
        draw.text((i * 170 + 22, 4), name[:24], fill=(0, 0, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _number(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _sort_key(value: float | str) -> str:
    if isinstance(value, str):
        return html.escape(value, quote=True)
    return "" if math.isnan(value) else ("1e308" if math.isinf(value) else repr(float(value)))


_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}
#cases th{cursor:pointer}#cases th:hover{background:#e0e8ff}.bad{background:#fde2e2}
figure{display:inline-block;margin:6px 12px 12px 0;vertical-align:top}figcaption{font-size:12px;color:#444}
.note{color:#666;font-size:12px}"""

# Click a header: sort by that column (numbers by value, n/a last); click again: reverse.
_SCRIPT = """function sortBy(th){const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th),
b=t.tBodies[0],asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
const v=r=>r.children[i].dataset.v;[...b.rows].sort((x,y)=>{const a=v(x),c=v(y);
if(a===''||c==='')return (a==='')-(c==='');const p=parseFloat(a),q=parseFloat(c);
const d=isNaN(p)||isNaN(q)?a.localeCompare(c):p-q;return asc?d:-d}).forEach(r=>b.appendChild(r))}"""


def _summary_html(summary: Sequence[SummaryRow], metrics: Sequence[str], units: dict[str, str], cases: int) -> str:
    head = "".join(f"<th>{html.escape(m + units.get(m, ''))}</th>" for m in metrics)
    body = []
    for row in summary:
        cells = []
        for m in metrics:
            mean, std, n = row.stats[m]
            digits = 3 if m in ("dice", "iou") else 2
            partial = f" (n={n})" if n < cases else ""
            cells.append(f"<td>{_number(mean, digits)} ± {_number(std, digits)}{partial}</td>" if n else "<td>n/a</td>")
        body.append(f"<tr><td>{html.escape(row.name)}</td>{''.join(cells)}</tr>")
    return f'<table id="summary"><thead><tr><th>class</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _cases_html(columns: Sequence[str], rows: Sequence[Sequence[float | str]], flag_below: float) -> str:
    head = "".join(f'<th onclick="sortBy(this)">{html.escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in row:
            text = html.escape(value) if isinstance(value, str) else _number(value, 3)
            cls = ' class="bad"' if not isinstance(value, str) and value < flag_below else ""
            cells.append(f'<td data-v="{_sort_key(value)}"{cls}>{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table id="cases"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render_report(
    *,
    title: str,
    class_names: Sequence[str],
    summary: Sequence[SummaryRow],
    metrics: Sequence[str],
    case_columns: Sequence[str],
    case_rows: Sequence[Sequence[float | str]],
    worst: Sequence[CaseFigure] = (),
    curves_png: bytes | None = None,
    notes: Sequence[str] = (),
    units: dict[str, str] | None = None,
    flag_below: float = 0.5,
) -> str:
    """The HTML page. ``case_rows``: one row per case (first column its name, then numbers, NaN =
    not scored), in ``case_columns`` order; cells below ``flag_below`` are shaded."""
    sections = [f"<h1>{html.escape(title)}</h1>"]
    sections += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    sections.append("<h2>Summary per class (mean ± std over cases)</h2>")
    sections.append(_summary_html(summary, metrics, units or {}, len(case_rows)))
    if worst:
        sections.append(f"<h2>Worst {len(worst)} case(s) by mean foreground Dice</h2>")
        sections.append(f'<p>image | truth | prediction &nbsp; <img alt="legend" src="{png_data_uri(legend_png(class_names))}"></p>')
        sections += [f'<figure><img alt="{html.escape(f.case_id)}" src="{png_data_uri(f.png)}">'
                     f"<figcaption>{html.escape(f.caption)}</figcaption></figure>" for f in worst]  # fmt: skip
    if curves_png is not None:
        sections.append("<h2>Training curves</h2>")
        sections.append(f'<img alt="training curves" style="max-width:100%" src="{png_data_uri(curves_png)}">')
    sections.append(f"<h2>Per case ({len(case_rows)}; click a column to sort)</h2>")
    sections.append(_cases_html(case_columns, case_rows, flag_below))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head>\n<body>\n" + "\n".join(sections)
            + "\n</body></html>\n")  # fmt: skip
