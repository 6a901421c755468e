"""What an input file may be before anything decodes it, and what a decoded image may hold.

- :func:`check_declared_size`: the size a file's header declares (TIFF, NIfTI, MHA/MHD/NRRD, a
  DICOM series, PNG/JPEG/BMP), refused above ``max_voxels`` voxels x channels *before* decoding, so
  a small compressed file declaring a huge image (a "TIFF bomb") costs a header read, not the
  machine's memory. The default :data:`DEFAULT_MAX_VOXELS` (2**30, 4 GiB as float32) fits any CT,
  MR or whole-slide tile this toolkit is sized for; ``--max-voxels`` raises it (docs/input_limits.md).
- :func:`check_orientation`: a JPEG/PNG/TIFF whose EXIF orientation is not "upright" is stored
  rotated or mirrored relative to what every viewer shows; a mask of its stored pixels would not
  match the picture people look at, so it is refused.
- :func:`check_geometry`: a NIfTI whose voxel-to-world matrix (sform, else qform) is singular or not
  finite (an all-zero sform) has no geometry to resample it by or to write a mask with; refused.
- :func:`check_finite`: one NaN or Inf pixel turns a normalised image into NaN and the mask into
  background, silently; inference refuses such a file, naming the number of non-finite values.

The size and orientation checks read headers only; a header that cannot be read is left to the
reader, which reports the file as unreadable.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import tifffile
from PIL import Image

from medseg_dfl.io.errors import DataError

__all__ = ["DEFAULT_MAX_VOXELS", "check_before_decoding", "check_declared_size", "check_finite", "check_geometry",
           "check_orientation", "declared_size"]  # fmt: skip

DEFAULT_MAX_VOXELS = 2**30
_EXIF_ORIENTATION = 0x0112  # the same tag number in TIFF
_PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(_TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(_PIL_SUFFIXES):
        return "pil"
    if name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return "itk"
    return ""


def _itk_size(path: str) -> tuple[int, ...]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return (*reader.GetSize(), reader.GetNumberOfComponents())


def _dicom_size(folder: Path) -> tuple[int, ...] | None:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        return None
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    first = _itk_size(files[0])  # (x, y[, z], components): the slices multiply the first file's size
    return (*first[:-1], len(files), first[-1])


def _pil_size(path: Path) -> tuple[int, ...]:
    with Image.open(path) as image:  # reads the header only
        return (*image.size, len(image.getbands()))


def _tiff_size(path: Path) -> tuple[int, ...]:
    with tifffile.TiffFile(path) as tif:  # parses the tags, not the (compressed) image data
        return tuple(tif.series[0].shape) if tif.series else ()


def declared_size(path: str | Path) -> tuple[int, ...] | None:
    """The element counts a file's header declares (spatial sizes and channels, in no set order);
    None when the header cannot be read (the reader then reports the file) or the type is unknown."""
    path = Path(path)
    readers = {"nifti": lambda: tuple(nib.load(path).header.get_data_shape()), "tiff": lambda: _tiff_size(path),
               "pil": lambda: _pil_size(path), "itk": lambda: _itk_size(str(path)),
               "dicom": lambda: _dicom_size(path)}  # fmt: skip
    kind = _kind(path)
    if kind not in readers:
        return None
    try:
        return readers[kind]()
    except Exception:  # any library's header error: the reader names it when it tries to decode
        return None


def check_declared_size(path: str | Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
    """``DataError`` when ``path`` declares more than ``max_voxels`` voxels x channels (see module docstring)."""
    shape = declared_size(path)
    if not shape:
        return
    total = math.prod(int(n) for n in shape)
    if total > max_voxels:
        raise DataError(path, f"declares {' x '.join(str(int(n)) for n in shape)} = {total:,} voxels x channels, "
                              f"more than the limit of {max_voxels:,} (--max-voxels raises it; see "
                              "docs/input_limits.md)")  # fmt: skip


def check_orientation(path: str | Path) -> None:
    """``DataError`` for an image whose EXIF/TIFF orientation is not 1 (upright, see module docstring)."""
    path = Path(path)
    kind = _kind(path)
    try:
        if kind == "pil":
            with Image.open(path) as image:
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        elif kind == "tiff":
            with tifffile.TiffFile(path) as tif:
                tag = tif.pages[0].tags.get(_EXIF_ORIENTATION) if tif.pages else None
                orientation = tag.value if tag is not None else 1
        else:
            return
    except Exception:  # unreadable header: the reader reports the file
        return
    if int(orientation) != 1:
        raise DataError(path, f"EXIF orientation {int(orientation)}: the pixels are stored rotated or mirrored "
                              "relative to how viewers show the image, so its mask would not match it; save it "
                              "upright first (e.g. Pillow's ImageOps.exif_transpose or `exiftran -ai`)")  # fmt: skip


def check_geometry(path: str | Path) -> None:
    """``DataError`` for a NIfTI whose affine is singular or not finite (see module docstring)."""
    path = Path(path)
    if _kind(path) != "nifti":
        return
    try:
        affine = np.asarray(nib.load(path).affine, dtype=np.float64)  # header only
    except Exception:  # unreadable header: the reader reports the file
        return
    spatial = affine[:3, :3]
    if not np.isfinite(affine).all() or abs(np.linalg.det(spatial)) <= 1e-12 * max(1.0, np.abs(spatial).max()) ** 3:
        raise DataError(path, "its affine (sform, else qform) is singular or not finite, so it has no usable voxel "
                              "geometry; fix the header (e.g. nibabel's set_sform/set_qform) first")  # fmt: skip


def check_before_decoding(path: str | Path, max_voxels: int = DEFAULT_MAX_VOXELS) -> None:
    """:func:`check_declared_size`, :func:`check_orientation` and :func:`check_geometry`: what every
    image read checks first."""
    check_declared_size(path, max_voxels)
    check_orientation(path)
    check_geometry(path)


def check_finite(array: np.ndarray, path: str | Path, what: str = "image") -> None:
    """``DataError`` naming ``path`` and the number of NaN and infinite values, if there are any."""
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.floating):
        return
    finite = np.isfinite(values)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    nan = int(np.count_nonzero(np.isnan(values)))
    raise DataError(path, f"{what} has {bad} non-finite value(s) ({nan} NaN, {bad - nan} infinite) of "
                          f"{values.size}; refused, as a result computed from them would be wrong")  # fmt: skip
