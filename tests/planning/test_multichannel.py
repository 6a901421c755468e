"""Two-modality volumes end to end: planned, read, trained one tiny epoch, inferred and evaluated with geometry kept;
and the new normalisation modes do what their names say."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from planning_data import write_volumes

from medseg_dfl.config import config_from_dict
from medseg_dfl.io.checks import validate_pair
from medseg_dfl.io.pairing import discover_pairs
from medseg_dfl.planning import plan_experiment
from medseg_dfl.transforms import build_inference_transforms

TINY = ["train.epochs=1", "train.steps_per_epoch=1", "train.val_every=1", "train.batch_size=2",
        "network.kwargs.filters=[4,8,16]"]


def test_4d_volume_is_read_as_channels_and_the_error_says_how(tmp_path):
    pair = discover_pairs(write_volumes(tmp_path / "v", channels=2, n=1))[0]
    assert validate_pair(pair, 3, 3, allow_channels=True).channels == 2
    with pytest.raises(ValueError, match="set data.in_channels: 2"):
        validate_pair(pair, 3, 3)


@pytest.mark.slow  # ~25-40 s on a loaded 2-core machine: a real (tiny) training run, inference and scoring
def test_decathlon_two_modalities_plan_train_infer_evaluate(tmp_path):
    from medseg_dfl.engine.evaluation import evaluate_folders
    from medseg_dfl.engine.inference import InferenceOptions, predict_folder
    from medseg_dfl.engine.training import train

    data = write_volumes(tmp_path / "d", decathlon_modalities=["T2", "ADC"], n=4, shape=(16, 16, 12))
    plan = plan_experiment(data, overrides=[*TINY, "data.val_fraction=0.25"])
    cfg = plan.config
    assert cfg.data.in_channels == 2 and cfg.network.kwargs["strides"][0] == [1, 1, 1]
    cfg.network.kwargs["strides"] = cfg.network.kwargs["strides"][:3]
    cfg.network.kwargs["kernel_size"] = cfg.network.kwargs["kernel_size"][:3]
    cfg.network.kwargs["upsample_kernel_size"] = cfg.network.kwargs["strides"][1:]
    result = train(cfg, tmp_path / "run")
    assert result.epochs_run == 1 and np.isfinite(result.metrics[-1]["train_loss"])

    summary = predict_folder(tmp_path / "run" / "best.pt", data / "imagesTr", tmp_path / "pred",
                             InferenceOptions(overwrite=True))
    assert len(summary.written) == 4 and not summary.failed
    mask, image = nib.load(tmp_path / "pred" / "case_000.nii.gz"), nib.load(data / "imagesTr" / "case_000.nii.gz")
    assert image.shape == (16, 16, 12, 2) and mask.shape == (16, 16, 12)
    assert np.allclose(mask.affine, image.affine)
    report = evaluate_folders(tmp_path / "pred", data / "labelsTr", cfg.data.class_names)
    assert set(report.summary()) == {"gland", "core"}


def _cfg(**transforms) -> object:
    return config_from_dict({"data": {"spatial_dims": 2, "in_channels": 1, "modality": "mr"},
                             "transforms": {"patch_size": [8, 8], **transforms}})


def _normalised(cfg, image: np.ndarray, tmp_path) -> np.ndarray:
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    return np.asarray(build_inference_transforms(cfg)({"image": str(path)})["image"])[0]


def test_ct_zscore_clips_then_uses_the_dataset_mean_and_std(tmp_path):
    image = np.array([[0, 50, 100, 250]] * 4, dtype=np.uint8)
    cfg = _cfg(intensity="ct_zscore", window=[40.0, 200.0], intensity_mean=[100.0], intensity_std=[50.0])
    out = _normalised(cfg, image, tmp_path)
    assert out[0].tolist() == pytest.approx([(40 - 100) / 50, (50 - 100) / 50, 0.0, (200 - 100) / 50], abs=1e-5)


def test_ct_zscore_without_statistics_is_one_clear_error():
    with pytest.raises(ValueError, match="ct_zscore needs transforms.intensity_mean"):
        build_inference_transforms(_cfg(intensity="ct_zscore", window=[0.0, 1.0]))


def test_zscore_nonzero_keeps_zero_background(tmp_path):
    image = np.zeros((6, 6), dtype=np.uint8)
    image[2:4, 2:4] = [[10, 20], [30, 40]]
    out = _normalised(_cfg(intensity="zscore_nonzero"), image, tmp_path)
    inside = out[image > 0]
    assert np.all(out[image == 0] == 0) and inside.mean() == pytest.approx(0, abs=1e-6)
    assert inside.std() == pytest.approx(1, abs=1e-3)


def test_rgb_0_1_divides_by_255(tmp_path):
    image = np.array([[0, 51, 255]] * 3, dtype=np.uint8)
    assert _normalised(_cfg(intensity="rgb_0_1"), image, tmp_path)[0].tolist() == pytest.approx([0, 0.2, 1.0])  # row 0


def test_step_timing_budget_arithmetic():
    from medseg_dfl.planning.timing import StepTiming, fit_budget

    cfg = config_from_dict({"data": {"spatial_dims": 2}, "transforms": {"patch_size": [64, 64], "num_samples": 1},
                            "train": {"batch_size": 4}, "inference": {"sw_batch_size": 4}})
    budget = fit_budget(StepTiming(0.5, 0.01, "cpu"), cfg, n_train=40, n_val=10, median_shape=[64, 64], minutes=2)
    assert budget.steps_per_epoch == 10  # one pass over 40 cases at batch 4
    per_epoch = budget.steps_per_epoch * (0.5 + 4 * 0.01) + budget.val_s / budget.val_every
    assert budget.epochs == int(120 // per_epoch) and budget.epochs * per_epoch <= 120
    assert torch.tensor(budget.val_s) > 0
