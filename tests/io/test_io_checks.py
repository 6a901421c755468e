"""validate_pair: every bad-input case gives the documented one-line DataError; stats are right."""

from __future__ import annotations

import numpy as np
import pytest
from io_geometry import OBLIQUE_AFFINE

from medseg_dfl.io import CasePair, DataError, validate_pair


def _pair(image, label):
    return CasePair("case", image, label)


def test_2d_rgb_pair_stats(files):
    image = np.zeros((4, 6, 3), dtype=np.uint8)  # H, W, C
    image[..., 0] = np.arange(24).reshape(4, 6)
    image[..., 1] = 100
    label = np.zeros((4, 6), dtype=np.uint8)
    label[1, 2:5] = 1
    label[3, 0] = 3
    stats = validate_pair(_pair(files.pil("a.png", image), files.pil("a_masks.png", label)), 4, 2)
    assert stats.shape == (4, 6) and stats.spacing == (1.0, 1.0) and stats.channels == 3  # (H, W)
    np.testing.assert_array_equal(stats.class_counts, [20, 3, 0, 1])
    assert stats.intensity_region == "foreground"
    foreground = np.array([8, 9, 10, 18], dtype=float)  # red values under the labels
    assert stats.intensity_percentiles[0][50.0] == pytest.approx(np.median(foreground))
    assert stats.intensity_percentiles[0][0.5] == pytest.approx(np.percentile(foreground, 0.5))
    assert stats.mean == pytest.approx((foreground.mean(), 100.0, 0.0))
    assert stats.std[0] == pytest.approx(foreground.std()) and stats.std[1] == 0.0


