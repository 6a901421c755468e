"""Writers that keep the input's exact geometry, atomically, never overwriting by surprise.

Contract: ``mask`` (and each channel of ``probabilities``) is in the spatial order that
:func:`medseg_dfl.io.readers.load_image` returns for ``reference``: NIfTI (i, j, k), ITK files (x, y, z),
2D images rows first (H, W). The reference file itself supplies the geometry, so nothing is lost in between:

- NIfTI -> ``.nii.gz`` with the reference's affine and header (sform/qform and their codes); data type
  uint8/uint16, scaling (scl_slope/scl_inter) reset.
- MHA/NRRD -> same format with the reference's spacing, origin and direction (``.mhd``/``.nhdr`` become
  single-file ``.mha``/``.nrrd``: a header + raw pair cannot be renamed into place atomically);
  DICOM series folders -> ``.nii.gz`` written by SimpleITK with the series' geometry.
- 2D (PNG/JPEG/BMP/TIFF) -> PNG label map with the reference's height and width; 16-bit when needed.
  Probabilities for 2D go to a float32 (C, H, W) TIFF.

Every file is written through :func:`medseg_dfl.io.atomic.atomic_path` (re-exported here): a hidden
temporary name in the target folder, fsynced, then renamed into place.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import tifffile
from PIL import Image

from medseg_dfl.io.atomic import atomic_path
from medseg_dfl.io.names import file_stem
from medseg_dfl.io.readers import (
    ITK_SUFFIXES,
    NIFTI_SUFFIXES,
    SimpleITKReader,
    file_suffix,
    is_dicom_dir,
    reader_for,
)

__all__ = ["atomic_path", "output_name", "write_mask_like", "write_probabilities_like"]

_ITK_OUTPUT = {".mha": ".mha", ".mhd": ".mha", ".nrrd": ".nrrd", ".nhdr": ".nrrd"}


def _family(reference: Path) -> str:
    if is_dicom_dir(reference):
        return "dicom"
    reader_for(reference)  # DataError for an unsupported file
    suffix = file_suffix(reference)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    return "itk" if suffix in ITK_SUFFIXES else "2d"


def output_name(input: str | Path, suffix: str = "", *, probabilities: bool = False) -> str:
    """``<input stem><suffix><family extension>``: ``case01.nii`` -> ``case01.nii.gz``, ``a.jpg`` -> ``a.png``.

    With ``probabilities=True`` 2D inputs get ``.tif`` (float maps do not fit PNG).
    """
    path = Path(input)
    family = _family(path)
    if family in ("nifti", "dicom"):
        ext = ".nii.gz"
    elif family == "itk":
        ext = _ITK_OUTPUT[file_suffix(path)]
    else:
        ext = ".tif" if probabilities else ".png"
    return f"{file_stem(path)}{suffix}{ext}"


def _label_dtype(mask: np.ndarray, num_classes: int | None) -> type:
    if mask.size and (mask.min() < 0 or mask.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"mask values must be in 0..65535, got {mask.min()}..{mask.max()}")
    if not np.all(np.equal(np.mod(mask, 1), 0)):
        raise ValueError("mask values must be integers (class indices)")
    big = (num_classes is not None and num_classes > 255) or (mask.size and mask.max() > 255)
    return np.uint16 if big else np.uint8


def _reference_shape(reference: Path, family: str) -> tuple[int, ...]:
    if family == "nifti":
        return tuple(int(n) for n in nib.load(reference).shape[:3])
    if family == "itk":
        info = sitk.ImageFileReader()
        info.SetFileName(str(reference))
        info.ReadImageInformation()
        return tuple(info.GetSize())
    if family == "dicom":
        return tuple(_read_itk(reference).GetSize())
    if file_suffix(reference) in (".tif", ".tiff"):
        with tifffile.TiffFile(reference) as tif:
            series = tif.series[0]
            h, w = series.shape[series.axes.index("Y")], series.shape[series.axes.index("X")]
        return (h, w)
    with Image.open(reference) as image:
        return (image.height, image.width)


def _read_itk(reference: Path) -> sitk.Image:
    return SimpleITKReader()._read_one(reference)


def _check_shape(array: np.ndarray, expected: tuple[int, ...], what: str, reference: Path) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(
            f"{reference}: {what} shape {tuple(array.shape)} does not match the reference's spatial shape "
            f"{tuple(expected)} (expected the axis order load_image gives)"
        )


def _nifti_like(data: np.ndarray, reference: Path, dtype: type) -> nib.Nifti1Image:
    ref = nib.load(reference)
    header = ref.header.copy()
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), ref.affine, header)
    sform, sform_code = ref.header.get_sform(coded=True)
    qform, qform_code = ref.header.get_qform(coded=True)
    image.set_sform(sform if sform is not None else ref.affine, code=int(sform_code))
    image.set_qform(qform if qform is not None else ref.affine, code=int(qform_code))
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0.0, 0.0
    return image


def _write_itk(array_zyx: np.ndarray, reference: Path, family: str, tmp: Path, is_vector: bool) -> None:
    image = sitk.GetImageFromArray(array_zyx, isVector=is_vector)
    if family == "dicom":
        ref = _read_itk(reference)
        image.SetSpacing(ref.GetSpacing())
        image.SetOrigin(ref.GetOrigin())
        image.SetDirection(ref.GetDirection())
    else:
        info = sitk.ImageFileReader()
        info.SetFileName(str(reference))
        info.ReadImageInformation()
        image.SetSpacing(info.GetSpacing())
        image.SetOrigin(info.GetOrigin())
        image.SetDirection(info.GetDirection())
    sitk.WriteImage(image, str(tmp), useCompression=True)


def write_mask_like(
    mask: np.ndarray,
    reference: str | Path,
    out_path: str | Path,
    *,
    num_classes: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a label map with ``reference``'s exact geometry (see module docstring); return ``out_path``.

    ``mask``: integer class indices with ``reference``'s spatial shape in ``load_image`` order
    (a leading channel axis of size 1 is accepted). uint16 when ``num_classes > 255`` or a value > 255,
    else uint8. ``ValueError`` for a shape mismatch, ``FileExistsError`` for an existing output.
    """
    reference, out_path = Path(reference), Path(out_path)
    family = _family(reference)
    mask = np.asarray(mask)
    expected = _reference_shape(reference, family)
    if mask.ndim == len(expected) + 1 and mask.shape[0] == 1:
        mask = mask[0]
    _check_shape(mask, expected, "mask", reference)
    dtype = _label_dtype(mask, num_classes)
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        if family == "nifti":
            nib.save(_nifti_like(mask, reference, dtype), tmp)
        elif family in ("itk", "dicom"):
            _write_itk(np.ascontiguousarray(mask.astype(dtype).T), reference, family, tmp, is_vector=False)
        else:
            Image.fromarray(np.ascontiguousarray(mask.astype(dtype))).save(tmp, format="PNG")  # rows first
    return out_path


