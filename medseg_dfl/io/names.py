"""The one owner of file naming: a file's stem, and the suffixes ``infer`` gives its outputs.

A *stem* is a file's name without its full image suffix (``a.b.nii.gz`` -> ``a.b``; ``.nii.gz``
counts as one suffix), or a DICOM series folder's own name. Pairing (case ids), the writers
(output names), inference (output plans) and evaluation (matching predictions to truths) all use
:func:`file_stem`, so a case has the same name everywhere.
"""

from __future__ import annotations

from pathlib import Path

from medseg_dfl.io.readers import IMAGE_SUFFIXES, file_suffix

__all__ = ["NON_MASK_SUFFIXES", "OVERLAY_SUFFIX", "PROBABILITIES_SUFFIX", "file_stem"]

# What `medseg-dfl infer` appends to the stem of outputs that are not label maps.
PROBABILITIES_SUFFIX = "_probabilities"
OVERLAY_SUFFIX = "_overlay"
# Stems ending so are not masks (evaluate skips them); "_prob" is what earlier versions wrote.
NON_MASK_SUFFIXES = (OVERLAY_SUFFIX, PROBABILITIES_SUFFIX, "_prob")


def file_stem(path: str | Path) -> str:
    """The name without its full image suffix (``a.b.nii.gz`` -> ``a.b``); a DICOM folder's own name.

    A name whose last suffix is not an image suffix is returned whole (``notes.txt`` stays as it is).
    """
    path = Path(path)
    suffix = file_suffix(path) if path.suffix else ""
    return path.name[: len(path.name) - len(suffix)] if suffix in IMAGE_SUFFIXES else path.name
