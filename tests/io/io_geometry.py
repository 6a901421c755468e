"""Geometry constants of the io tests (a plain module: test folders each have a conftest.py, so a
bare ``from conftest import`` would pick whichever one was imported first)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

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

