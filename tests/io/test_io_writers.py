"""Writers: exact geometry of the reference, family formats, atomic and no silent overwrite."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from io_geometry import ITK_DIRECTION, ITK_ORIGIN, ITK_SPACING, OBLIQUE_AFFINE
from PIL import Image

from medseg_dfl.io import atomic_path, load_image, output_name, write_mask_like, write_probabilities_like
from medseg_dfl.io.geometry import ImageGeometry


@pytest.mark.parametrize(
    ("name", "suffix", "probabilities", "expected"),
    [("case01.nii.gz", "", False, "case01.nii.gz"), ("case01.nii", "", False, "case01.nii.gz"),
     ("a.b.nii.gz", "_probs", True, "a.b_probs.nii.gz"), ("c.mha", "", False, "c.mha"),
     ("c.mhd", "", False, "c.mha"), ("c.nrrd", "_p", True, "c_p.nrrd"), ("x.jpg", "", False, "x.png"),
     ("x.TIF", "", False, "x.png"), ("x.png", "_probs", True, "x_probs.tif")],
)
def test_output_name(name, suffix, probabilities, expected):
    assert output_name(f"/data/{name}", suffix, probabilities=probabilities) == expected


def _make_reference(files, rng, kind):
    if kind in ("nii", "nii.gz"):
        return files.nifti(f"ref.{kind}", rng.normal(size=(5, 6, 4)).astype(">f4"), endianness=">", codes=(2, 1))
    if kind in ("mha", "nrrd", "mhd"):
        return files.itk(f"ref.{kind}", rng.integers(0, 999, size=(4, 6, 5)).astype(np.int16))
    if kind == "tif16":
        return files.tiff("ref.tif", rng.integers(0, 65536, size=(6, 5, 3)).astype(np.uint16), photometric="rgb")
    data = rng.integers(0, 256, size=(6, 5, 4 if kind == "rgba.png" else 3), dtype=np.uint8)
    return files.pil(f"ref.{kind}".replace("rgba.", ""), data)


KINDS = ["nii", "nii.gz", "mha", "nrrd", "mhd", "png", "rgba.png", "jpg", "tif16"]


def _assert_same_geometry(out, reference, kind):
    if kind.startswith("nii"):
        ref, got = nib.load(reference), nib.load(out)
        np.testing.assert_array_equal(got.affine, ref.affine)
        for key in ("qform_code", "sform_code", "pixdim", "xyzt_units"):
            np.testing.assert_array_equal(got.header[key], ref.header[key])
        np.testing.assert_array_equal(got.header.get_qform(), ref.header.get_qform())
        assert got.header.get_slope_inter() == (None, None)
    elif kind in ("mha", "nrrd", "mhd"):
        got = sitk.ReadImage(str(out))
        np.testing.assert_allclose(got.GetSpacing(), ITK_SPACING)
        np.testing.assert_allclose(got.GetOrigin(), ITK_ORIGIN)
        np.testing.assert_allclose(got.GetDirection(), ITK_DIRECTION)
    else:
        with Image.open(out) as got:
            assert got.format == "PNG" and got.size == (5, 6)  # PIL's (W, H) of the (6, 5, C) reference


@pytest.mark.parametrize("kind", KINDS)
def test_mask_round_trip_keeps_geometry(files, rng, kind):
    reference = _make_reference(files, rng, kind)
    loaded = load_image(reference)
    mask = rng.integers(0, 4, size=loaded.shape[1:])  # an "identity prediction" in load_image order
    out = write_mask_like(mask, reference, files.path("out") / output_name(reference))
    assert out.exists()
    _assert_same_geometry(out, reference, kind)
    again = load_image(out)
    np.testing.assert_array_equal(again[0].numpy(), mask)
    np.testing.assert_allclose(again.meta["affine"].numpy(), loaded.meta["affine"].numpy(), atol=1e-6)
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    if out.suffix == ".png":  # 2D masks are rows first, as PIL and NumPy read the file
        assert mask.shape == (6, 5)
        np.testing.assert_array_equal(np.asarray(Image.open(out)), mask)


def test_nifti_mask_keeps_oblique_affine_and_resets_scaling(files, rng):
    data = rng.integers(0, 3, size=(5, 6, 4)).astype(np.int16)
    ref = nib.Nifti1Image(data, OBLIQUE_AFFINE)
    ref.header.set_slope_inter(2.0, -1024.0)
    nib.save(ref, files.path("ct.nii.gz"))
    out = write_mask_like(data, files.path("ct.nii.gz"), files.path("out/ct.nii.gz"))
    got = nib.load(out)
    assert got.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), data)
    np.testing.assert_allclose(got.affine, OBLIQUE_AFFINE, atol=1e-6)


@pytest.mark.parametrize(("num_classes", "max_value", "dtype"), [(4, 3, np.uint8), (300, 3, np.uint16),
                                                                  (None, 299, np.uint16), (None, 255, np.uint8)])
def test_mask_dtype_follows_classes(files, rng, num_classes, max_value, dtype):
    reference = files.pil("a.png", rng.integers(0, 256, size=(4, 7), dtype=np.uint8))
    mask = np.zeros((4, 7), dtype=np.int64)  # rows first, as the reference
    mask[1, 2] = max_value
    out = write_mask_like(mask, reference, files.path("out/a.png"), num_classes=num_classes)
    got = np.asarray(Image.open(out))
    assert got.dtype == dtype and got[1, 2] == max_value and got.sum() == max_value


def test_mask_with_channel_axis_and_wrong_shape(files, rng):
    reference = files.itk("v.mha", rng.integers(0, 5, size=(2, 3, 4)).astype(np.uint8))
    out = write_mask_like(np.ones((1, 4, 3, 2)), reference, files.path("a.mha"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"mask shape \(2, 3, 4\) does not match .* \(4, 3, 2\)"):
        write_mask_like(np.ones((2, 3, 4)), reference, files.path("b.mha"))
    assert not files.path("b.mha").exists()


def test_no_overwrite_without_flag(files, rng):
    reference = files.pil("a.png", rng.integers(0, 256, size=(4, 7), dtype=np.uint8))
    out = write_mask_like(np.ones((4, 7)), reference, files.path("out/a.png"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_mask_like(np.zeros((4, 7)), reference, out)
    assert np.asarray(Image.open(out)).max() == 1  # untouched
    write_mask_like(np.full((4, 7), 2), reference, out, overwrite=True)
    assert np.asarray(Image.open(out)).min() == 2


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "mask.nii.gz"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("kind", ["nii.gz", "nrrd", "png"])
def test_probabilities_round_trip(files, rng, kind):
    reference = _make_reference(files, rng, kind)
    loaded = load_image(reference)
    probs = rng.random((3, *loaded.shape[1:])).astype(np.float32)
    out = write_probabilities_like(probs, reference, files.path("out") / output_name(reference, "_probs",
                                                                                     probabilities=True))
    again = load_image(out)
    np.testing.assert_allclose(again.numpy(), probs, rtol=1e-6)
    np.testing.assert_allclose(again.meta["affine"].numpy(), loaded.meta["affine"].numpy(), atol=1e-6)
    if kind == "nii.gz":
        assert nib.load(out).shape == (*loaded.shape[1:], 3)
    if kind == "png":  # a (C, H, W) TIFF, rows first as the reference
        np.testing.assert_array_equal(tifffile.imread(out), probs)


@pytest.mark.parametrize("kind", KINDS)
def test_geometry_taken_at_load_writes_what_the_path_writes(files, rng, kind):
    """The writers take the ImageGeometry made from the loaded image (no second read of the source)
    and give exactly the file a path-based call gives."""
    reference = _make_reference(files, rng, kind)
    loaded = load_image(reference)
    geometry = ImageGeometry.from_image(loaded)
    assert geometry.source == reference and geometry.shape == tuple(loaded.shape[1:])
    mask = rng.integers(0, 4, size=loaded.shape[1:])
    by_geometry = write_mask_like(mask, geometry, files.path("a") / output_name(reference))
    by_path = write_mask_like(mask, reference, files.path("b") / output_name(reference))
    _assert_same_geometry(by_geometry, reference, kind)
    a, b = load_image(by_geometry), load_image(by_path)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(a.meta["affine"].numpy(), b.meta["affine"].numpy(), atol=1e-6)
    if kind.startswith("nii"):
        for key in ("qform_code", "sform_code", "pixdim", "xyzt_units", "srow_x", "quatern_b"):
            np.testing.assert_array_equal(nib.load(by_geometry).header[key], nib.load(by_path).header[key])
    with pytest.raises(ValueError, match="does not match the reference's spatial shape"):
        write_mask_like(mask[..., :-1], geometry, files.path("c") / output_name(reference))
