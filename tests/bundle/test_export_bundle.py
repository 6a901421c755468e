"""export-bundle: runs trained with our trainer become MONAI bundles whose inference (through
``monai.bundle.run``) writes the masks ``predict_folder`` writes for the same checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import SAMPLE, check_metadata, read_label_map, run_bundle, validation_images
from monai.bundle import ConfigParser, verify_net_in_out
from monai.transforms import Compose, Lambdad
from typer.testing import CliRunner

from medseg_dfl.bundle import export_bundle
from medseg_dfl.bundle.preprocessing import preprocessing_items
from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.inference import InferenceOptions, predict_folder
from medseg_dfl.transforms import build_inference_transforms

# MONAI warns that bundle configs can run code; these are our own configs, parsed on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning")


def infer_and_bundle(run_dir: Path, dataset: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Masks of the validation images by predict_folder and by the exported bundle."""
    images = validation_images(dataset, tmp_path / "images")
    # A smear run records its red-cell scale: both rescale (engine/rescale.py; the bundle's ToModelScaled).
    predict_folder(run_dir / "best.pt", images, tmp_path / "infer", InferenceOptions(device="cpu"))
    bundle = export_bundle(run_dir, tmp_path / "bundle")
    run_bundle(bundle / "configs" / "inference.json", bundle_root=str(bundle), dataset_dir=str(images),
               output_dir=str(tmp_path / "masks"), device="$torch.device('cpu')")  # fmt: skip
    return images, tmp_path / "infer", tmp_path / "masks"


def test_exported_2d_bundle_reproduces_infer_exactly(smear_run, tmp_path):
    images, infer_dir, bundle_dir = infer_and_bundle(smear_run, SAMPLE / "blood_smear", tmp_path)
    names = sorted(p.name for p in images.iterdir())
    assert sorted(p.name for p in bundle_dir.iterdir()) == names
    assert sorted(p.name for p in infer_dir.iterdir()) == sorted([*names, "scale.json"])  # infer's scales
    for name in names:
        ours, theirs = read_label_map(infer_dir / name), read_label_map(bundle_dir / name)
        assert ours.shape == theirs.shape == (1, 256, 256)
        assert np.array_equal(ours, theirs), f"{name}: {(ours != theirs).sum()} pixels differ"
    # The PNG itself: same mode and (H, W) orientation as infer's.
    from PIL import Image

    with Image.open(infer_dir / names[0]) as a, Image.open(bundle_dir / names[0]) as b:
        assert a.mode == b.mode == "L" and np.array_equal(np.asarray(a), np.asarray(b))


def test_exported_3d_bundle_reproduces_infer(volume_run, tmp_path):
    images, infer_dir, bundle_dir = infer_and_bundle(volume_run, SAMPLE / "volumes", tmp_path)
    for source in sorted(images.iterdir()):
        ours, theirs = nib.load(infer_dir / source.name), nib.load(bundle_dir / source.name)
        a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
        assert a.shape == b.shape == nib.load(source).shape
        agreement = float((a == b).mean())
        assert agreement >= 0.999, f"{source.name}: {agreement:.5f} of voxels equal"
        np.testing.assert_allclose(theirs.affine, nib.load(source).affine, atol=1e-4)


def test_exported_bundle_files_metadata_and_weights(volume_run, tmp_path):
    bundle = export_bundle(volume_run, tmp_path / "b")
    for rel in ("configs/inference.json", "configs/metadata.json", "configs/logging.conf", "docs/README.md",
                "models/model.pt"):  # fmt: skip
        assert (bundle / rel).is_file(), rel
    payload = load_checkpoint(volume_run / "best.pt")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    check_metadata(meta, ["background", "organ", "lesion"], in_channels=1, spatial_dims=3)
    assert meta["medseg_dfl"]["scale"]["target_spacing"] == [1.0, 1.0, 2.5]
    assert meta["network_data_format"]["inputs"]["image"]["value_range"] == [0.0, 1.0]  # CT window
    assert meta["medseg_dfl"]["loss"]["name"] == "dfl" and meta["medseg_dfl"]["loss"]["alpha"] == 1.0
    # MONAI's own check of network_data_format against network_def (channels, spatial shape).
    verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                      config_file=str(bundle / "configs" / "inference.json"), device="cpu")  # fmt: skip
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert state.keys() == payload["model_state"].keys()
    assert all(torch.equal(state[k], payload["model_state"][k]) for k in state)


