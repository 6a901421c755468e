"""Image loading: one place decides the reader by suffix; loading itself is MONAI's ``LoadImage(d)``.

Readers (see :func:`image_readers`), by suffix:

- ``.nii`` / ``.nii.gz``            -> MONAI ``NibabelReader`` (data made native-endian)
- ``.mha/.mhd/.nrrd/.nhdr``, DICOM series folders -> :class:`SimpleITKReader` (ours)
- ``.png/.jpg/.jpeg/.bmp``          -> MONAI ``PILReader`` (RGBA/LA: alpha dropped; CMYK/YCbCr -> RGB;
                                       palette "P" images keep their indices, as label maps need)
- ``.tif/.tiff``                    -> :class:`TifffileReader` (ours; 16-bit and multi-channel)

``LoadImage`` given a list of readers does *not* consult ``verify_suffix``: it calls ``read`` on the
registered readers in reverse order and keeps the first that does not raise. Each reader here therefore
refuses (raises) in ``read`` for a suffix it does not own, so the choice is by suffix, not by which
library happens to open a file first.

Spatial axis order: NIfTI (i, j, k) and ITK files (x, y, z), as MONAI reads them (their affine
describes that index order); 2D images (PNG/JPEG/BMP/TIFF) **rows first, (H, W)**, as PIL, NumPy and
scikit-image hold them (MONAI's ``PILReader(reverse_indexing=False)``; our TIFF reader likewise), so
code outside MONAI never transposes a smear.

Channels: a 4D NIfTI (i, j, k, c) -- a Decathlon multi-modal image, e.g. T2 + ADC -- comes out as
(c, i, j, k) (MONAI's ``original_channel_dim`` -1), as do multi-component ITK volumes and RGB/planar
images; the checks accept it when ``data.in_channels`` says so, and writers keep the 3D geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import tifffile
import torch
from monai.data import ImageReader, MetaTensor, NibabelReader, PILReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.data.utils import orientation_ras_lps
from monai.transforms import EnsureChannelFirstd, LoadImage, LoadImaged, MapTransform
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from medseg_dfl.io.errors import DataError
from medseg_dfl.io.limits import DEFAULT_MAX_VOXELS, check_before_decoding

__all__ = [
    "IMAGE_SUFFIXES",
    "ITK_DIRECTION_KEY",
    "ITK_ORIGIN_KEY",
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "PIL_SUFFIXES",
    "TIFF_SUFFIXES",
    "SimpleITKReader",
    "StrictNibabelReader",
    "StrictPILReader",
    "TifffileReader",
    "file_suffix",
    "image_readers",
    "is_dicom_dir",
    "load_image",
    "load_transforms",
    "reader_for",
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + PIL_SUFFIXES + TIFF_SUFFIXES
# Meta data keys of SimpleITKReader: ITK's own origin and direction (LPS), for the writers
# (medseg_dfl.io.geometry.ImageGeometry), so they need not read the source again.
ITK_ORIGIN_KEY = "itk_origin"
ITK_DIRECTION_KEY = "itk_direction"


def file_suffix(path: str | Path) -> str:
    """Lower-case suffix with ``.nii.gz`` counted as one suffix (``a.b.nii.gz`` -> ``.nii.gz``)."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def is_dicom_dir(path: str | Path) -> bool:
    """A folder holding ``*.dcm`` files directly (read as one DICOM series)."""
    path = Path(path)
    return path.is_dir() and any(p.suffix.lower() == ".dcm" for p in path.iterdir())


def _all_have_suffix(filename: Sequence[Any] | Any, suffixes: Sequence[str]) -> bool:
    return all(file_suffix(f"{name}") in suffixes for name in ensure_tuple(filename))


def _refuse_unless(reader: ImageReader, data: Any) -> None:
    if not reader.verify_suffix(data):
        raise ValueError(f"{type(reader).__name__} does not read {data}")


def _native_endian(data: np.ndarray) -> np.ndarray:
    # torch cannot take big-endian arrays
    return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))


class StrictNibabelReader(NibabelReader):
    """MONAI ``NibabelReader`` that only reads ``.nii/.nii.gz`` and returns native-endian data."""

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        return _all_have_suffix(filename, NIFTI_SUFFIXES)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        _refuse_unless(self, data)
        return super().read(data, **kwargs)

    def _get_array_data(self, img: Any, filename: Any) -> np.ndarray:
        return _native_endian(np.asanyarray(super()._get_array_data(img, filename)))


