"""Small synthetic files for the I/O tests (written to tmp_path; no shared sample data)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from io_geometry import ITK_DIRECTION, ITK_ORIGIN, ITK_SPACING, OBLIQUE_AFFINE  # noqa: F401  (re-exported for fixtures)
from PIL import Image


class Files:
    """Writes test images under ``root``; arrays are given in the file library's own axis order."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def nifti(self, name: str, data: np.ndarray, affine: np.ndarray = OBLIQUE_AFFINE, *,
              endianness: str = "<", codes: tuple[int, int] = (1, 2)) -> Path:
        image = nib.Nifti1Image(data, affine, nib.Nifti1Header(endianness=endianness))
        image.set_qform(affine, code=codes[0])
        image.set_sform(affine, code=codes[1])
        path = self.path(name)
        nib.save(image, path)
        return path

    def itk(self, name: str, data_zyx: np.ndarray, *, vector: bool = False) -> Path:
        image = sitk.GetImageFromArray(data_zyx, isVector=vector)
        dim = image.GetDimension()
        image.SetSpacing(ITK_SPACING[:dim])
        image.SetOrigin(ITK_ORIGIN[:dim])
        if dim == 3:
            image.SetDirection(ITK_DIRECTION)
        path = self.path(name)
        sitk.WriteImage(image, str(path))
        return path

    def pil(self, name: str, data_hw: np.ndarray, **save_kwargs) -> Path:
        path = self.path(name)
        Image.fromarray(data_hw).save(path, **save_kwargs)
        return path

    def tiff(self, name: str, data: np.ndarray, **kwargs) -> Path:
        path = self.path(name)
        tifffile.imwrite(path, data, **kwargs)
        return path

    def text(self, name: str, content: bytes = b"not an image\n") -> Path:
        path = self.path(name)
        path.write_bytes(content)
        return path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
