"""Writers that keep the input's exact geometry, atomically, never overwriting by surprise.

Contract: ``mask`` (and each channel of ``probabilities``) is in the spatial order that
:func:`medseg_dfl.io.readers.load_image` returns for the source: NIfTI (i, j, k), ITK files (x, y, z),
2D images rows first (H, W). The geometry comes with the prediction as an
:class:`~medseg_dfl.io.geometry.ImageGeometry` made when the source was loaded, so no writer reads
the source again (a path is still accepted and its geometry read from its header):

- NIfTI -> ``.nii.gz`` with the source's affine and header (sform/qform and their codes); data type
  uint8/uint16, scaling (scl_slope/scl_inter) reset.
- MHA/NRRD -> same format with the source's spacing, origin and direction (``.mhd``/``.nhdr`` become
  single-file ``.mha``/``.nrrd``: a header + raw pair cannot be renamed into place atomically);
  DICOM series folders -> ``.nii.gz`` written by SimpleITK with the series' geometry.
- 2D (PNG/JPEG/BMP/TIFF) -> PNG label map with the source's height and width (the rows-first array
  as it is); 16-bit when needed. Probabilities for 2D go to a float32 (C, H, W) TIFF.

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
from medseg_dfl.io.geometry import ImageGeometry, image_family, read_geometry
from medseg_dfl.io.names import file_stem
from medseg_dfl.io.readers import file_suffix

__all__ = ["atomic_path", "output_name", "write_mask_like", "write_probabilities_like"]

_ITK_OUTPUT = {".mha": ".mha", ".mhd": ".mha", ".nrrd": ".nrrd", ".nhdr": ".nrrd"}


def output_name(input: str | Path, suffix: str = "", *, probabilities: bool = False) -> str:
    """``<input stem><suffix><family extension>``: ``case01.nii`` -> ``case01.nii.gz``, ``a.jpg`` -> ``a.png``.

    With ``probabilities=True`` 2D inputs get ``.tif`` (float maps do not fit PNG).
    """
    path = Path(input)
    family = image_family(path)
    if family in ("nifti", "dicom"):
        ext = ".nii.gz"
    elif family == "itk":
        ext = _ITK_OUTPUT[file_suffix(path)]
    else:
        ext = ".tif" if probabilities else ".png"
    return f"{file_stem(path)}{suffix}{ext}"


def _geometry(reference: str | Path | ImageGeometry) -> ImageGeometry:
    return reference if isinstance(reference, ImageGeometry) else read_geometry(reference)


def _label_dtype(mask: np.ndarray, num_classes: int | None) -> type:
    if mask.size and (mask.min() < 0 or mask.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"mask values must be in 0..65535, got {mask.min()}..{mask.max()}")
    if not np.all(np.equal(np.mod(mask, 1), 0)):
        raise ValueError("mask values must be integers (class indices)")
    big = (num_classes is not None and num_classes > 255) or (mask.size and mask.max() > 255)
    return np.uint16 if big else np.uint8


def _nifti_like(data: np.ndarray, geometry: ImageGeometry, dtype: type) -> nib.Nifti1Image:
    assert geometry.nifti_header is not None  # every "nifti" geometry has one
    ref_header = geometry.nifti_header
    affine = ref_header.get_best_affine()
    header = ref_header.copy()
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine, header)
    sform, sform_code = ref_header.get_sform(coded=True)
    qform, qform_code = ref_header.get_qform(coded=True)
    image.set_sform(sform if sform is not None else affine, code=int(sform_code))
    image.set_qform(qform if qform is not None else affine, code=int(qform_code))
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0.0, 0.0
    return image


def _write_itk(array_zyx: np.ndarray, geometry: ImageGeometry, tmp: Path, is_vector: bool) -> None:
    image = sitk.GetImageFromArray(array_zyx, isVector=is_vector)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(tmp), useCompression=True)


def write_mask_like(
    mask: np.ndarray,
    reference: str | Path | ImageGeometry,
    out_path: str | Path,
    *,
    num_classes: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a label map with the source's exact geometry (see module docstring); return ``out_path``.

    ``reference``: the :class:`~medseg_dfl.io.geometry.ImageGeometry` taken when the source was
    loaded (or the source's path: its geometry is then read from it). ``mask``: integer class
    indices with the source's spatial shape in ``load_image`` order (a leading channel axis of size 1
    is accepted). uint16 when ``num_classes > 255`` or a value > 255, else uint8. ``ValueError`` for
    a shape mismatch, ``FileExistsError`` for an existing output.
    """
    geometry, out_path = _geometry(reference), Path(out_path)
    mask = np.asarray(mask)
    if mask.ndim == len(geometry.shape) + 1 and mask.shape[0] == 1:
        mask = mask[0]
    geometry.check_shape(mask, "mask")
    dtype = _label_dtype(mask, num_classes)
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        if geometry.family == "nifti":
            nib.save(_nifti_like(mask, geometry, dtype), tmp)
        elif geometry.family in ("itk", "dicom"):
            _write_itk(np.ascontiguousarray(mask.astype(dtype).T), geometry, tmp, is_vector=False)
        else:
            Image.fromarray(np.ascontiguousarray(mask.astype(dtype))).save(tmp, format="PNG")  # rows first
    return out_path


def write_probabilities_like(
    probabilities: np.ndarray, reference: str | Path | ImageGeometry, out_path: str | Path, *,
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """Write per-class float32 maps ``(C, *spatial)`` with the source's geometry; return ``out_path``.

    ``reference`` as in :func:`write_mask_like`. NIfTI: 4D (i, j, k, C) with the source's
    affine/header; MHA/NRRD: a C-component vector image with the source's spacing/origin/direction;
    2D: a float32 TIFF of shape (C, H, W).
    """
    geometry, out_path = _geometry(reference), Path(out_path)
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim < 2:
        raise ValueError(f"probabilities must be (C, *spatial), got shape {probs.shape}")
    geometry.check_shape(probs[0], "probabilities[0]")
    spatial_reversed = tuple(range(probs.ndim - 1, 0, -1))
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        if geometry.family == "nifti":
            nib.save(_nifti_like(np.moveaxis(probs, 0, -1), geometry, np.float32), tmp)
        elif geometry.family in ("itk", "dicom"):
            zyxc = np.ascontiguousarray(np.transpose(probs, spatial_reversed + (0,)))
            _write_itk(zyxc, geometry, tmp, is_vector=True)
        else:
            tifffile.imwrite(tmp, np.ascontiguousarray(probs), photometric="minisblack", metadata={"axes": "CYX"})
    return out_path
