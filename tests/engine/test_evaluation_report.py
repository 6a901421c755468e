"""The HTML evaluation report: one self-contained file whose tables hold the evaluation's values and
whose pictures decode (parsed with html.parser: no browser here)."""

from __future__ import annotations

import base64
import io
import math
from html.parser import HTMLParser

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.engine.evaluation import evaluate_folders
from medseg_dfl.engine.evaluation_report import case_mean_dice, find_run_metrics, write_html_report
from medseg_dfl.visualize.report import case_panel_png, error_centre

NAMES = ["background", "cell", "nucleus"]


class Page(HTMLParser):
    """Tables (id -> rows of (text, data-v)), images (alt, src), scripts and outside links."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.images: list[tuple[str, str]] = []
        self.links: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._value: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell, self._value = [], a.get("data-v")
        elif tag == "img":
            self.images.append((a.get("alt", ""), a["src"]))
        if tag in ("link", "script", "a") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(("".join(self._cell).strip(), self._value))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def decode(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    picture.load()
    return picture


def write_2d_cases(root, n=5):
    """Images (H=30, W=40 RGB), truths and predictions whose Dice falls with the case number."""
    for folder in ("images", "truth", "pred"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        truth = np.zeros((30, 40), np.uint8)
        truth[5:25, 5:35] = 1
        truth[10:20, 15:25] = 2
        pred = truth.copy()
        pred[5 : 5 + 4 * i, 5:35] = 0  # case i loses 4*i rows of the cell
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(truth).save(root / "truth" / f"c{i}.png")
        Image.fromarray(pred).save(root / "pred" / f"c{i}.png")
    return root / "pred", root / "truth"


def test_2d_report_tables_pictures_and_curves(tmp_path):
    pred, truth = write_2d_cases(tmp_path)
    report = evaluate_folders(pred, truth, NAMES)
    metrics = tmp_path / "run" / "metrics.csv"
    metrics.parent.mkdir()
    metrics.write_text("epoch,train_loss,val_loss,dice_cell,dice_nucleus,mean_fg_dice,lr,seconds\n"
                       "1,0.9,0.8,0.5,0.2,0.35,0.003,1.0\n2,0.7,,,,,0.002,1.0\n3,0.5,0.4,0.8,0.6,0.7,0.001,1.0\n")  # fmt: skip
    out = write_html_report(report, tmp_path / "r.html", run_metrics=metrics, worst=3)
    page = parse(out)
    assert page.links == []  # nothing fetched from outside the file
    # Per case: header + 5 rows; the values are the evaluation's.
    header, *rows = page.tables["cases"]
    assert [h for h, _ in header] == ["case", "mean Dice", "Dice cell", "Dice nucleus", "mean HD95 (px)"]
    assert len(rows) == 5
    for case, row in zip(report.cases, rows, strict=True):
        assert row[0][0] == case.case_id
        assert float(row[1][1]) == pytest.approx(case_mean_dice(case))
        assert float(row[2][0]) == pytest.approx(case.metrics["dice"][0], abs=5e-4)
    # Summary per class: mean ± std as the summary() gives them.
    summary = {r[0][0]: r for r in page.tables["summary"][1:]}
    dice = report.summary()["cell"]["dice"]
    assert summary["cell"][1][0] == f"{dice['mean']:.3f} ± {dice['std']:.3f}"
    # Worst 3 cases drawn, lowest Dice first: image | truth | prediction side by side (small ones zoomed 4x).
    figures = [(alt, decode(src)) for alt, src in page.images if alt.startswith("c")]
    assert [alt for alt, _ in figures] == ["c4", "c3", "c2"]
    assert figures[0][1].size == (3 * 160 + 2 * 4, 120)
    first = np.asarray(figures[0][1].convert("RGB").resize((3 * 40 + 2, 30), Image.Resampling.BOX))
    image = np.asarray(Image.open(tmp_path / "images" / "c4.png"))
    assert np.abs(first[:, :40].astype(int) - image).mean() < 60  # left panel: the image (stretched, quantised)
    truth_panel, pred_panel = (np.asarray(figures[0][1])[:, x : x + 160] for x in (164, 328))
    assert not np.array_equal(truth_panel, pred_panel)  # truth and prediction panels differ
    curves = [decode(src) for alt, src in page.images if alt == "training curves"]
    assert len(curves) == 1 and curves[0].size[0] > 500
    assert "onclick=\"sortBy(this)\"" in out.read_text()


def test_3d_report_draws_three_planes_through_the_largest_error(tmp_path):
    for folder in ("pred", "truth"):
        (tmp_path / folder).mkdir()
    truth = np.zeros((20, 24, 10), np.uint8)
    truth[4:16, 4:20, 2:8] = 1
    pred = truth.copy()
    pred[4:8, 4:10, 2:6] = 0  # the largest error: a 4x6x4 block missed
    pred[15, 19, 7] = 0  # and one stray voxel
    assert error_centre(truth, pred) == (6, 6, 4)  # centre (5.5, 6.5, 3.5) of the block, rounded half to even
    affine = np.diag([1.0, 1.0, 2.5, 1.0])
    for folder, data in (("pred", pred), ("truth", truth)):
        nib.save(nib.Nifti1Image(data, affine), tmp_path / folder / "v.nii.gz")
    report = evaluate_folders(tmp_path / "pred", tmp_path / "truth", ["background", "organ"])
    page = parse(write_html_report(report, tmp_path / "r.html"))
    (figure,) = [decode(src) for alt, src in page.images if alt == "v"]
    # Three rows (sagittal 24 x 10*2.5, coronal 20 x 25, axial 20 x 24, zoomed 4x) of three panels each.
    assert figure.size == (3 * 96 + 2 * 4, 100 + 100 + 96 + 2 * 4)
    assert [h for h, _ in page.tables["cases"][0]][-1] == "mean HD95 (mm)"


def test_panel_downscales_large_images():
    truth = np.zeros((600, 900), np.uint8)
    truth[100:300, 200:500] = 1
    picture = Image.open(io.BytesIO(case_panel_png(None, truth, np.roll(truth, 20, axis=0), size=150)))
    assert picture.size == (3 * 150 + 2 * 4, 100)


def test_run_metrics_found_beside_the_predictions(tmp_path):
    (tmp_path / "run" / "masks").mkdir(parents=True)
    assert find_run_metrics(tmp_path / "run" / "masks") is None
    (tmp_path / "run" / "metrics.csv").write_text("epoch\n")
    assert find_run_metrics(tmp_path / "run" / "masks") == tmp_path / "run" / "metrics.csv"
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        find_run_metrics(tmp_path / "run" / "masks", run_dir=tmp_path)


def test_evaluate_cli_writes_the_report_beside_the_csv(tmp_path):
    from medseg_dfl.cli.main import app

    pred, truth = write_2d_cases(tmp_path, n=3)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(pred), str(truth), "--classes", ",".join(NAMES),
                                 "-o", str(tmp_path / "out" / "scores.csv")])  # fmt: skip
    assert result.exit_code == 0, result.output
    page = parse(tmp_path / "out" / "scores.html")
    assert len(page.tables["cases"]) == 4 and sum(alt.startswith("c") for alt, _ in page.images) == 3
    assert not math.isnan(float(page.tables["cases"][1][1][1]))
    none = runner.invoke(app, ["evaluate", str(pred), str(truth), "-o", str(tmp_path / "o2" / "s.csv"), "--no-report"])
    assert none.exit_code == 0 and not (tmp_path / "o2" / "s.html").exists()
