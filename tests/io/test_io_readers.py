"""Readers: the right reader per suffix, geometry as MONAI's readers give it, messy files."""

from __future__ import annotations

import gzip
import locale

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from io_geometry import ITK_DIRECTION, ITK_ORIGIN, ITK_SPACING, OBLIQUE_AFFINE
from monai.data import NibabelReader, PILReader
from monai.transforms import Compose

from medseg_dfl.io import DataError, SimpleITKReader, TifffileReader, file_suffix, load_image, load_transforms
from medseg_dfl.io.readers import reader_for

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_affine_ras() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.array(ITK_DIRECTION).reshape(3, 3) @ np.diag(ITK_SPACING)
    affine[:3, 3] = ITK_ORIGIN
    return LPS_TO_RAS @ affine


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("a.nii.gz", ".nii.gz"), ("a.b.NII.GZ", ".nii.gz"), ("x.nii", ".nii"), ("c.MHA", ".mha"),
     ("c.tar.gz", ".gz"), ("noext", ""), ("img.tiff", ".tiff")],
)
def test_file_suffix(name, suffix):
    assert file_suffix(name) == suffix


@pytest.mark.parametrize(
    ("name", "reader_type"),
    [("a.nii.gz", NibabelReader), ("a.nii", NibabelReader), ("a.mha", SimpleITKReader),
     ("a.mhd", SimpleITKReader), ("a.nrrd", SimpleITKReader), ("a.png", PILReader), ("a.JPG", PILReader),
     ("a.jpeg", PILReader), ("a.tif", TifffileReader), ("a.tiff", TifffileReader)],
)
def test_reader_chosen_by_suffix(name, reader_type):
    reader = reader_for(name)
    assert isinstance(reader, reader_type)
    assert reader.verify_suffix(name)


