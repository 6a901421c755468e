"""Cell detection and counts on real smears: BCCD boxes against ``medseg-dfl count``'s cells.

BCCD (MIT licence; ``../shared/datasets/BCCD``: JPEGImages + Pascal VOC Annotations, split lists
in ImageSets/Main) has boxes, not masks, so cells are scored as detections: a found cell matches an
unmatched box of its class when its centroid lies inside the box (each box matched once, the
nearest box centre first). Per class: precision (matched cells / cells found) and recall (matched
boxes / boxes). Counts: white-cell count exact (share of images), platelet count mean absolute
error, red-cell count median relative error (BCCD leaves many red cells unboxed: see the worst
images). Beside it, the constant guess "1 white cell, 0 platelets, the median red-cell count of the
split" (it finds nothing, so it has no precision or recall).

Prints a markdown table and writes per-image rows (``--output``) and a few overlays with the boxes
(``--overlays``, thin rectangles in the class colour; the found cells' contours and numbers).
Also reports the counting time per image beyond the network (resampling, instances, measurements).

    python benchmarks/bccd_counts.py /tmp/demo_run/best.pt --split trainval \\
        --output docs/results/bccd/per_image.csv --overlays docs/results/bccd
    # a model trained on BCCD's train.txt (medseg-dfl datasets fetch bccd-masks): score it on val.txt
    python benchmarks/bccd_counts.py /tmp/bccd_run/best.pt --split val
    # the weak training masks themselves, scored the same way
    python benchmarks/bccd_counts.py - --split val --weak-masks all
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from bccd_reference import (
    ErrorCrops,
    assign,
    hand_count_errors,
    read_hand_counts,
    read_platelet_review,
    reviewed_boxes,
)
from PIL import Image, ImageDraw
from scipy import ndimage

from medseg_dfl.cells.instances import cell_kind, label_instances
from medseg_dfl.datasets.bccd_masks import CLASS_NAMES, MaskParams, mask_from_boxes, source_cell_diameter
from medseg_dfl.engine.counting import CountOptions, SmearCounter
from medseg_dfl.io.atomic import write_bytes, write_text
from medseg_dfl.visualize.cells_overlay import CLASS_COLOURS, draw_cells

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "BCCD"
_BOX_KIND = {"RBC": "rbc", "WBC": "wbc", "Platelets": "platelet"}
KINDS = ("rbc", "wbc", "platelet")


def read_boxes(xml_path: Path) -> list[tuple[str, float, float, float, float]]:
    """(kind, xmin, ymin, xmax, ymax) per object of a VOC annotation."""
    boxes = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        kind = _BOX_KIND.get((obj.findtext("name") or "").strip())
        box = obj.find("bndbox")
        if kind is None or box is None:
            continue
        boxes.append((kind, *(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return boxes


def match(cells: list[tuple[str, float, float]], boxes: list[tuple[str, float, float, float, float]]) -> dict:
    """Per kind: cells found, boxes, matches (``bccd_reference.assign``)."""
    result = {k: {"found": 0, "boxes": 0, "matched": 0} for k in KINDS}
    for kind, *_ in boxes:
        result[kind]["boxes"] += 1
    cells = [c for c in cells if c[0] in result]
    for (kind, _, _), box in zip(cells, assign(cells, boxes)[0], strict=True):
        result[kind]["found"] += 1
        result[kind]["matched"] += box is not None
    return result


def cell_centroids(result) -> list[tuple[str, float, float]]:
    return instance_centroids(result.cells)


def instance_centroids(cells) -> list[tuple[str, float, float]]:
    if cells.count == 0:
        return []
    centres = ndimage.center_of_mass(np.ones(cells.labels.shape), cells.labels, np.arange(1, cells.count + 1))
    return [(cell_kind(cells.class_names[cells.classes[i + 1]]), col, row) for i, (row, col) in enumerate(centres)]


def save_overlay(path: Path, result, boxes) -> None:
    picture = Image.fromarray(draw_cells(result.rgb, result.cells, result.scale.cell_diameter_px))
    draw = ImageDraw.Draw(picture)
    for kind, x0, y0, x1, y1 in boxes:
        draw.rectangle([x0, y0, x1, y1], outline=CLASS_COLOURS[kind], width=1)
    buffer = io.BytesIO()
    picture.quantize(128).save(buffer, format="PNG", optimize=True)  # small enough for the repository
    write_bytes(path, buffer.getvalue())


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def summarise(rows: list[dict]) -> dict[str, float]:
    total = {k: {f: sum(r[f"{k}_{f}"] for r in rows) for f in ("found", "boxes", "matched")} for k in KINDS}
    rbc_rel = [abs(r["rbc_found"] - r["rbc_boxes"]) / r["rbc_boxes"] for r in rows if r["rbc_boxes"]]
    median_rbc = float(np.median([r["rbc_boxes"] for r in rows]))
    const_rel = [abs(median_rbc - r["rbc_boxes"]) / r["rbc_boxes"] for r in rows if r["rbc_boxes"]]
    return {
        "wbc_precision": _ratio(total["wbc"]["matched"], total["wbc"]["found"]),
        "wbc_recall": _ratio(total["wbc"]["matched"], total["wbc"]["boxes"]),
        "platelet_precision": _ratio(total["platelet"]["matched"], total["platelet"]["found"]),
        "platelet_recall": _ratio(total["platelet"]["matched"], total["platelet"]["boxes"]),
        "rbc_precision": _ratio(total["rbc"]["matched"], total["rbc"]["found"]),
        "rbc_recall": _ratio(total["rbc"]["matched"], total["rbc"]["boxes"]),
        "wbc_count_exact": float(np.mean([r["wbc_found"] == r["wbc_boxes"] for r in rows])),
        "platelet_mae": float(np.mean([abs(r["platelet_found"] - r["platelet_boxes"]) for r in rows])),
        "rbc_median_rel_error": float(np.median(rbc_rel)),
        "const_wbc_count_exact": float(np.mean([r["wbc_boxes"] == 1 for r in rows])),
        "const_platelet_mae": float(np.mean([r["platelet_boxes"] for r in rows])),
        "const_rbc_median_rel_error": float(np.median(const_rel)),
        "const_rbc_count": median_rbc,
    }


def table(s: dict[str, float], n: int, label: str, row: str = "medseg-dfl count") -> str:
    lines = [
        f"BCCD, {n} images; {label}",
        "",
        "| | WBC P | WBC R | platelet P | platelet R | RBC P | RBC R | WBC count exact | platelet MAE | "
        "RBC median rel. err |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {row} | {s['wbc_precision']:.2f} | {s['wbc_recall']:.2f} | {s['platelet_precision']:.2f} | "
        f"{s['platelet_recall']:.2f} | {s['rbc_precision']:.2f} | {s['rbc_recall']:.2f} | "
        f"{100 * s['wbc_count_exact']:.0f} % | {s['platelet_mae']:.2f} | {100 * s['rbc_median_rel_error']:.0f} % |",
        f"| constant guess (1 WBC, 0 platelets, {s['const_rbc_count']:.0f} RBC) | - | - | - | - | - | - | "
        f"{100 * s['const_wbc_count_exact']:.0f} % | {s['const_platelet_mae']:.2f} | "
        f"{100 * s['const_rbc_median_rel_error']:.0f} % |",
        "| target | 0.90 | 0.90 | 0.80 | 0.80 | | | | 0.50 | 20 % |",
    ]
    return "\n".join(lines)


def weak_mask_rows(data: Path, names: list[str], unboxed_platelets: bool) -> list[dict]:
    """Per-image scores of the weak training masks themselves (``bccd_masks.mask_from_boxes``, at
    the converter's one diameter): how far a network that learnt them perfectly could get."""
    images = [data / "JPEGImages" / f"{n}.jpg" for n in names]
    params = MaskParams(unboxed_platelets=unboxed_platelets)
    diameter = float(np.median(source_cell_diameter(images, params)))
    rows = []
    for name, image in zip(names, images, strict=True):
        boxes = read_boxes(data / "Annotations" / f"{name}.xml")
        rgb = np.asarray(Image.open(image).convert("RGB"))
        kept = [(k, *(round(v) for v in b)) for k, *b in boxes if b[2] > b[0] and b[3] > b[1]]
        cells = label_instances(mask_from_boxes(rgb, kept, diameter, params), list(CLASS_NAMES), diameter)
        scores = match(instance_centroids(cells), boxes)
        rows.append({"image": name, **{f"{k}_{f}": scores[k][f] for k in KINDS for f in ("found", "boxes", "matched")}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="checkpoint (best.pt) or run folder ('-' with --weak-masks)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="trainval", help="ImageSets/Main/<split>.txt")
    parser.add_argument("--limit", type=int, default=None, help="first N images of the split")
    parser.add_argument("--cell-diameter", type=float, default=None, help="fixed red-cell diameter (px)")
    parser.add_argument("--platelet-width", type=float, default=None,
                        help="InstanceParams.platelet_width (half-width of the thinnest platelet, red-cell diameters)")
    parser.add_argument("--platelet-clump", type=float, default=None,
                        help="InstanceParams.clump (platelet blobs at least this many red-cell areas are split at "
                             "necks; BCCD's platelets are ~0.1, so 1 keeps them whole)")
    parser.add_argument("--min-platelet-probability", type=float, default=None,
                        help="InstanceParams.min_platelet_probability (drop platelets whose mean probability of "
                             "their class is lower; default: the model's count_rules, as count; 0: off)")
    parser.add_argument("--no-tta", action="store_true", help="count without mirroring (count --no-tta)")
    parser.add_argument("--weak-masks", choices=("all", "boxed-only"), default=None,
                        help="score the bccd-masks training labels instead of a model (all: with unboxed "
                             "stained blobs as platelets, the converter's default; boxed-only: without)")
    parser.add_argument("--output", type=Path, default=None, help="per-image CSV")
    parser.add_argument("--overlays", type=Path, default=None, help="folder for a few overlays")
    parser.add_argument("--overlay-count", type=int, default=3)
    parser.add_argument("--platelet-review", type=Path, default=None,
                        help="reviewed unboxed platelets (docs/results/bccd/platelet_review_val.csv): a second "
                             "table with them added to the boxes")
    parser.add_argument("--rbc-hand-counts", type=Path, default=None,
                        help="red cells counted by eye (docs/results/bccd/rbc_hand_counts_val.csv)")
    parser.add_argument("--error-crops", type=Path, default=None,
                        help="folder: crops of every unmatched platelet and missed platelet box, to review")
    args = parser.parse_args()

    split = args.data / "ImageSets" / "Main" / f"{args.split}.txt"
    if not split.is_file():
        raise SystemExit(f"BCCD split list not found: {split}")
    names = [n.strip() for n in split.read_text().split() if n.strip()][: args.limit]
    if args.weak_masks is not None:
        rows = weak_mask_rows(args.data, names, args.weak_masks == "all")
        print(table(summarise(rows), len(rows), f"the weak masks themselves ({args.weak_masks})",
                    f"weak masks ({args.weak_masks})"))
        return
    counter = SmearCounter.from_checkpoint(args.model, "cpu", tta=not args.no_tta)
    changed = {"platelet_width": args.platelet_width, "clump": args.platelet_clump,
               "min_platelet_probability": args.min_platelet_probability}
    # As count: the model's own rules (count_rules), with the flags given on top.
    params = dataclasses.replace(counter.rules, **{k: v for k, v in changed.items() if v is not None})
    options = CountOptions(cell_diameter=args.cell_diameter, instance_params=params, tta=not args.no_tta)
    review = read_platelet_review(args.platelet_review) if args.platelet_review else None
    rows, reviewed_rows, counting, counting_cpu, network = [], [], [], [], []
    crops = ErrorCrops() if args.error_crops is not None else None
    for index, name in enumerate(names):
        image, xml = args.data / "JPEGImages" / f"{name}.jpg", args.data / "Annotations" / f"{name}.xml"
        if not image.is_file() or not xml.is_file():
            continue
        boxes = read_boxes(xml)
        result = counter.count(image, options)
        counting.append(result.counting_seconds)
        counting_cpu.append(result.counting_cpu_seconds)
        network.append(result.network_seconds)
        scores = match(cell_centroids(result), boxes)
        row = {"image": name, "cell_diameter_px": round(result.scale.cell_diameter_px, 1)}
        row.update({f"{k}_{f}": scores[k][f] for k in KINDS for f in ("found", "boxes", "matched")})
        rows.append(row)
        if review is not None:
            extra = reviewed_boxes(review, name, result.scale.cell_diameter_px)
            scores = match(cell_centroids(result), boxes + extra)
            reviewed_rows.append({**row, **{f"{k}_{f}": scores[k][f] for k in KINDS for f in ("found", "boxes", "matched")}})
        if crops is not None:
            crops.add(name, result.rgb, cell_centroids(result), boxes)
        if args.overlays is not None and index < args.overlay_count:
            save_overlay(args.overlays / f"{name}_overlay.png", result, boxes)
    if not rows:
        raise SystemExit("no annotated images found")
    label = (f"platelet_width {params.platelet_width:g}, clump {params.clump:g}, "
             f"min_platelet_probability {params.min_platelet_probability:g}; model red cells {counter.model_diameter:.1f} px ({counter.model_scale_source}); input scale "
             + (f"--cell-diameter {args.cell_diameter:g}" if args.cell_diameter else "estimated per image"))  # fmt: skip
    print(table(summarise(rows), len(rows), label))
    if review is not None:
        print("\n" + table(summarise(reviewed_rows), len(rows), f"BCCD boxes + the platelets of {args.platelet_review.name}"))
    if args.rbc_hand_counts is not None:
        print("\n" + hand_count_errors(rows, read_hand_counts(args.rbc_hand_counts)))
    if crops is not None:
        crops.save(args.error_crops, args.split)
    diameters = [r["cell_diameter_px"] for r in rows]
    print(f"\nestimated red-cell diameter: median {np.median(diameters):.1f} px "
          f"(5-95 %: {np.percentile(diameters, 5):.1f}-{np.percentile(diameters, 95):.1f})")  # fmt: skip
    print(f"counting beyond the network: median {np.median(counting):.3f} s/image wall (max {max(counting):.3f}), "
          f"{np.median(counting_cpu):.3f} s CPU; network: median {np.median(network):.3f} s/image wall; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    worst = sorted(rows, key=lambda r: -abs(r["rbc_found"] - r["rbc_boxes"]) / max(r["rbc_boxes"], 1))[:5]
    print("worst red-cell counts (found / boxed): "
          + ", ".join(f"{r['image']} {r['rbc_found']}/{r['rbc_boxes']}" for r in worst))  # fmt: skip
    if args.output is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(args.output, buffer.getvalue())


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
