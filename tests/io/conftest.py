"""Small synthetic files for the I/O tests (written to tmp_path; no shared sample data)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
from PIL import Image

# An oblique, anisotropic affine: a rotation about z with spacing (0.8, 1.2, 2.5) and an offset.
_C, _S = np.cos(0.3), np.sin(0.3)
OBLIQUE_AFFINE = np.array(
    [
        [_C * 0.8, -_S * 1.2, 0.0, -12.5],
        [_S * 0.8, _C * 1.2, 0.0, 40.0],
        [0.0, 0.0, 2.5, 7.25],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
ITK_SPACING = (0.7, 1.3, 2.5)
ITK_ORIGIN = (10.0, -20.0, 5.5)
ITK_DIRECTION = tuple(np.array(sitk.VersorRigid3DTransform((0.0, 0.1, 0.2, 0.97)).GetMatrix()).tolist())


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