def test_acw_weights_of_a_dfl_acw_run_are_in_the_metadata(smear_run, tmp_path):
    meta = json.loads((export_bundle(smear_run, tmp_path / "b") / "configs" / "metadata.json").read_text())
    weights = meta["medseg_dfl"]["loss"]["adaptive_class_weights"]
    assert len(weights) == 4 and abs(np.mean(weights) - 1.0) < 1e-4
    assert weights[3] > weights[1]  # platelets (0.2 % of pixels) weigh more than red cells (41 %)


def test_exported_preprocessing_equals_the_library_pipeline(volume_run):
    """Parsed by MONAI from the exported items, the pipeline gives infer's tensor, bit for bit."""
    payload = load_checkpoint(volume_run / "best.pt")
    ours = build_inference_transforms(config_from_dict(payload["config"]), payload.get("fingerprint"))
    theirs = parsed_pipeline(preprocessing_items(ours))
    path = str(SAMPLE / "volumes" / "images" / "vol_006.nii.gz")
    a, b = ours({"image": path})["image"], theirs({"image": path})["image"]
    assert a.shape == b.shape and torch.equal(a.as_tensor(), b.as_tensor())
    np.testing.assert_array_equal(np.asarray(a.affine), np.asarray(b.affine))


def parsed_pipeline(items: list[dict]) -> Compose:
    config = {
        "imports": ["$import importlib", "$import numpy", "$import torch",
                    "$from medseg_dfl.io.readers import image_readers"],  # fmt: skip
        "pre": {"_target_": "Compose", "transforms": items},
    }
    return ConfigParser(config).get_parsed_content("pre")


@pytest.mark.parametrize(
    "data, transforms, image",
    [
        ({"spatial_dims": 2, "in_channels": 3}, {"patch_size": [64, 64], "intensity": mode}, "blood_smear/images/smear_024.png")
        for mode in ("zscore", "zscore_nonzero", "percentile", "rgb_0_1")
    ]
    + [
        ({"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["bg", "organ", "lesion"]},
         {"patch_size": [32, 32, 16], "intensity": "ct_zscore", "window": [-150.0, 250.0], "intensity_mean": [40.0],
          "intensity_std": [60.0], "target_spacing": [1.5, 1.5, 3.0]}, "volumes/images/vol_007.nii.gz"),
    ],  # fmt: skip
)
def test_every_intensity_mode_exports_to_the_same_pipeline(data, transforms, image):
    ours = build_inference_transforms(config_from_dict({"data": data, "transforms": transforms}))
    theirs = parsed_pipeline(preprocessing_items(ours))
    path = str(SAMPLE / image)
    a, b = ours({"image": path})["image"], theirs({"image": path})["image"]
    assert a.shape == b.shape and torch.equal(a.as_tensor(), b.as_tensor())


def test_unknown_transform_is_an_error_naming_it():
    with pytest.raises(ValueError, match="Lambdad"):
        preprocessing_items(Compose([Lambdad(keys="image", func=abs)]))


def test_export_errors_leave_nothing_behind(smear_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory, checkpoint or shipped model not found"):
        export_bundle(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        export_bundle(tmp_path, tmp_path / "out")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_bundle(smear_run, taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary folder left
    export_bundle(smear_run, taken, overwrite=True)
    assert not (taken / "keep.txt").exists() and (taken / "models" / "model.pt").is_file()


def test_cli_export_bundle(smear_run, tmp_path):
    from medseg_dfl.cli.main import app

    result = CliRunner().invoke(app, ["export-bundle", str(smear_run), str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "configs" / "inference.json").is_file()
    again = CliRunner().invoke(app, ["export-bundle", str(smear_run), str(tmp_path / "b")])
    assert again.exit_code == 1 and "not empty" in again.output


def test_smear_bundle_states_the_magnification_it_expects(smear_run, volume_run, tmp_path):
    recorded = load_checkpoint(smear_run / "best.pt")["scale"]["cell_diameter_px"]
    smear = export_bundle(smear_run, tmp_path / "smear")
    meta = json.loads((smear / "configs" / "metadata.json").read_text())
    assert meta["medseg_dfl"]["scale"]["cell_diameter_px"] == pytest.approx(recorded)
    readme = (smear / "docs" / "README.md").read_text()
    assert "**Magnification.**" in readme and f"about\n{recorded:.1f} px across" in readme
    volume = export_bundle(volume_run, tmp_path / "volume")  # 3D: no red cells, no note
    assert "cell_diameter_px" not in json.loads((volume / "configs" / "metadata.json").read_text())["medseg_dfl"]["scale"]
    assert "Magnification" not in (volume / "docs" / "README.md").read_text()