def test_unsupported_suffix_is_data_error(files):
    path = files.text("notes.txt")
    with pytest.raises(DataError, match=r"notes\.txt: unsupported file type '\.txt'"):
        load_image(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        load_image(tmp_path / "missing.nii.gz")


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
@pytest.mark.parametrize("endianness", ["<", ">"])
def test_nifti_geometry_and_endianness(files, rng, name, endianness):
    data = rng.integers(-1000, 1000, size=(4, 5, 6)).astype(f"{endianness}i2")
    path = files.nifti(name, data, endianness=endianness)
    assert nib.load(path).header.endianness == endianness
    img = load_image(path)
    assert tuple(img.shape) == (1, 4, 5, 6)
    np.testing.assert_array_equal(img[0].numpy(), data.astype(np.float32))
    np.testing.assert_allclose(img.meta["affine"].numpy(), OBLIQUE_AFFINE, atol=1e-5)
    np.testing.assert_array_equal(img.meta["spatial_shape"], [4, 5, 6])
    assert img.meta["filename_or_obj"] == str(path)


@pytest.mark.parametrize("name", ["vol.mha", "vol.nrrd", "vol.mhd"])
def test_itk_geometry(files, rng, name):
    data_zyx = rng.integers(0, 500, size=(3, 4, 5)).astype(np.int16)
    img = load_image(files.itk(name, data_zyx))
    assert tuple(img.shape) == (1, 5, 4, 3)  # (x, y, z)
    np.testing.assert_array_equal(img[0].numpy(), data_zyx.T.astype(np.float32))
    np.testing.assert_allclose(img.meta["affine"].numpy(), itk_affine_ras(), atol=1e-6)
    np.testing.assert_allclose(img.meta["spacing"], ITK_SPACING)
    np.testing.assert_array_equal(img.meta["spatial_shape"], [5, 4, 3])


def test_simpleitk_and_nibabel_agree_on_the_same_volume(files, rng):
    image = sitk.ReadImage(str(files.itk("v.mha", rng.normal(size=(3, 4, 5)).astype(np.float32))))
    sitk.WriteImage(image, str(files.path("v.nii.gz")))
    sitk.WriteImage(image, str(files.path("v.nrrd")))
    via_nibabel = load_image(files.path("v.nii.gz"))
    for other in ("v.mha", "v.nrrd"):
        via_sitk = load_image(files.path(other))
        np.testing.assert_array_equal(via_sitk.numpy(), via_nibabel.numpy())
        np.testing.assert_allclose(via_sitk.meta["affine"].numpy(), via_nibabel.meta["affine"].numpy(), atol=1e-5)


def test_multicomponent_itk_image_is_channels_first(files, rng):
    data = rng.random((3, 4, 5, 2)).astype(np.float32)  # z, y, x, components
    img = load_image(files.itk("vec.mha", data, vector=True))
    assert tuple(img.shape) == (2, 5, 4, 3)
    np.testing.assert_array_equal(img[1].numpy(), data[..., 1].T)


def test_dicom_series_folder(files, rng):
    volume = rng.integers(0, 1000, size=(3, 4, 5)).astype(np.int16)  # z, y, x
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    saved_locale = locale.setlocale(locale.LC_ALL)  # GDCM's writer sets "C": later read_text() would be ASCII
    try:
        for z in range(volume.shape[0]):
            slice_ = sitk.GetImageFromArray(volume[z])
            slice_.SetSpacing((0.5, 0.5))
            for tag, value in [("0008|0060", "CT"), ("0020|000e", "1.2.826.0.1.3680043.2.1125.1"),
                               ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0032", f"0\\0\\{2.5 * z}"),
                               ("0020|0013", str(z))]:
                slice_.SetMetaData(tag, value)
            writer.SetFileName(str(files.path(f"series/{z:03d}.dcm")))
            writer.Execute(slice_)
    finally:
        locale.setlocale(locale.LC_ALL, saved_locale)
    img = load_image(files.path("series"))
    assert tuple(img.shape) == (1, 5, 4, 3)
    np.testing.assert_array_equal(img[0].numpy(), volume.T.astype(np.float32))
    np.testing.assert_allclose(img.meta["spacing"], [0.5, 0.5, 2.5])


def test_2d_grey_rgb_rgba_channels_first(files, rng):
    rgb = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)  # H, W, C
    rgba = np.concatenate([rgb, rng.integers(0, 256, size=(6, 9, 1), dtype=np.uint8)], axis=-1)
    grey = load_image(files.pil("grey.png", rgb[..., 0]))
    assert tuple(grey.shape) == (1, 6, 9)  # (C, H, W): rows first
    np.testing.assert_array_equal(grey[0].numpy(), rgb[..., 0])
    np.testing.assert_array_equal(grey.meta["spatial_shape"], [6, 9])  # the array's order, not PIL's (W, H)
    for name, data in [("rgb.png", rgb), ("rgba.png", rgba)]:
        img = load_image(files.pil(name, data))
        assert tuple(img.shape) == (3, 6, 9), name  # alpha dropped
        np.testing.assert_array_equal(img.numpy(), np.moveaxis(rgb, -1, 0))


def test_jpeg_and_16bit_png(files, rng):
    smooth = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (8, 1))
    jpeg = load_image(files.pil("a.jpg", np.stack([smooth] * 3, axis=-1), quality=95))
    assert tuple(jpeg.shape) == (3, 8, 16)
    assert np.abs(jpeg[0].numpy() - smooth).max() <= 8  # lossy, but close
    deep = rng.integers(0, 65536, size=(5, 7)).astype(np.uint16)
    png16 = load_image(files.pil("deep.png", deep))
    np.testing.assert_array_equal(png16[0].numpy(), deep.astype(np.float32))