def _pil_to_supported_mode(image: Any) -> Any:
    """Drop alpha (RGBA -> RGB, LA -> L) and convert CMYK/YCbCr to RGB; other modes unchanged."""
    conversions = {"RGBA": "RGB", "LA": "L", "PA": "P", "CMYK": "RGB", "YCbCr": "RGB", "RGBX": "RGB"}
    target = conversions.get(image.mode)
    return image.convert(target) if target else image


class StrictPILReader(PILReader):
    """MONAI ``PILReader`` limited to PNG/JPEG/BMP, rows first (H, W); alpha channels dropped (see
    module docstring)."""

    def __init__(self, reverse_indexing: bool = False, **kwargs: Any) -> None:
        super().__init__(converter=_pil_to_supported_mode, reverse_indexing=reverse_indexing, **kwargs)

    def _get_spatial_shape(self, img: Any) -> np.ndarray:
        # MONAI records (width, height) whatever the order of the array; ours follows the array.
        shape = super()._get_spatial_shape(img)
        return shape if self.reverse_indexing else shape[::-1].copy()

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        return _all_have_suffix(filename, PIL_SUFFIXES)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        _refuse_unless(self, data)
        images = ensure_tuple(super().read(data, **kwargs))
        for image in images:
            image.load()  # decode now, so a truncated file fails here and not later
        return images if len(images) > 1 else images[0]


