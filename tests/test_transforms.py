"""Transform pipelines: shapes, class-balanced sampling, exact inversion, intensity choices."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, Randomizable, RandSpatialCropd
from PIL import Image

from medseg_dfl.config import config_from_dict
from medseg_dfl.io.readers import load_image
from medseg_dfl.transforms import (
    DEFAULT_CT_WINDOW,
    build_inference_transforms,
    build_inverse_postprocess,
    build_train_transforms,
    build_val_transforms,
    deterministic_prefix,
    resolve_target_spacing,
)

NO_AUGMENT = {"flip": False, "rot90": False, "affine": False, "color_jitter": False, "noise": False}


def _cfg_2d(**transforms):
    return config_from_dict({"transforms": {"patch_size": [16, 16], "num_samples": 2, **transforms}})


def _cfg_3d(**transforms):
    return config_from_dict(
        {
            "data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["bg", "organ", "lesion"]},
            "transforms": {"patch_size": [8, 8, 8], "target_spacing": [1.0, 1.0, 1.5], **transforms},
        }
    )


@pytest.fixture
def smear(tmp_path):
    """40x48 RGB PNG; label with a big class 1, a medium class 2 and a rare 2x2 class 3."""
    rng = np.random.default_rng(0)
    image = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
    label = np.zeros((40, 48), np.uint8)
    label[2:20, 3:30] = 1
    label[25:32, 30:40] = 2
    label[36:38, 4:6] = 3
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(label).save(tmp_path / "lab.png")
    return {"image": str(tmp_path / "img.png"), "label": str(tmp_path / "lab.png")}


def _oblique_affine() -> np.ndarray:
    """Rotated, left-right flipped (not RAS) and anisotropic (0.8 x 1.1 x 3.0 mm)."""
    angle = np.radians(20)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-0.8, 1.1, 3.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    return affine


@pytest.fixture
def volume(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.normal(40, 20, (26, 20, 9)).astype(np.int16)
    image[:3] = -2000  # scanner padding: cut by the foreground crop
    label = np.zeros(image.shape, np.uint8)
    label[6:18, 5:15, 2:7] = 1
    label[9:11, 8:10, 4:5] = 2
    for name, data in (("vol.nii.gz", image), ("vol_label.nii.gz", label)):
        nib.save(nib.Nifti1Image(data, _oblique_affine()), tmp_path / name)
    return {"image": str(tmp_path / "vol.nii.gz"), "label": str(tmp_path / "vol_label.nii.gz")}


def test_train_2d_patches_have_patch_shape_and_integer_labels(smear):
    pipeline = build_train_transforms(_cfg_2d(num_samples=3))
    pipeline.set_random_state(0)
    for _ in range(5):
        patches = pipeline(dict(smear))
        assert len(patches) == 3
        for patch in patches:
            assert patch["image"].shape == (3, 16, 16) and patch["image"].dtype == torch.float32
            assert patch["label"].shape == (1, 16, 16) and patch["label"].dtype == torch.long
            assert set(patch["label"].unique().tolist()) <= {0, 1, 2, 3}


def test_small_image_is_padded_to_patch(smear):
    patches = build_train_transforms(_cfg_2d(patch_size=[64, 64]))(dict(smear))
    assert patches[0]["image"].shape == (3, 64, 64)


def test_val_2d_is_whole_image_normalised_per_channel(smear):
    out = build_val_transforms(_cfg_2d())(dict(smear))
    assert out["image"].shape == (3, 40, 48)  # (C, H, W): 2D files are rows first
    assert out["label"][0, 25:32, 30:40].eq(2).all() and out["label"].eq(2).sum() == 70  # where the PNG has it
    assert torch.allclose(out["image"].mean(dim=(1, 2)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out["image"].std(dim=(1, 2), unbiased=False), torch.ones(3), atol=1e-3)
    assert out["label"].dtype == torch.long and out["label"].sum() > 0


def test_prefix_is_deterministic_and_random_suffix_follows(smear):
    cfg = _cfg_2d()
    train = build_train_transforms(cfg)
    first_random = train.get_index_of_first(lambda t: isinstance(t, Randomizable))
    # + SpatialPadd + ClassesToIndicesd: the class positions are part of what is cached.
    assert first_random == len(deterministic_prefix(cfg, None, ["image", "label"])) + 2
    assert build_val_transforms(cfg).get_index_of_first(lambda t: isinstance(t, Randomizable)) is None
    cached = Compose(train.transforms[:first_random])(dict(smear))
    positions = cached["label_cls_indices"]
    assert len(positions) == cfg.data.num_classes
    label = cached["label"][0].numpy()
    for cls, flat in enumerate(positions):
        assert np.array_equal(np.sort(np.asarray(flat)), np.flatnonzero(label == cls))
    patches = train(dict(smear))
    assert all("label_cls_indices" not in patch for patch in patches)  # not copied into batches


def _fraction_with_class(pipeline, item, cls, draws):
    """Fraction of patches holding ``cls``; the deterministic prefix runs once, the random rest per draw."""
    first = pipeline.get_index_of_first(lambda t: isinstance(t, Randomizable))
    loaded = Compose(pipeline.transforms[:first])(dict(item))
    random_part = Compose(pipeline.transforms[first:])
    random_part.set_random_state(0)
    hits = total = 0
    for _ in range(draws):
        out = random_part({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in loaded.items()})
        for patch in out if isinstance(out, list) else [out]:
            hits += int((patch["label"] == cls).any())
            total += 1
    return hits / total


def test_class_balanced_sampling_finds_rare_class_far_more_than_uniform(smear):
    balanced = build_train_transforms(_cfg_2d(num_samples=4, augment=NO_AUGMENT))
    crop = RandSpatialCropd(["image", "label"], [16, 16], random_size=False)
    uniform = Compose([*build_val_transforms(_cfg_2d()).transforms, crop])
    rare_balanced = _fraction_with_class(balanced, smear, 3, 50)
    rare_uniform = _fraction_with_class(uniform, smear, 3, 200)
    assert rare_balanced >= 0.2  # 1/4 of the centres are on class 3
    assert rare_balanced > 3 * rare_uniform


def test_class_ratios_steer_sampling(smear):
    only_rare = build_train_transforms(_cfg_2d(class_ratios=[0, 0, 0, 1], augment=NO_AUGMENT))
    assert _fraction_with_class(only_rare, smear, 3, 10) == 1.0


def test_inverse_2d_restores_original_grid_exactly(smear):
    cfg = _cfg_2d()
    inference = build_inference_transforms(cfg)
    data = inference({"image": smear["image"]})
    label = load_image(smear["label"])
    data["pred"] = torch.nn.functional.one_hot(label[0].long(), 4).permute(2, 0, 1).float()
    out = build_inverse_postprocess(cfg, inference)(data)
    assert out["pred"].shape == (1, 40, 48)  # (1, H, W)
    assert torch.equal(out["pred"].long(), label.long())


def test_train_3d_patches_and_labels(volume):
    patches = build_train_transforms(_cfg_3d())(dict(volume))
    assert len(patches) == 2
    assert patches[0]["image"].shape == (1, 8, 8, 8) and patches[0]["label"].shape == (1, 8, 8, 8)
    assert set(torch.cat([p["label"].unique() for p in patches]).tolist()) <= {0, 1, 2}


def test_val_3d_is_ras_resampled_and_cropped(volume):
    out = build_val_transforms(_cfg_3d())(dict(volume))
    spacing = np.linalg.norm(out["image"].affine[:3, :3].numpy(), axis=0)
    np.testing.assert_allclose(spacing, [1.0, 1.0, 1.5], atol=1e-5)
    assert out["image"].affine[0, 0] > 0  # left-right flip undone (RAS)
    assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0  # CT window -> [0, 1]
    # The 3 padded slices (3 * 0.8 mm) are gone: 23 * 0.8 mm of foreground at 1 mm spacing.
    assert out["image"].shape[1] == pytest.approx(23 * 0.8, abs=1.5)


def test_inverse_3d_oblique_anisotropic_restores_shape_affine_and_labels(volume):
    cfg = _cfg_3d()
    inference = build_inference_transforms(cfg)
    data = inference({"image": volume["image"]})
    val = build_val_transforms(cfg)(dict(volume))
    assert data["image"].shape == val["label"].shape  # same grid as the label pipeline
    data["pred"] = torch.nn.functional.one_hot(val["label"][0], 3).permute(3, 0, 1, 2).float()
    out = build_inverse_postprocess(cfg, inference)(data)
    original = load_image(volume["label"])
    assert out["pred"].shape == original.shape == (1, 26, 20, 9)
    np.testing.assert_allclose(out["pred"].affine.numpy(), original.affine.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["pred"].affine.numpy(), _oblique_affine(), atol=1e-5)
    agreement = (out["pred"].long() == original.long()).float().mean().item()
    assert agreement > 0.9
    assert int((out["pred"] == 1).sum()) > 0.7 * int((original == 1).sum())


def test_inverse_without_argmax_keeps_probabilities(volume):
    cfg = _cfg_3d()
    inference = build_inference_transforms(cfg)
    data = inference({"image": volume["image"]})
    data["pred"] = torch.full((3, *data["image"].shape[1:]), 1 / 3)
    out = build_inverse_postprocess(cfg, inference, argmax=False)(data)
    assert out["pred"].shape == (3, 26, 20, 9)
    assert torch.allclose(out["pred"][:, 3:].sum(0), torch.ones(1), atol=1e-4)  # inside the crop


def test_ct_window_config_then_fingerprint_then_default(volume):
    fingerprint = {"intensity_percentiles": [{"0.5": 0.0, "50.0": 40.0, "99.5": 80.0}], "median_spacing": [2, 2, 2]}
    for window, fp, expected in (([0.0, 100.0], fingerprint, (0.0, 100.0)), (None, fingerprint, (0.0, 80.0)),
                                 (None, None, DEFAULT_CT_WINDOW)):
        cfg = _cfg_3d(window=window, target_spacing=None)
        intensity = build_inference_transforms(cfg, fp).transforms[-1]
        assert (intensity.scaler.a_min, intensity.scaler.a_max) == expected


def test_target_spacing_config_then_fingerprint_then_none():
    fingerprint = {"median_spacing": [0.7, 0.7, 2.5]}
    assert resolve_target_spacing(_cfg_3d(), fingerprint) == [1.0, 1.0, 1.5]
    assert resolve_target_spacing(_cfg_3d(target_spacing=None), fingerprint) == [0.7, 0.7, 2.5]
    assert resolve_target_spacing(_cfg_3d(target_spacing=None), None) is None
    assert resolve_target_spacing(_cfg_2d(), fingerprint) is None


def test_mr_zscore_and_percentile_modes(volume):
    mr = config_from_dict({**_cfg_3d_dict(), "data": {**_cfg_3d_dict()["data"], "modality": "mr"}})
    out = build_val_transforms(mr)(dict(volume))
    assert abs(float(out["image"].mean())) < 1e-3 and abs(float(out["image"].std()) - 1) < 1e-2
    pct = config_from_dict({**_cfg_3d_dict(), "transforms": {"patch_size": [8, 8, 8], "intensity": "percentile"}})
    out = build_val_transforms(pct)(dict(volume))
    assert float(out["image"].min()) == 0.0 and float(out["image"].max()) == 1.0


def _cfg_3d_dict():
    return {
        "data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["bg", "organ", "lesion"]},
        "transforms": {"patch_size": [8, 8, 8]},
    }


def test_bad_window_is_rejected():
    with pytest.raises(ValueError, match="transforms.window"):
        build_val_transforms(_cfg_3d(window=[100.0, 0.0]))


def test_flip_axes_limit_random_flips_to_the_listed_axes():
    from monai.transforms import RandFlipd

    def flipped_axes(cfg):
        steps = [getattr(t, "inner", t) for t in build_train_transforms(cfg).transforms]
        return sorted(t.flipper.spatial_axis for t in steps if isinstance(t, RandFlipd))

    assert flipped_axes(_cfg_3d()) == [0, 1, 2]
    assert flipped_axes(_cfg_3d(augment={"flip_axes": [0]})) == [0]
    assert flipped_axes(_cfg_3d(augment={"flip_axes": []})) == []
    with pytest.raises(ValueError, match="flip_axes"):
        _cfg_3d(augment={"flip_axes": [3]})