@pytest.mark.parametrize("layout", ["grey", "rgb", "planar"])
def test_16bit_tiff(files, rng, layout):
    data = rng.integers(0, 65536, size=(6, 9, 3)).astype(np.uint16)  # H, W, C
    if layout == "grey":
        path, expected = files.tiff("a.tif", data[..., 0]), data[None, ..., 0]
    elif layout == "rgb":
        path, expected = files.tiff("a.tif", data, photometric="rgb"), np.moveaxis(data, -1, 0)
    else:
        planar = np.moveaxis(data, -1, 0)
        path, expected = files.tiff("a.tiff", planar, photometric="minisblack", metadata={"axes": "CYX"}), planar
    img = load_image(path)
    np.testing.assert_array_equal(img.numpy(), expected.astype(np.float32))  # (C, H, W)
    np.testing.assert_array_equal(img.meta["spatial_shape"], [6, 9])


def test_load_transforms_pick_reader_by_suffix(files, rng):
    image = rng.integers(0, 65536, size=(6, 9, 3)).astype(np.uint16)
    label = rng.integers(0, 4, size=(6, 9)).astype(np.uint8)
    data = {"image": str(files.tiff("a.tif", image, photometric="rgb")), "label": str(files.pil("a.png", label))}
    out = Compose(load_transforms(["image", "label"]))(data)
    assert tuple(out["image"].shape) == (3, 6, 9) and tuple(out["label"].shape) == (1, 6, 9)
    np.testing.assert_array_equal(out["image"].numpy(), np.moveaxis(image, -1, 0))
    np.testing.assert_array_equal(out["label"][0].numpy(), label)
    vol = rng.integers(0, 9, size=(3, 4, 5)).astype(np.int16)
    data = {"image": str(files.itk("v.nrrd", vol)), "label": str(files.nifti("v.nii.gz", vol.T.copy()))}
    out = Compose(load_transforms(["image", "label"]))(data)
    np.testing.assert_array_equal(out["image"].numpy(), out["label"].numpy())
    np.testing.assert_allclose(out["image"].meta["affine"].numpy(), itk_affine_ras(), atol=1e-6)


def _truncate(path, keep: float = 0.5):
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


@pytest.mark.parametrize("kind", ["png", "jpg", "nii", "nii.gz", "mha", "nrrd", "tif", "garbage_png", "garbage_gz"])
def test_corrupt_files_give_one_line_naming_the_file(files, rng, kind):
    data = rng.integers(0, 255, size=(32, 32)).astype(np.uint8)
    path = {
        "png": lambda: _truncate(files.pil("a.png", data)),
        "jpg": lambda: _truncate(files.pil("a.jpg", data), 0.3),
        "nii": lambda: _truncate(files.nifti("a.nii", data[..., None].repeat(4, -1))),
        "nii.gz": lambda: _truncate(files.nifti("a.nii.gz", data[..., None].repeat(4, -1))),
        "mha": lambda: _truncate(files.itk("a.mha", data[None].repeat(3, 0))),
        "nrrd": lambda: _truncate(files.itk("a.nrrd", data[None].repeat(3, 0))),
        "tif": lambda: _truncate(files.tiff("a.tif", data), 0.1),
        "garbage_png": lambda: files.text("a.png"),
        "garbage_gz": lambda: files.text("a.nii.gz", gzip.compress(b"hello")),
    }[kind]()
    with pytest.raises(DataError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read image (")
    assert "\n" not in message
    assert info.value.path == path


def test_palette_label_keeps_indices_and_la_drops_alpha(files, rng):
    from PIL import Image

    indices = rng.integers(0, 5, size=(6, 9)).astype(np.uint8)
    palette = Image.fromarray(indices, mode="L").convert("P")
    palette.putdata(indices.ravel().tolist())
    palette.putpalette([v for i in range(256) for v in (i * 40 % 256, 0, 255 - i)])
    palette.save(files.path("p.png"))
    assert Image.open(files.path("p.png")).mode == "P"
    np.testing.assert_array_equal(load_image(files.path("p.png"))[0].numpy(), indices)
    grey_alpha = np.stack([indices * 50, np.full_like(indices, 7)], axis=-1)
    img = load_image(files.pil("la.png", grey_alpha))
    assert tuple(img.shape) == (1, 6, 9)
    np.testing.assert_array_equal(img[0].numpy(), indices * 50)