def write_probabilities_like(
    probabilities: np.ndarray, reference: str | Path, out_path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write per-class float32 maps ``(C, *spatial)`` with ``reference``'s geometry; return ``out_path``.

    NIfTI: 4D (i, j, k, C) with the reference's affine/header; MHA/NRRD: a C-component vector image with
    the reference's spacing/origin/direction; 2D: a float32 TIFF of shape (C, H, W).
    """
    reference, out_path = Path(reference), Path(out_path)
    family = _family(reference)
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim < 2:
        raise ValueError(f"probabilities must be (C, *spatial), got shape {probs.shape}")
    _check_shape(probs[0], _reference_shape(reference, family), "probabilities[0]", reference)
    spatial_reversed = tuple(range(probs.ndim - 1, 0, -1))
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        if family == "nifti":
            nib.save(_nifti_like(np.moveaxis(probs, 0, -1), reference, np.float32), tmp)
        elif family in ("itk", "dicom"):
            zyxc = np.ascontiguousarray(np.transpose(probs, spatial_reversed + (0,)))
            _write_itk(zyxc, reference, family, tmp, is_vector=True)
        else:
            tifffile.imwrite(tmp, np.ascontiguousarray(probs), photometric="minisblack", metadata={"axes": "CYX"})
    return out_path
