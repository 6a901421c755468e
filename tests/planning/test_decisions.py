"""What the planner decides, on the shipped sample data, the real hippocampus (when present) and tiny folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from planning_data import REPO, write_instances, write_rgb, write_volumes

from medseg_dfl.planning import plan_experiment, plan_to_yaml
from medseg_dfl.planning.decisions import (
    DEEP_SUPERVISION_EPOCHS,
    RGB_NORMALISATION,
    STRONG_AFFINE_EPOCHS,
    decide_affine_strength,
    decide_deep_supervision,
    decide_flip_axes,
    decide_target_spacing,
)
from medseg_dfl.planning.survey import CaseSurvey, DatasetSurvey
from medseg_dfl.planning.topology import pool_and_conv

SMEARS, VOLUMES = REPO / "sample_data" / "blood_smear", REPO / "sample_data" / "volumes"


def _covers(patch: list[int], median: list[float]) -> bool:
    return all(p >= m for p, m in zip(patch, median, strict=True))


def test_blood_smears_are_rgb_microscopy_with_their_class_names():
    plan = plan_experiment(SMEARS)
    cfg = plan.config
    assert (cfg.data.spatial_dims, cfg.data.in_channels, cfg.data.modality) == (2, 3, "microscopy")
    assert cfg.data.class_names == ["background", "rbc", "wbc", "platelet"]
    assert cfg.transforms.intensity == RGB_NORMALISATION
    assert cfg.transforms.target_spacing is None
    assert cfg.transforms.patch_size == [256, 256]  # the median shape, already a multiple of 2^5
    assert cfg.network.name == "DynUNet" and len(cfg.network.kwargs["strides"]) == 6
    assert cfg.loss.name == "dice-ce"
    assert "256x256 pixels -> patch 256x256" in plan.reasons["transforms.patch_size"]
    assert cfg.transforms.augment.flip_axes is None  # cells lie anywhere: flips along both axes


def test_synthetic_ct_volumes_get_nnunet_ct_normalisation_and_median_spacing():
    plan = plan_experiment(VOLUMES)
    cfg, t = plan.config, plan.config.transforms
    assert (cfg.data.spatial_dims, cfg.data.in_channels, cfg.data.modality) == (3, 1, "ct")
    assert cfg.data.class_names == ["background", "organ", "lesion"]
    assert t.intensity == "ct_zscore"
    low, high = t.window
    assert low < t.intensity_mean[0] < high and t.intensity_std[0] > 0
    assert t.target_spacing == pytest.approx([0.93, 0.93, 2.5], abs=0.01)
    assert _covers(t.patch_size, [64, 64, 48])
    # z (2.5 mm) is more than 2x coarser than x/y: not pooled and not convolved at first (nnU-Net)
    assert cfg.network.kwargs["strides"][1] == [2, 2, 1] and cfg.network.kwargs["kernel_size"][0] == [3, 3, 1]


def _hippocampus_subset(root: Path, tmp_path: Path, n: int = 24) -> Path:
    """A dataset.json in tmp_path listing (absolute paths) n of the real cases, its "source": nothing copied."""
    data = json.loads((root / "dataset.json").read_text())
    data["training"] = [{k: str((root / v).resolve()) for k, v in e.items()} for e in data["training"][:n]]
    data["source"] = str(root.resolve())  # absolute entries must lie in the data folder or its "source"
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    return tmp_path


def test_hippocampus_mr_three_named_classes_per_case_zscore(hippocampus, tmp_path):
    plan = plan_experiment(_hippocampus_subset(hippocampus, tmp_path))
    cfg = plan.config
    assert (cfg.data.spatial_dims, cfg.data.in_channels, cfg.data.modality) == (3, 1, "mr")
    assert cfg.data.class_names == ["background", "Anterior", "Posterior"]
    assert cfg.transforms.intensity == "zscore"  # intensities vary by orders of magnitude; background is not 0
    assert cfg.transforms.target_spacing == [1.0, 1.0, 1.0]
    median = np.median([[35, 50, 36]], axis=0)  # README of the data; this subset's median is close
    assert _covers(cfg.transforms.patch_size, median - 4)
    assert all(p % 8 == 0 for p in cfg.transforms.patch_size)
    assert "-> patch" in plan.reasons["transforms.patch_size"] and "1x1x1 mm" in plan.reasons["transforms.patch_size"]
    # the head (anterior) lies ~18 mm anterior and ~7 mm inferior of the body in every case: no flips there
    flip_axes = cfg.transforms.augment.flip_axes
    assert flip_axes is not None and 1 not in flip_axes and 2 not in flip_axes
    assert "axis 1: the Anterior centroid sits +1" in plan.reasons["transforms.augment.flip_axes"]


@pytest.mark.slow
def test_hippocampus_all_cases_patch_is_nnunet_s(hippocampus):
    plan = plan_experiment(hippocampus)
    assert plan.config.transforms.patch_size == [40, 56, 40]
    assert "median shape 35x50x36 at 1x1x1 mm -> patch 40x56x40" in plan.reasons["transforms.patch_size"]


def test_wbc_like_rgb_folder(tmp_path):
    cfg = plan_experiment(write_rgb(tmp_path / "wbc")).config
    assert (cfg.data.spatial_dims, cfg.data.in_channels, cfg.data.modality) == (2, 3, "microscopy")
    assert cfg.data.class_names == ["background", "cytoplasm", "nucleus"]
    assert cfg.transforms.intensity == RGB_NORMALISATION
    assert cfg.transforms.augment.stain is True  # another lab's stain: the cross-lab measurement's choice


def test_two_channel_4d_volumes_without_dataset_json(tmp_path):
    plan = plan_experiment(write_volumes(tmp_path / "v", channels=2))
    cfg = plan.config
    assert (cfg.data.spatial_dims, cfg.data.in_channels, cfg.data.modality) == (3, 2, "mr")
    assert cfg.data.class_names == ["background", "class_1", "class_2"]
    assert cfg.transforms.intensity == "zscore"
    assert "4D images: the last axis is read as channels" in plan.reasons["data.in_channels"]
    assert cfg.transforms.target_spacing == [1.0, 1.0, 2.0]
    assert cfg.transforms.augment.stain is False  # not RGB microscopy


def test_decathlon_two_modalities_named(tmp_path):
    plan = plan_experiment(write_volumes(tmp_path / "d", decathlon_modalities=["T2", "ADC"]))
    assert plan.config.data.in_channels == 2 and plan.config.data.modality == "mr"
    assert plan.config.data.class_names == ["background", "gland", "core"]
    assert "T2, ADC" in plan.reasons["data.in_channels"]


def test_instance_masks_are_refused_in_one_line_saying_how_to_convert(tmp_path):
    with pytest.raises(ValueError) as err:
        plan_experiment(write_instances(tmp_path / "cells"))
    message = str(err.value)
    assert "instance masks" in message and "20 label values" in message and "label > 0 -> 1" in message
    assert "\n" not in message


def test_a_case_with_other_channels_is_named(tmp_path):
    root = write_volumes(tmp_path / "v", channels=2, n=4)
    odd = write_volumes(tmp_path / "one", channels=1, n=1, seed=5)
    (odd / "images" / "case_000.nii.gz").rename(root / "images" / "odd.nii.gz")
    (odd / "labels" / "case_000.nii.gz").rename(root / "labels" / "odd.nii.gz")
    with pytest.raises(ValueError, match=r"odd\.nii\.gz: 1 channel\(s\), while 4 of the 5 cases have 2"):
        plan_experiment(root)


def test_absent_class_is_reported(tmp_path):
    root = write_rgb(tmp_path / "w", names=("background", "cytoplasm", "nucleus", "granule"))
    plan = plan_experiment(root)
    assert plan.config.data.num_classes == 4
    assert any("'granule' (label 3) appears in no case" in w for w in plan.warnings)


def test_values_that_are_not_class_indices_say_how_to_remap(tmp_path):
    root = write_rgb(tmp_path / "w")
    (root / "dataset.json").unlink()
    from PIL import Image

    for path in (root / "labels").iterdir():
        Image.fromarray((np.asarray(Image.open(path)) * 127.5).astype(np.uint8)).save(path)  # 0/127/255
    with pytest.raises(ValueError, match=r"label values \[0, 127, 255\] are not class indices.*127 -> 1, 255 -> 2"):
        plan_experiment(root)


def _case(spacing, shape) -> CaseSurvey:
    return CaseSurvey("c", Path("c.nii.gz"), tuple(shape), tuple(spacing), 1, False, 0.0, 0.0, {0: 1}, False,
                      1, (0.0,), (1.0,), (0.0,), (1.0,))


def test_anisotropic_axis_takes_the_10th_percentile_spacing():
    cases = [_case((0.7, 0.7, z), (512, 512, 40)) for z in (2.5, 5.0, 5.0, 5.0, 6.0)]
    target, why = decide_target_spacing(DatasetSurvey(Path("."), cases))
    assert target[:2] == [0.7, 0.7]
    assert target[2] == pytest.approx(np.percentile([2.5, 5.0, 5.0, 5.0, 6.0], 10))  # 3.5, not the median 5
    assert "anisotropic" in why


def test_isotropic_median_spacing():
    cases = [_case((1.0, 1.0, z), (64, 64, 64)) for z in (1.0, 1.2, 1.4)]
    assert decide_target_spacing(DatasetSurvey(Path("."), cases))[0] == [1.0, 1.0, 1.2]


def test_pool_and_conv_matches_nnunet_on_hippocampus():
    topology = pool_and_conv([1.0, 1.0, 1.0], [35, 50, 36])
    assert topology.patch == [40, 56, 40]
    assert topology.strides == [[1, 1, 1]] + [[2, 2, 2]] * 3
    assert topology.kernels == [[3, 3, 3]] * 4


def _placed_case(centroids: dict[int, tuple[float, ...]], extent: tuple[float, ...]) -> CaseSurvey:
    return CaseSurvey(
        case_id="c", image=Path("c.nii.gz"), shape=(20, 20, 20), spacing=(1.0, 1.0, 1.0), channels=1,
        is_8bit=False, minimum=0.0, zero_share=0.0, label_counts={0: 1, 1: 1, 2: 1}, instance_like=False,
        fg_count=1, fg_mean=(0.0,), fg_std=(1.0,), fg_p005=(0.0,), fg_p995=(1.0,),
        class_centroids=centroids, fg_extent=extent,
    )  # fmt: skip


def test_flip_axes_leave_out_the_axis_along_which_two_classes_keep_their_order():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(20):
        base = rng.normal(0, 5, 3)
        # class 1 always 8 mm further along axis 1 than class 2; along axes 0 and 2 a random offset
        offset = np.array([rng.normal(0, 3), 8 + rng.normal(0, 1), rng.normal(0, 3)])
        cases.append(_placed_case({1: tuple(base + offset), 2: tuple(base)}, (20.0, 30.0, 20.0)))
    axes, why = decide_flip_axes(DatasetSurvey(root=Path("."), cases=cases), ["bg", "head", "tail"])
    assert axes == [0, 2]
    assert "axis 1: the head centroid sits +7.58 mm from the tail one" in why  # median of the 20 offsets
    # the same offset, but small against the structure (2 % of a 400 mm extent): flips stay on
    for case in cases:
        object.__setattr__(case, "fg_extent", (20.0, 400.0, 20.0))
    assert decide_flip_axes(DatasetSurvey(root=Path("."), cases=cases), ["bg", "head", "tail"])[0] is None



def test_affine_strength_is_nnunets_for_long_3d_runs_only():
    strong, why = decide_affine_strength(3, STRONG_AFFINE_EPOCHS)
    assert strong == {"affine_prob": 0.36, "rotate_degrees": 30.0, "scale_fraction": 0.3} and "nnU-Net" in why
    assert decide_affine_strength(3, STRONG_AFFINE_EPOCHS - 1)[0] == {}
    assert decide_affine_strength(2, 1000)[0] == {}


def test_plan_writes_the_strength_for_its_epochs_and_a_set_wins():
    plan = plan_experiment(VOLUMES)  # no budget: 100 epochs
    aug = plan.config.transforms.augment
    assert plan.config.train.epochs >= 50 and (aug.affine_prob, aug.rotate_degrees, aug.scale_fraction) == (0.36, 30.0, 0.3)
    text = plan_to_yaml(plan)
    assert "affine_prob: 0.36" in text and "nnU-Net's rotation (30 degrees)" in text  # the value and its reason
    short = plan_experiment(VOLUMES, overrides=["train.epochs=20", "transforms.augment.affine_prob=0.5"])
    assert short.config.transforms.augment.affine_prob == 0.5  # the user's value, not the plan's


def test_deep_supervision_for_long_3d_dynunet_runs_only():
    on, why = decide_deep_supervision(3, DEEP_SUPERVISION_EPOCHS, "DynUNet")
    assert on is True and "0.888 -> 0.891" in why
    assert decide_deep_supervision(3, DEEP_SUPERVISION_EPOCHS - 1, "DynUNet")[0] is False
    assert decide_deep_supervision(2, 1000, "DynUNet")[0] is False
    off, why = decide_deep_supervision(3, 1000, "UNet")
    assert off is False and "no deep supervision heads" in why
