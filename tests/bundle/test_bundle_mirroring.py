"""A bundle mirrors as ``medseg-dfl infer`` does by default: a single-cell (white-cell) model's bundle
averages the softmax over the flips of the axes training flipped (``tta`` true, the same masks as
``infer --cell-diameter PX``), ``--tta false`` gives ``infer --no-tta``'s, and smear and volume
bundles run the network once unless told to mirror.

The hand-built network leans: a dark pixel is nucleus only where the window reaching 8 px to its
left and 4 px above it is all dark, so the plain nucleus sits 4 px right of and 2 px below the
dark disc at the scale the network sees (8 and 4 px in the input, seen at half size), and each
mirroring pulls it back along the axis it flips. Where the nucleus lands says which axes were
mirrored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bundle_helpers import read_label_map, run_bundle, use_hand_built_network
from monai.inferers import SlidingWindowInferer, sliding_window_inference
from PIL import Image

from medseg_dfl.bundle import export_bundle
from medseg_dfl.bundle.export import inference_config
from medseg_dfl.bundle.inferers import MirroredSlidingWindowInferer, parse_switch
from medseg_dfl.config import config_from_dict
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES
from medseg_dfl.engine.ensemble import AveragedProbabilities
from medseg_dfl.engine.inference import InferenceOptions, predict_folder

pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")

TRAINING_CELL, CELL, NUCLEUS = 40.0, 80.0, 48  # px: recorded object size; the cell and nucleus in the input
CENTRE = (80, 90)  # (row, column) of the cell in the 160 x 180 crop
SCALE = {"object_diameter_px": TRAINING_CELL, "object_source": "test", "core_class": 2}
ALL_FLIPS = [[], [2], [3], [2, 3]]  # tensor axes of a (B, C, H, W) window


class LeaningCoreNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.mean(1, keepdim=True)
        stained = torch.sigmoid((0.8 - v) * 40)
        dark = torch.sigmoid((0.3 - v) * 40)
        core = -F.max_pool2d(F.pad(-dark, (8, 0, 4, 0)), (5, 9), stride=1)  # rows y-4..y, columns x-8..x
        return 20 * torch.cat([1 - stained, stained * (1 - core), stained * core], 1)


@pytest.fixture(autouse=True)
def hand_built_network(monkeypatch):
    use_hand_built_network(monkeypatch, LeaningCoreNet)


@pytest.fixture
def crop(tmp_path) -> Path:
    """One white cell (80 px, a 48 px nucleus) in a 160 x 180 crop."""
    folder = tmp_path / "in"
    folder.mkdir()
    yy, xx = np.mgrid[:160, :180]
    distance = np.hypot(yy - CENTRE[0], xx - CENTRE[1])
    value = np.where(distance <= CELL / 2, 0.5, 0.95)
    value[distance <= NUCLEUS / 2] = 0.05
    Image.fromarray(np.round(value * 255).astype(np.uint8)[..., None].repeat(3, -1)).save(folder / "cell.png")
    return folder


def _bundle_mask(bundle: Path, images: Path, out: Path, **override) -> np.ndarray:
    run_bundle(bundle / "configs" / "inference.json", bundle_root=str(bundle), dataset_dir=str(images),
               output_dir=str(out), device="$torch.device('cpu')", cell_diameter=CELL, **override)  # fmt: skip
    return read_label_map(out / "cell.png")[0]


def _infer_mask(checkpoint: Path, images: Path, out: Path, **options) -> np.ndarray:
    predict_folder(checkpoint, images, out, InferenceOptions(device="cpu", cell_diameter=CELL, **options))
    return read_label_map(out / "cell.png")[0]


def _nucleus_offset(mask: np.ndarray) -> tuple[float, float]:
    """(rows, columns) from the cell's centre to the nucleus's centroid, px."""
    rows, columns = np.nonzero(mask == 2)
    return float(rows.mean() - CENTRE[0]), float(columns.mean() - CENTRE[1])


def _assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape == (160, 180)
    assert np.array_equal(ours, theirs), f"{(ours != theirs).sum()} pixels differ"


def _inferer(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "inference.json").read_text())["inferer"]


def test_white_cell_bundle_mirrors_by_default_and_tta_false_does_not(tmp_path, write_wbc_checkpoint, crop):
    model = write_wbc_checkpoint(tmp_path / "wbc.pt", SCALE, {})  # flips every axis (flip_axes null)
    bundle = export_bundle(model, tmp_path / "bundle")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    assert config["tta"] is True and config["inferer"]["tta"] == "@tta" and config["inferer"]["flips"] == ALL_FLIPS
    mirrored = _bundle_mask(bundle, crop, tmp_path / "masks")
    _assert_same(mirrored, _infer_mask(model, crop, tmp_path / "infer"))  # infer's default: mirrored
    # "false" is what `python -m monai.bundle run ... --tta false` hands the config (fire's parse)
    plain = _bundle_mask(bundle, crop, tmp_path / "plain", tta="false")
    _assert_same(plain, _infer_mask(model, crop, tmp_path / "infer_plain", tta=False))
    # the plain nucleus leans 4 px down and 8 px right; both mirrorings centre it
    assert _nucleus_offset(plain) == pytest.approx((4, 8), abs=1)
    assert _nucleus_offset(mirrored) == pytest.approx((0, 0), abs=0.5)
    assert (mirrored != plain).sum() > 200
    readme = (bundle / "docs" / "README.md").read_text()
    assert "`--tta false`" in readme and "4 mirrorings" in readme and "--no-tta`'s masks" not in readme


@pytest.mark.parametrize(
    "augment, flips, offset",
    [
        ({"flip_axes": [0]}, [[], [2]], (0, 8)),  # rows mirrored: the nucleus still leans right
        ({"flip_axes": [1]}, [[], [3]], (4, 0)),  # columns mirrored: it still leans down
        ({"flip": False}, [[]], (4, 8)),  # training never flipped: nothing to mirror
    ],
)
def test_only_the_axes_training_flipped_are_mirrored(tmp_path, write_wbc_checkpoint, crop, augment, flips, offset):
    model = write_wbc_checkpoint(tmp_path / "wbc.pt", SCALE, {}, augment=augment)
    bundle = export_bundle(model, tmp_path / "bundle")
    assert _inferer(bundle)["flips"] == flips
    mask = _bundle_mask(bundle, crop, tmp_path / "masks")
    _assert_same(mask, _infer_mask(model, crop, tmp_path / "infer"))
    assert _nucleus_offset(mask) == pytest.approx(offset, abs=1)
    if flips == [[]]:
        assert "nothing to mirror" in (bundle / "docs" / "README.md").read_text()


def test_smear_and_volume_bundles_do_not_mirror_unless_told(tmp_path, write_wbc_checkpoint):
    smear = write_wbc_checkpoint(tmp_path / "smear.pt", {"cell_diameter_px": 25.0, "source": "test"}, {},
                                 list(SMEAR_CLASSES), augment={"flip_axes": [1]})  # fmt: skip
    bundle = export_bundle(smear, tmp_path / "smear")
    assert json.loads((bundle / "configs" / "inference.json").read_text())["tta"] is False
    assert _inferer(bundle)["flips"] == [[], [3]]
    assert "With `--tta true`, as with `infer --tta`" in (bundle / "docs" / "README.md").read_text()
    volume = config_from_dict({"data": {"spatial_dims": 3, "in_channels": 1, "class_names": ["bg", "organ"]},
                               "transforms": {"patch_size": [16, 16, 16], "augment": {"flip_axes": [0, 2]}}})  # fmt: skip
    config = inference_config(volume, None, ["bg", "organ"])
    assert config["tta"] is False and config["inferer"]["flips"] == [[], [2], [4], [2, 4]]


class _Leaning3x3(torch.nn.Module):
    """Not mirror-symmetric (a fixed one-sided kernel), so mirroring changes its output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(54, dtype=torch.float32).reshape(3, 2, 3, 3).sin())
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_the_inferer_is_monai_s_window_off_and_infer_s_mirroring_on():
    net, x = _Leaning3x3().eval(), torch.linspace(-1, 1, 2 * 40 * 50).reshape(1, 2, 40, 50).cos()
    window = {"roi_size": [32, 32], "sw_batch_size": 2, "overlap": 0.25, "mode": "gaussian"}
    with torch.no_grad():
        plain = SlidingWindowInferer(**window)(x, net)
        for off in (False, "false", "False", 0):
            assert torch.equal(MirroredSlidingWindowInferer(**window, flips=ALL_FLIPS, tta=off)(x, net), plain)
        assert torch.equal(MirroredSlidingWindowInferer(**window, flips=[[]], tta=True)(x, net), plain)
        mirrored = MirroredSlidingWindowInferer(**window, flips=[[], [3]], tta="true")(x, net)
        expected = sliding_window_inference(x, predictor=AveragedProbabilities([net], [(), (3,)]), **window)
    assert torch.equal(mirrored, expected) and (mirrored.softmax(1) - plain.softmax(1)).abs().max() > 0.05


def test_bad_mirroring_arguments_are_refused():
    assert parse_switch("TRUE", "tta") is True and parse_switch(" no ", "tta") is False
    assert parse_switch(0, "tta") is False and parse_switch(1, "tta") is True
    with pytest.raises(ValueError, match="tta must be true or false, got 'maybe'"):
        MirroredSlidingWindowInferer([32, 32], tta="maybe")
    with pytest.raises(ValueError, match="tta must be true or false, got 2"):
        parse_switch(2, "tta")
    with pytest.raises(ValueError, match=r"flips entry \[4\] must be distinct tensor axes in 2..3"):
        MirroredSlidingWindowInferer([32, 32], flips=[[], [4]])
    with pytest.raises(ValueError, match=r"flips entry \[2, 2\] must be distinct"):
        MirroredSlidingWindowInferer([32, 32], flips=[[2, 2]])
    with pytest.raises(ValueError, match="flips must hold at least one entry"):
        MirroredSlidingWindowInferer([32, 32], flips=[])
    with pytest.raises(ValueError, match="roi_size must give one size per spatial axis, got 32"):
        MirroredSlidingWindowInferer(32)
