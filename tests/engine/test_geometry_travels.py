"""Geometry travels from reader to writer: a DICOM series is read once per case, although its mask,
probabilities and overlay all need its geometry (and the overlay its pixels)."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg_dfl.engine.inference import InferenceOptions, Predictor, predict_folder
from medseg_dfl.engine.rescale import GEOMETRY_KEY
from medseg_dfl.io.geometry import ImageGeometry, read_geometry
from tests.engine.test_inference import make_checkpoint, volume_config

SPACING, SLICE = (0.5, 0.75), 2.5


def write_series(folder: Path, volume_zyx: np.ndarray, uid: str) -> Path:
    """One DICOM file per z slice, with position, orientation and spacing tags. GDCM's writer sets
    the process locale to "C" (Python's default text encoding then becomes ASCII): restored after."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _write_series(folder, volume_zyx, uid)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_series(folder: Path, volume_zyx: np.ndarray, uid: str) -> Path:
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(volume_zyx.shape[0]):
        slice_ = sitk.GetImageFromArray(volume_zyx[z])
        slice_.SetSpacing(SPACING)
        for tag, value in [("0008|0060", "CT"), ("0020|000e", uid), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                           ("0020|0032", f"10\\-20\\{SLICE * z}"), ("0020|0013", str(z))]:  # fmt: skip
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{z:03d}.dcm"))
        writer.Execute(slice_)
    return folder


@pytest.fixture
def series_reads(monkeypatch) -> list[str]:
    """Every DICOM series read (SimpleITK's ImageSeriesReader.Execute), by its first file."""
    reads: list[str] = []
    execute = sitk.ImageSeriesReader.Execute

    def counting(self, *args, **kwargs):
        reads.append(Path(self.GetFileNames()[0]).parent.name)
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", counting)
    return reads


def test_a_folder_of_dicom_series_is_read_once_per_case(tmp_path, series_reads):
    rng = np.random.default_rng(0)
    cases = {}
    for index, name in enumerate(("case_a", "case_b")):
        volume = rng.integers(-200, 300, size=(6, 12, 10)).astype(np.int16)  # z, y, x
        cases[name] = write_series(tmp_path / "in" / name, volume, f"1.2.826.0.1.3680043.2.1125.{index + 1}")
    checkpoint = make_checkpoint(tmp_path / "m.pt", volume_config())
    options = InferenceOptions(device="cpu", probabilities=True, overlay=True)
    summary = predict_folder(checkpoint, tmp_path / "in", tmp_path / "out", options)
    assert sorted(summary.written) == sorted(cases.values()) and not summary.failed
    assert sorted(series_reads) == ["case_a", "case_b"]  # once each: mask, probabilities and overlay read nothing
    for name in cases:
        mask = sitk.ReadImage(str(tmp_path / "out" / f"{name}.nii.gz"))
        assert mask.GetSize() == (10, 12, 6)
        np.testing.assert_allclose(mask.GetSpacing(), (*SPACING, SLICE), atol=1e-4)
        np.testing.assert_allclose(mask.GetOrigin(), (10, -20, 0), atol=1e-4)
        probs = sitk.ReadImage(str(tmp_path / "out" / f"{name}_probabilities.nii.gz"))
        assert probs.GetNumberOfComponentsPerPixel() == 3 and probs.GetSize() == (10, 12, 6)
        assert (tmp_path / "out" / f"{name}_overlay.png").stat().st_size > 1000


def test_geometry_from_the_loaded_image_is_the_one_read_from_the_file(tmp_path, series_reads):
    series = write_series(tmp_path / "s", np.zeros((4, 6, 5), np.int16), "1.2.826.0.1.3680043.2.1125.9")
    predictor = Predictor.from_checkpoint(make_checkpoint(tmp_path / "m.pt", volume_config()), "cpu")
    carried = predictor.preprocess(series)[GEOMETRY_KEY]
    assert isinstance(carried, ImageGeometry) and series_reads == ["s"]
    read = read_geometry(series)
    assert (carried.family, carried.shape, carried.source) == (read.family, read.shape, read.source) == ("dicom", (5, 6, 4), series)
    np.testing.assert_allclose(carried.spacing, read.spacing)
    np.testing.assert_allclose(carried.origin, read.origin)
    np.testing.assert_allclose(carried.direction, read.direction)
    np.testing.assert_allclose(carried.affine, read.affine, atol=1e-6)
    np.testing.assert_allclose(carried.pixel_spacing, (*SPACING, SLICE), atol=1e-6)
