"""What a reader learned about an image's grid, carried to the writers (as nnU-Net's ``properties``).

:class:`ImageGeometry` is made once, from the image ``load_image`` / ``LoadImaged`` just loaded
(:meth:`ImageGeometry.from_image`: its meta data), and travels with the prediction to
``write_mask_like`` / ``write_probabilities_like`` and the overlay, so no writer opens the source
again (a DICOM series is read once per case). :func:`read_geometry` reads it from a path (headers
only where the format allows) for callers that hold no loaded image.

Per family (``image_family``): ``"nifti"`` the file's header (affine, sform/qform and their codes,
pixdim, units; MONAI keeps its fields in the meta data); ``"itk"`` (MHA/MHD/NRRD) and ``"dicom"``
(a series folder) ITK spacing, origin and direction (LPS, as ITK writes them); ``"2d"``
(PNG/JPEG/BMP/TIFF) the height and width. ``shape`` is the spatial shape in ``load_image`` order
(2D: rows first), ``affine`` the RAS affine MONAI gives (identity for 2D images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import tifffile
from PIL import Image

from medseg_dfl.io.readers import (
    ITK_DIRECTION_KEY,
    ITK_ORIGIN_KEY,
    ITK_SUFFIXES,
    NIFTI_SUFFIXES,
    TIFF_SUFFIXES,
    SimpleITKReader,
    file_suffix,
    is_dicom_dir,
    reader_for,
)

__all__ = ["ImageGeometry", "image_family", "read_geometry"]

def image_family(path: str | Path) -> str:
    """``"nifti"``, ``"itk"``, ``"dicom"`` (a series folder) or ``"2d"``; ``DataError`` for an unsupported file."""
    path = Path(path)
    if is_dicom_dir(path):
        return "dicom"
    reader_for(path)  # DataError for an unsupported file
    suffix = file_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    return "itk" if suffix in ITK_SUFFIXES else "2d"


@dataclass(frozen=True, eq=False)
class ImageGeometry:
    """The grid of one source image (see module docstring); immutable, made by the reading side."""

    source: Path
    family: str
    shape: tuple[int, ...]  # spatial, in load_image order (2D images: (H, W))
    affine: np.ndarray  # (dims + 1)^2 RAS affine as MONAI gives it (2D images: identity)
    nifti_header: nib.Nifti1Header | None = None  # "nifti": the file's header
    spacing: tuple[float, ...] | None = None  # "itk"/"dicom": ITK spacing, origin, direction
    origin: tuple[float, ...] | None = None
    direction: tuple[float, ...] | None = None

    @classmethod
    def from_image(cls, image: Any, source: str | Path | None = None) -> ImageGeometry:
        """The geometry of a just-loaded ``MetaTensor`` (C, spatial...) from our readers; ``source``
        defaults to its ``filename_or_obj``. Take it before any spatial transform."""
        meta = dict(getattr(image, "meta", {}))
        source = Path(source if source is not None else meta["filename_or_obj"])
        family = image_family(source)
        shape = tuple(int(n) for n in image.shape[1:])
        affine = np.asarray(meta.get("original_affine", np.eye(len(shape) + 1)), dtype=np.float64)
        if family == "nifti":
            return cls(source, family, shape, affine, nifti_header=_nifti_header(meta))
        if family in ("itk", "dicom"):
            return cls(source, family, shape, affine, spacing=_floats(meta["spacing"]),
                       origin=_floats(meta[ITK_ORIGIN_KEY]), direction=_floats(meta[ITK_DIRECTION_KEY]))  # fmt: skip
        return cls(source, family, shape, affine)

    @property
    def pixel_spacing(self) -> np.ndarray:
        """Spacing along each array axis (the affine's column lengths; 2D images: ones)."""
        dims = len(self.shape)
        return np.linalg.norm(self.affine[:dims, :dims], axis=0)

    def check_shape(self, array: np.ndarray, what: str) -> None:
        """``ValueError`` unless ``array`` has this grid's spatial shape."""
        if tuple(array.shape) != self.shape:
            raise ValueError(
                f"{self.source}: {what} shape {tuple(array.shape)} does not match the reference's spatial shape "
                f"{self.shape} (expected the axis order load_image gives)"
            )


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values).ravel())


def _nifti_header(meta: dict[str, Any]) -> nib.Nifti1Header:
    """The NIfTI header from the fields MONAI's ``NibabelReader`` copied into the meta data."""
    header = nib.Nifti1Header()
    for key in header.keys():
        if key in meta:
            try:
                header[key] = np.asarray(meta[key])
            except (ValueError, TypeError):  # a field MONAI changed the type of: keep the default
                continue
    return header


def read_geometry(path: str | Path) -> ImageGeometry:
    """The geometry of the image at ``path``, reading headers only (a DICOM series is read whole:
    its geometry comes from all its slices). For callers without a loaded image."""
    path = Path(path)
    family = image_family(path)
    if family == "nifti":
        image = nib.load(path)  # the header only: the data are read lazily, and not here
        shape = tuple(int(n) for n in image.shape[:3])
        return ImageGeometry(path, family, shape, np.asarray(image.affine), nifti_header=image.header.copy())
    if family in ("itk", "dicom"):
        if family == "itk":
            info: Any = sitk.ImageFileReader()
            info.SetFileName(str(path))
            info.ReadImageInformation()
        else:
            info = SimpleITKReader()._read_one(path)
        return ImageGeometry(path, family, tuple(int(n) for n in info.GetSize()),
                             SimpleITKReader()._affine(info), spacing=tuple(info.GetSpacing()),
                             origin=tuple(info.GetOrigin()), direction=tuple(info.GetDirection()))  # fmt: skip
    if file_suffix(path) in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = (series.shape[series.axes.index("Y")], series.shape[series.axes.index("X")])
    else:
        with Image.open(path) as image:
            shape = (image.height, image.width)
    return ImageGeometry(path, family, shape, np.eye(3))