def test_3d_nifti_pair_with_float_integral_labels(files, rng):
    image = rng.normal(size=(5, 6, 4)).astype(">f4")
    label = np.zeros((5, 6, 4), dtype=np.float64)
    label[:2] = 2.0
    pair = _pair(files.nifti("v.nii.gz", image, endianness=">"), files.nifti("v_seg.nii.gz", label))
    stats = validate_pair(pair, 3, 3)
    assert stats.shape == (5, 6, 4)
    np.testing.assert_allclose(stats.spacing, (0.8, 1.2, 2.5), rtol=1e-6)
    np.testing.assert_allclose(stats.affine, OBLIQUE_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(stats.class_counts, [72, 0, 48])
    assert stats.mean[0] == pytest.approx(float(image[:2].astype(np.float32).mean()), rel=1e-5)


def test_itk_pair_and_image_without_label(files, rng):
    data = rng.integers(0, 3, size=(3, 4, 5)).astype(np.uint8)
    stats = validate_pair(_pair(files.itk("v.mha", data.astype(np.int16)), files.itk("v.nrrd", data)), 3, 3)
    np.testing.assert_array_equal(stats.class_counts, np.bincount(data.ravel(), minlength=3))
    alone = validate_pair(_pair(files.path("v.mha"), None), 3, 3)
    assert alone.intensity_region == "all" and alone.class_counts.tolist() == [0, 0, 0]
    assert alone.intensity_percentiles[0][99.5] == pytest.approx(np.percentile(data, 99.5))


def test_16bit_tiff_image(files, rng):
    image = rng.integers(0, 65536, size=(5, 7)).astype(np.uint16)
    stats = validate_pair(_pair(files.tiff("a.tif", image), files.pil("a.png", np.ones((5, 7), np.uint8))), 2, 2)
    assert stats.mean[0] == pytest.approx(image.mean()) and stats.class_counts.tolist() == [0, 35]


def _expect(pair, num_classes, dims, path, *fragments, **kwargs):
    with pytest.raises(DataError) as info:
        validate_pair(pair, num_classes, dims, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_label_values_out_of_range_are_listed(files):
    label = np.array([[0, 1, 4], [7, 7, 2]], dtype=np.uint8)
    lab = files.pil("l.png", label)
    _expect(_pair(files.pil("i.png", label), lab), 4, 2, lab, "label values [4, 7] are outside 0..3",
            "num_classes=4")


def test_negative_and_fractional_labels(files):
    img = files.nifti("i.nii.gz", np.zeros((3, 3, 3), np.float32))
    lab = files.nifti("neg.nii.gz", np.full((3, 3, 3), -1, np.int16))
    _expect(_pair(img, lab), 2, 3, lab, "label values [-1] are outside 0..1")
    frac = np.zeros((3, 3, 3), np.float32)
    frac[0, 0, 0], frac[1, 1, 1] = 0.5, 1.25
    lab = files.nifti("frac.nii.gz", frac)
    _expect(_pair(img, lab), 2, 3, lab, "must be integers", "[0.5, 1.25]")


@pytest.mark.parametrize(("value", "fragment"), [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite")])
def test_non_finite_intensities(files, value, fragment):
    data = np.zeros((3, 3, 3), np.float32)
    data[1, 2, 0] = value
    img = files.nifti("i.nii", data)
    _expect(_pair(img, files.nifti("l.nii", np.zeros((3, 3, 3), np.uint8))), 2, 3, img, f"image has {fragment}")


def test_shape_mismatch(files):
    lab = files.pil("l.png", np.zeros((4, 6), np.uint8))
    _expect(_pair(files.pil("i.png", np.zeros((4, 5), np.uint8)), lab), 2, 2, lab,
            "label shape (4, 6) does not match image shape (4, 5)")  # (H, W), as the files


def test_affine_mismatch_and_tolerance(files):
    data = np.zeros((3, 4, 5), np.uint8)
    img = files.nifti("i.nii.gz", data)
    nudged = OBLIQUE_AFFINE.copy()
    nudged[0, 3] += 1e-6  # rounding noise: accepted
    assert validate_pair(_pair(img, files.nifti("ok.nii.gz", data, nudged)), 2, 3).shape == (3, 4, 5)
    shifted = OBLIQUE_AFFINE.copy()
    shifted[2, 3] += 2.5  # one slice off
    lab = files.nifti("bad.nii.gz", data, shifted)
    _expect(_pair(img, lab), 2, 3, lab, "label affine differs", "by up to 2.5")


def test_4d_nifti_is_an_error_unless_channels_allowed(files, rng):
    img = files.nifti("i.nii.gz", rng.normal(size=(3, 4, 5, 2)).astype(np.float32))
    pair = _pair(img, files.nifti("l.nii.gz", np.zeros((3, 4, 5), np.uint8)))
    _expect(pair, 2, 3, img, "4D image with shape (3, 4, 5, 2)")
    assert validate_pair(pair, 2, 3, allow_channels=True).channels == 2


def test_wrong_spatial_dims(files):
    img = files.nifti("i.nii.gz", np.zeros((3, 4, 5), np.float32))
    _expect(_pair(img, img), 2, 2, img, "3D image (spatial shape (3, 4, 5)), expected 2D")


def test_rgb_label_collapses_only_when_channels_agree(files):
    grey = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    img = files.pil("i.png", grey)
    stats = validate_pair(_pair(img, files.pil("same.png", np.stack([grey] * 3, -1))), 3, 2)
    assert stats.class_counts.tolist() == [1, 2, 1]
    lab = files.pil("rgb.png", np.stack([grey, grey, grey[::-1]], -1))
    _expect(_pair(img, lab), 3, 2, lab, "label has 3 different channels")


@pytest.mark.parametrize("broken", ["image", "label"])
def test_corrupt_or_non_image_files(files, broken):
    good = files.pil("i.png", np.zeros((4, 4), np.uint8))
    bad = files.text("bad.png", b"\x89PNG\r\n\x1a\n truncated")
    pair = _pair(bad, good) if broken == "image" else _pair(good, bad)
    _expect(pair, 2, 2, bad, "cannot read image (")
    txt = files.text("notes.txt")
    _expect(_pair(good, txt), 2, 2, txt, "unsupported file type '.txt'")
