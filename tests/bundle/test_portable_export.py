"""export (portable): ONNX Runtime and TorchScript give PyTorch's logits, and following the generated
README (pre-processing, sliding window, softmax, argmax) gives ``medseg-dfl infer``'s mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import SAMPLE
from monai.inferers import sliding_window_inference
from PIL import Image
from typer.testing import CliRunner

from medseg_dfl.bundle.portable import (
    _image_axis_order_2d,
    export_portable,
    parse_formats,
    portable_readme,
    portable_spec,
)
from medseg_dfl.bundle.preprocessing import preprocessing_items
from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.inference import Predictor

TOLERANCE = 1e-4


def _validation_image(dataset: Path) -> Path:
    return dataset / json.loads((dataset / "dataset.json").read_text())["validation"][0]["image"]


def _ort_predictor(path: Path):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


def _sliding_logits(predictor: Predictor, network, image: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        logits = sliding_window_inference(image[None], predictor.roi_size, predictor.sw_batch_size, network,
                                          overlap=predictor.overlap, mode=predictor.cfg.inference.blend_mode)  # fmt: skip
    return np.asarray(logits[0])


def _documented_mask(logits: np.ndarray) -> np.ndarray:
    """The README's post-processing: softmax over the class axis, then argmax."""
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True)).argmax(axis=0)


def _assert_same_mask(ours: np.ndarray, theirs: np.ndarray, logits: np.ndarray, tolerance: float = TOLERANCE) -> None:
    """Equal, except where two classes' logits tie within the tolerance (either answer is right)."""
    differ = ours != theirs
    top2 = np.sort(logits, axis=0)[-2:]
    assert not (differ & (top2[1] - top2[0] > 2 * tolerance)).any(), f"{differ.sum()} pixels differ"
    assert differ.mean() < 1e-3