class TifffileReader(ImageReader):
    """2D TIFF (8/16/32-bit, grey or multi-channel) via tifffile, rows first (H, W) as :class:`StrictPILReader`.

    Supported layouts (tifffile axes): ``YX``, ``YXS`` (samples last) and ``CYX``/``SYX``/``QYX`` (planar);
    channels come out last, so ``EnsureChannelFirst`` makes them (C, H, W).
    """

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        return _all_have_suffix(filename, TIFF_SUFFIXES)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        _refuse_unless(self, data)
        images = []
        for name in ensure_tuple(data):
            with tifffile.TiffFile(f"{name}") as tif:
                series = tif.series[0]
                images.append((series.asarray(), series.axes))
        return images if len(images) > 1 else images[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        arrays: list[np.ndarray] = []
        meta: dict = {}
        for array, axes in [img] if isinstance(img, tuple) else img:
            array = _native_endian(np.asarray(array))
            if axes in ("CYX", "SYX", "QYX"):  # planar channels (Q: unlabelled pages)
                array, axes = np.moveaxis(array, 0, -1), "YXS"
            if axes not in ("YX", "YXS"):
                raise ValueError(f"unsupported TIFF layout (axes {axes}, shape {array.shape}); expected a 2D image")
            data = array  # (H, W[, C]): rows first, as tifffile gives them
            header = {
                "format": "TIFF",
                "dtype": str(array.dtype),
                MetaKeys.SPATIAL_SHAPE: np.asarray(data.shape[:2]),
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if data.ndim == 2 else -1,
            }
            arrays.append(data)
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta


class SimpleITKReader(ImageReader):
    """MHA/MHD/NRRD files and DICOM series folders via SimpleITK, with MONAI ``ITKReader``'s meta data.

    Data come out in ITK index order (x, y, z) with vector components last; ``affine`` and
    ``original_affine`` are RAS (``affine_lps_to_ras=True``, as ``NibabelReader``), ``spacing``,
    ``spatial_shape`` and ``original_channel_dim`` as ``ITKReader`` sets them, and ITK's own origin
    and direction under :data:`ITK_ORIGIN_KEY` / :data:`ITK_DIRECTION_KEY` (for the writers).
    """

    def __init__(self, affine_lps_to_ras: bool = True, series_uid: str = "") -> None:
        super().__init__()
        self.affine_lps_to_ras = affine_lps_to_ras
        self.series_uid = series_uid

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        names = ensure_tuple(filename)
        return all(Path(f"{n}").is_dir() or file_suffix(f"{n}") in ITK_SUFFIXES for n in names)

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        _refuse_unless(self, data)
        images = [self._read_one(Path(f"{name}")) for name in ensure_tuple(data)]
        return images if len(images) > 1 else images[0]

    def _read_one(self, path: Path) -> sitk.Image:
        if not path.is_dir():
            return sitk.ReadImage(str(path))
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise FileNotFoundError(f"no DICOM series in {path}")
        uid = self.series_uid or series[0]
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), uid))
        return reader.Execute()

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        arrays: list[np.ndarray] = []
        meta: dict = {}
        for image in [img] if isinstance(img, sitk.Image) else img:  # (an sitk.Image is iterable)
            data = sitk.GetArrayFromImage(image)  # (z, y, x[, c])
            if image.GetNumberOfComponentsPerPixel() == 1:
                data = data.T
            else:
                data = np.moveaxis(data.T, 0, -1)
            header = {key: image.GetMetaData(key) for key in image.GetMetaDataKeys() if not key.startswith("ITK_")}
            header["spacing"] = np.asarray(image.GetSpacing())
            header[ITK_ORIGIN_KEY] = np.asarray(image.GetOrigin())
            header[ITK_DIRECTION_KEY] = np.asarray(image.GetDirection())
            header[MetaKeys.ORIGINAL_AFFINE] = self._affine(image)
            header[MetaKeys.AFFINE] = header[MetaKeys.ORIGINAL_AFFINE].copy()
            header[MetaKeys.SPACE] = SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS
            header[MetaKeys.SPATIAL_SHAPE] = np.asarray(image.GetSize())
            header[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan") if data.ndim == image.GetDimension() else -1
            arrays.append(_native_endian(data))
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta

    def _affine(self, image: sitk.Image) -> np.ndarray:
        dim = image.GetDimension()
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
        affine = np.eye(dim + 1)
        affine[:dim, :dim] = direction @ np.diag(image.GetSpacing())
        affine[:dim, -1] = image.GetOrigin()
        return orientation_ras_lps(affine) if self.affine_lps_to_ras else affine


def image_readers() -> list[ImageReader]:
    """The readers to pass as ``LoadImage(reader=...)``; each reads only its own suffixes."""
    return [StrictPILReader(), TifffileReader(), StrictNibabelReader(), SimpleITKReader()]


def reader_for(path: str | Path) -> ImageReader:
    """The reader :func:`image_readers` uses for ``path``; ``DataError`` for an unsupported file."""
    for reader in image_readers():
        if reader.verify_suffix(str(path)):
            return reader
    raise DataError(path, f"unsupported file type '{file_suffix(path)}' (supported: {', '.join(IMAGE_SUFFIXES)})")


def _short_reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_image(path: str | Path | Sequence[str | Path], *, ensure_channel_first: bool = True,
               max_voxels: int = DEFAULT_MAX_VOXELS) -> MetaTensor:
    """Load one image (or DICOM folder) with MONAI ``LoadImage``: a float32 ``MetaTensor`` (C, spatial...).

    A sequence of files (the channel files of an nnU-Net case, ``_0000`` first) is one image, their
    channels stacked in that order, with the first file's meta data (as ``LoadImaged`` stacks a list);
    a file whose spatial shape or affine differs from the first's is a :class:`DataError` naming it.

    Raises ``FileNotFoundError`` for a missing path and :class:`DataError`
    (``"<path>: cannot read image (<reason>)"``) for an unsupported, truncated or corrupt file, one
    declaring more than ``max_voxels`` voxels x channels, or one stored rotated (``medseg_dfl.io.limits``).
    """
    if not isinstance(path, (str, Path)):
        return _load_channel_files([Path(p) for p in path], max_voxels)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    reader = reader_for(path)
    check_before_decoding(path, max_voxels)
    loader = LoadImage(image_only=True, ensure_channel_first=ensure_channel_first)
    try:
        return loader(str(path), reader=reader)
    except Exception as err:  # any library's decode error becomes one line naming the file
        raise DataError(path, f"cannot read image ({_short_reason(err)})") from err


def _load_channel_files(paths: list[Path], max_voxels: int) -> MetaTensor:
    if not paths:
        raise ValueError("no channel files to load")
    images = [load_image(p, max_voxels=max_voxels) for p in paths]
    first, first_affine = images[0], np.asarray(images[0].affine)
    agree = "the channel files of one case must have the same shape and geometry"
    for path, image in zip(paths[1:], images[1:], strict=True):
        shape, affine = tuple(image.shape[1:]), np.asarray(image.affine)
        if shape != tuple(first.shape[1:]):
            raise DataError(path, f"channel file {path.name} of shape {shape}, {paths[0].name} has "
                                  f"{tuple(first.shape[1:])}; {agree}")  # fmt: skip
        if affine.shape != first_affine.shape or not np.allclose(affine, first_affine):
            raise DataError(path, f"channel file {path.name} with another geometry (affine) than {paths[0].name}; "
                                  f"{agree}")  # fmt: skip
    return torch.cat(images, dim=0) if len(images) > 1 else first


def load_transforms(keys: Sequence[str] | str) -> list[MapTransform]:
    """``LoadImaged`` with :func:`image_readers` + ``EnsureChannelFirstd``; images (C, ...), labels (1, ...)."""
    return [LoadImaged(keys, reader=image_readers(), image_only=True), EnsureChannelFirstd(keys)]
