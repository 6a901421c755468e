"""``bccd``: the BCCD blood smears (GitHub ``Shenggan/BCCD_Dataset``): images and box counts, no masks.

Source layout (the repository root, or its ``BCCD/`` folder): ``JPEGImages/*.jpg``,
``Annotations/*.xml`` (Pascal VOC, classes ``RBC``, ``WBC``, ``Platelets``) and
``ImageSets/Main/*.txt``. Output, for count checks:

- ``images/*.jpg`` (copied unchanged) and ``annotations/*.xml`` (the VOC files, unchanged);
- ``boxes.csv``: ``image,class,xmin,ymin,xmax,ymax`` (class ``rbc``/``wbc``/``platelet``, pixel
  coordinates as in the XML); zero-area boxes (annotation slips) are left out and counted;
- ``counts.csv``: ``image,rbc,wbc,platelet`` (boxes per image and class);
- ``splits/*.txt`` (the source's image sets, limited to the images converted) and ``dataset.json`` (metadata, no
  training list: there are no masks to train on).
"""

from __future__ import annotations

import csv
import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from medseg_dfl.datasets._staging import find_root, source_folder, write_provenance
from medseg_dfl.datasets.registry import DatasetInfo
from medseg_dfl.io.atomic import write_text
from medseg_dfl.io.dataset_json import write_dataset_json
from medseg_dfl.progress import ProgressCallback, report

__all__ = ["ARCHIVE_URL", "BOX_COLUMNS", "CLASSES", "Box", "bccd_source_root", "convert", "parse_annotation"]

ARCHIVE_URL = "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip"
CLASSES = {"RBC": "rbc", "WBC": "wbc", "Platelets": "platelet"}
BOX_COLUMNS = ("image", "class", "xmin", "ymin", "xmax", "ymax")

Box = tuple[str, int, int, int, int]  # class, xmin, ymin, xmax, ymax


def parse_annotation(path: Path) -> list[Box]:
    """The boxes of one VOC XML file, in file order (zero-area boxes included)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a readable VOC XML file ({err})") from err
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise ValueError(f"{path}: unknown class {name!r} (expected one of {', '.join(CLASSES)})")
        box = obj.find("bndbox")
        try:
            coords = [round(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr, arg-type]
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"{path}: a {name} object without a complete numeric bndbox") from None
        boxes.append((CLASSES[name], *coords))
    return boxes


def _is_bccd(path: Path) -> bool:
    return (path / "JPEGImages").is_dir() and (path / "Annotations").is_dir()


def bccd_source_root(source: Path | None, work: Path) -> Path:
    base = source_folder(source, work, ARCHIVE_URL, "BCCD_Dataset.zip")
    repo = find_root(base, lambda p: _is_bccd(p) or _is_bccd(p / "BCCD"), "the BCCD layout (JPEGImages/ + Annotations/)",
                     source or ARCHIVE_URL)
    return repo if _is_bccd(repo) else repo / "BCCD"


def _csv_text(header: tuple[str, ...], rows: list[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _convert_images(root: Path, out: Path, progress: ProgressCallback | None) -> tuple[list, list, int, int]:
    """Copy images + XML, collect box and count rows; (boxes, counts, zero-area boxes, images without XML)."""
    xmls = sorted(p for p in (root / "Annotations").glob("*.xml") if not p.name.startswith("."))
    if not xmls:
        raise FileNotFoundError(f"{root / 'Annotations'}: no .xml annotations")
    box_rows, count_rows, degenerate = [], [], 0
    for done, xml in enumerate(xmls, start=1):
        image = root / "JPEGImages" / f"{xml.stem}.jpg"
        if not image.is_file():
            raise FileNotFoundError(f"{xml}: its image {image} is missing")
        boxes = parse_annotation(xml)
        kept = [b for b in boxes if b[3] > b[1] and b[4] > b[2]]
        degenerate += len(boxes) - len(kept)
        box_rows += [(image.name, *b) for b in kept]
        count_rows.append((image.name, *(sum(b[0] == c for b in kept) for c in CLASSES.values())))
        shutil.copyfile(image, out / "images" / image.name)
        shutil.copyfile(xml, out / "annotations" / xml.name)
        report(progress, done, len(xmls), image.name)
    jpgs = {p.stem for p in (root / "JPEGImages").glob("*.jpg")}
    return box_rows, count_rows, degenerate, len(jpgs - {x.stem for x in xmls})


def _write_splits(root: Path, out: Path, converted: set[str]) -> dict[str, int]:
    """The source's image sets, restricted to the converted images (in source order); their sizes."""
    splits = {}
    for split in sorted((root / "ImageSets" / "Main").glob("*.txt")):
        names = [n for n in split.read_text().split() if n in converted]
        write_text(out / "splits" / split.name, "".join(f"{n}\n" for n in names))
        splits[split.stem] = len(names)
    return splits


def convert(info: DatasetInfo, source: Path | None, out: Path, work: Path, progress: ProgressCallback | None) -> None:
    root = bccd_source_root(source, work)
    for sub in ("images", "annotations", "splits"):
        (out / sub).mkdir()
    box_rows, count_rows, degenerate, unannotated = _convert_images(root, out, progress)
    splits = _write_splits(root, out, {Path(r[0]).stem for r in count_rows})
    write_text(out / "boxes.csv", _csv_text(BOX_COLUMNS, box_rows))
    write_text(out / "counts.csv", _csv_text(("image", *CLASSES.values()), count_rows))
    totals = {c: sum(r[i + 1] for r in count_rows) for i, c in enumerate(CLASSES.values())}
    conversion = {"boxes": totals, "zero_area_boxes_dropped": degenerate,
                  "images_without_annotation_skipped": unannotated, "splits": splits}
    write_dataset_json(out, {
        "name": "BCCD", "description": "Blood smears with VOC boxes; counts.csv and boxes.csv, no masks",
        "reference": info.citation, "licence": info.licence, "source": info.source, "tensorImageSize": "2D",
        "modality": {"0": "RGB"}, "box_classes": list(CLASSES.values()), "numImages": len(count_rows),
        "files": {"images": "images/", "boxes": "boxes.csv", "counts": "counts.csv", "splits": "splits/"},
        "conversion": conversion,
    })
    notes = (f"{len(count_rows)} images with {sum(totals.values())} boxes {totals}; {degenerate} zero-area "
             f"boxes left out; {unannotated} images without annotation skipped; splits {splits}. RBC boxes "
             "are known to be incomplete (missing/merged cells): WBC and platelet counts are the reliable ones.")
    write_provenance(out, title=info.title, source=info.source, licence=info.licence, citation=info.citation,
                     notes=notes, licence_file=root / "LICENSE" if (root / "LICENSE").is_file() else root.parent / "LICENSE")