def _readme_preprocess_2d(path: Path) -> torch.Tensor:
    """The 2D README by hand (NumPy, no MONAI): float32, channel first in its axis order, per-channel z-score."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)  # (H, W, 3)
    image = rgb.transpose(2, 1, 0) if _image_axis_order_2d() == "(W, H)" else rgb.transpose(2, 0, 1)
    mean, std = image.mean(axis=(1, 2), keepdims=True), image.std(axis=(1, 2), keepdims=True)
    return torch.from_numpy(((image - mean) / np.where(std > 0, std, 1.0)).astype(np.float32))


def test_onnx_2d_matches_pytorch_logits_and_infer_mask(smear_run, tmp_path):
    pytest.importorskip("onnx")
    export = export_portable(smear_run, tmp_path / "out", formats=("onnx",))
    assert export.max_abs_diff["onnx"] <= TOLERANCE and not (tmp_path / "out" / "model.ts").exists()
    predictor = Predictor.from_checkpoint(smear_run / "best.pt", device="cpu")
    path = _validation_image(SAMPLE / "blood_smear")
    image = predictor.preprocess(path)["image"].as_tensor()
    # 256 x 256 image, 128 x 128 windows: several overlapping windows blended.
    onnx = _ort_predictor(export.files["onnx"])
    onnx_logits = _sliding_logits(predictor, onnx, image)
    torch_logits = _sliding_logits(predictor, predictor.network, image)
    assert np.abs(onnx_logits - torch_logits).max() <= TOLERANCE
    infer_mask = predictor.predict_file(path).mask
    _assert_same_mask(_documented_mask(onnx_logits), infer_mask, torch_logits)
    # The README followed by hand (NumPy pre-processing; float32 sums round differently from torch's).
    by_hand = _readme_preprocess_2d(path)
    np.testing.assert_allclose(by_hand, image, rtol=1e-4, atol=1e-4)
    _assert_same_mask(_documented_mask(_sliding_logits(predictor, onnx, by_hand)), infer_mask, torch_logits,
                      tolerance=1e-3)  # fmt: skip
    assert len(np.unique(infer_mask)) > 1  # a real mask, not all background


def test_onnx_3d_matches_pytorch_logits_and_mask(volume_run, tmp_path):
    pytest.importorskip("onnx")
    export = export_portable(volume_run, tmp_path / "out", formats=["onnx", "torchscript"])
    predictor = Predictor.from_checkpoint(volume_run / "best.pt", device="cpu")
    image = predictor.preprocess(_validation_image(SAMPLE / "volumes"))["image"].as_tensor()
    assert any(s > r for s, r in zip(image.shape[1:], predictor.roi_size, strict=True))  # more than one window
    onnx_logits = _sliding_logits(predictor, _ort_predictor(export.files["onnx"]), image)
    torch_logits = _sliding_logits(predictor, predictor.network, image)
    assert np.abs(onnx_logits - torch_logits).max() <= TOLERANCE
    _assert_same_mask(_documented_mask(onnx_logits), _documented_mask(torch_logits), torch_logits)
    # TorchScript: the same logits on the same windows.
    scripted = torch.jit.load(str(export.files["torchscript"]))
    ts_logits = _sliding_logits(predictor, scripted, image)
    assert np.abs(ts_logits - torch_logits).max() <= TOLERANCE


def test_readme_and_spec_come_from_the_checkpoint_config(volume_run, tmp_path):
    export = export_portable(volume_run / "best.pt", tmp_path / "out", formats="torchscript")
    readme = export.files["readme"].read_text()
    for text in ("roi_size = [48, 48, 32]", "overlap 0.25", "Gaussian", "[-150.0, 250.0]", "[1.0, 1.0, 2.5]",
                 "`RAS`", "Softmax", "Argmax", "0 = background, 1 = organ, 2 = lesion", "model.ts"):  # fmt: skip
        assert text in readme, text
    assert "model.onnx" not in readme
    spec = json.loads(export.files["spec"].read_text())
    assert spec["class_names"] == ["background", "organ", "lesion"] and spec["in_channels"] == 1
    assert spec["sliding_window"]["roi_size"] == [48, 48, 32]
    assert spec["preprocessing"] == preprocessing_items(Predictor.from_checkpoint(volume_run / "best.pt").transforms)
    assert spec["postprocessing"][1].startswith("invert")  # cropped and resampled: probabilities go back
    with pytest.raises(FileExistsError):
        export_portable(volume_run, tmp_path / "out", formats="torchscript")


def test_readme_2d_names_axis_order_and_normalisation(smear_run, tmp_path):
    readme = export_portable(smear_run, tmp_path / "out", formats="torchscript").files["readme"].read_text()
    assert f"(N, C, {_image_axis_order_2d()[1:-1]})" in readme
    assert "Z-score" in readme and "each channel separately" in readme and "roi_size = [128, 128]" in readme
    assert "rbc" in readme and "invert" not in readme.lower()


def test_readme_names_the_ruler_of_the_model():
    cfg = config_from_dict({"data": {"spatial_dims": 2, "modality": "microscopy", "in_channels": 3,
                                     "class_names": ["background", "cytoplasm", "nucleus"]},
                            "transforms": {"patch_size": [64, 64]}})  # fmt: skip
    spec = portable_spec(cfg, None, list(cfg.data.class_names))
    white = portable_readme(cfg, spec, ["onnx"], cell_diameter=72.4, single_cell=True)
    smear = portable_readme(cfg, spec, ["onnx"], cell_diameter=25.3)
    assert "segmented cell is about 72.4 px across" in white and "red cells" not in white
    assert "red cells are about 25.3 px across" in smear


def test_parse_formats():
    assert parse_formats("ONNX, ts") == ("onnx", "torchscript")
    with pytest.raises(ValueError, match="tflite"):
        parse_formats("onnx,tflite")


def test_export_cli(smear_run, tmp_path):
    from medseg_dfl.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(smear_run), str(tmp_path / "out"), "--format", "torchscript"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "model.ts", "preprocessing.json"]
    assert "max |logit - PyTorch|" in result.output
    bad = runner.invoke(app, ["export", str(smear_run), str(tmp_path / "o2"), "--format", "tflite"])
    assert bad.exit_code == 1 and "tflite" in bad.output and not (tmp_path / "o2").exists()
