"""Inference engine: geometry round trips, the inverse of the transforms, skips, failures, atomicity."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import torch
from PIL import Image

from medseg_dfl.config import config_from_dict, config_to_dict
from medseg_dfl.engine.checkpoint import PAYLOAD_KEYS, save_checkpoint
from medseg_dfl.engine.inference import InferenceOptions, Predictor, predict_folder
from medseg_dfl.engine.prediction_io import failure_reason, plan_outputs, shard_for_rank

TINY_UNET = {"name": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
_C, _S = np.cos(0.3), np.sin(0.3)
# Oblique (rotated about z), flipped x, anisotropic spacing (0.8, 1.2, 2.5), offset origin.
OBLIQUE_AFFINE = np.array(
    [[-_C * 0.8, -_S * 1.2, 0.0, -12.5], [-_S * 0.8, _C * 1.2, 0.0, 40.0], [0.0, 0.0, 2.5, 7.25], [0, 0, 0, 1.0]]
)


def make_checkpoint(path: Path, config: dict, network: torch.nn.Module | None = None) -> Path:
    """A self-contained checkpoint of a randomly initialised (or given) network: no training needed."""
    from medseg_dfl.networks import build_network

    cfg = config_from_dict(config)
    torch.manual_seed(0)
    net = network if network is not None else build_network(cfg)
    payload = dict.fromkeys(PAYLOAD_KEYS)
    payload.update(
        format_version=1, model_state=net.state_dict(), config=config_to_dict(cfg), class_names=cfg.data.class_names
    )
    return save_checkpoint(path, payload)


def volume_config(**transforms) -> dict:
    return {
        "data": {"spatial_dims": 3, "modality": "ct", "in_channels": 1, "class_names": ["background", "organ", "lesion"]},
        "transforms": {"patch_size": [16, 16, 16], **transforms},
        "network": TINY_UNET,
        "inference": {"sw_batch_size": 2},
    }


def smear_config(classes: int = 4, in_channels: int = 3) -> dict:
    return {
        "data": {"spatial_dims": 2, "in_channels": in_channels, "class_names": [f"c{i}" for i in range(classes)]},
        "transforms": {"patch_size": [16, 16]},
        "network": TINY_UNET,
    }


def ct_volume(shape=(20, 18, 10), seed=0) -> np.ndarray:
    """HU-like int16 volume: air (-1000) border, tissue, and a bright off-centre blob (asymmetric)."""
    rng = np.random.default_rng(seed)
    vol = np.full(shape, -1000, dtype=np.int16)
    vol[2:-2, 2:-2, 1:-1] = rng.integers(-200, -50, size=(shape[0] - 4, shape[1] - 4, shape[2] - 2))
    vol[3:9, 4:8, 2:5] = 300
    return vol


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = OBLIQUE_AFFINE) -> Path:
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=2)  # aligned
    image.set_qform(affine, code=1)  # scanner
    nib.save(image, path)
    return path


def write_mha(path: Path, data_xyz: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(np.ascontiguousarray(data_xyz.T))
    image.SetSpacing((0.7, 1.3, 2.5))
    image.SetOrigin((10.0, -20.0, 5.5))
    image.SetDirection(tuple(np.array(sitk.VersorRigid3DTransform((0.0, 0.1, 0.2, 0.97)).GetMatrix()).tolist()))
    sitk.WriteImage(image, str(path))
    return path


class Threshold(torch.nn.Module):
    """A 1x1 convolution: class 1 where the (normalised) first channel exceeds ``level``, else 0."""

    def __init__(self, dims: int, channels: int, level: float) -> None:
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.conv = conv(channels, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0], self.conv.weight[1, 0] = -10.0, 10.0
            self.conv.bias.copy_(torch.tensor([10.0 * level, -10.0 * level]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def volume_ckpt(tmp_path_factory) -> Path:
    # Resampling to 1.5 mm isotropic exercises Spacingd and its inverse.
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "vol.pt", volume_config(target_spacing=[1.5, 1.5, 1.5]))


def test_nifti_oblique_round_trip_keeps_affine_header_and_shape(tmp_path, volume_ckpt):
    (tmp_path / "in").mkdir()
    src = write_nifti(tmp_path / "in" / "case01.nii.gz", ct_volume())
    summary = predict_folder(volume_ckpt, tmp_path / "in", tmp_path / "out", InferenceOptions(probabilities=True))
    assert summary.written == [src] and not summary.failed
    ref, out = nib.load(src), nib.load(tmp_path / "out" / "case01.nii.gz")
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.affine, ref.affine, atol=1e-6)
    assert int(out.header["sform_code"]) == 2 and int(out.header["qform_code"]) == 1
    np.testing.assert_allclose(out.header.get_zooms(), ref.header.get_zooms(), atol=1e-6)
    probs = nib.load(tmp_path / "out" / "case01_probabilities.nii.gz").get_fdata()
    assert probs.shape == (*ref.shape, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(out.dataobj), probs.argmax(-1))


def test_mha_round_trip_keeps_spacing_origin_direction(tmp_path, volume_ckpt):
    (tmp_path / "in").mkdir()
    src = write_mha(tmp_path / "in" / "case02.mha", ct_volume((18, 20, 10)))
    summary = predict_folder(volume_ckpt, src, tmp_path / "out", InferenceOptions(suffix="_seg"))
    assert not summary.failed
    ref, out = sitk.ReadImage(str(src)), sitk.ReadImage(str(tmp_path / "out" / "case02_seg.mha"))
    assert out.GetSize() == ref.GetSize() == (18, 20, 10)
    np.testing.assert_allclose(out.GetSpacing(), ref.GetSpacing())
    np.testing.assert_allclose(out.GetOrigin(), ref.GetOrigin())
    np.testing.assert_allclose(out.GetDirection(), ref.GetDirection())


def test_inverse_puts_each_voxel_back_where_it_was(tmp_path, monkeypatch):
    """A thresholding 'network' must give exactly image > 0 HU on the original oblique, flipped grid."""
    import medseg_dfl.engine.inference as inference  # patched where it is used

    net = Threshold(3, 1, level=0.5)  # window [-1000, 1000] -> [0, 1]: 0.5 is 0 HU
    monkeypatch.setattr(inference, "build_network", lambda cfg: Threshold(3, 1, 0.0))
    ckpt = make_checkpoint(tmp_path / "t.pt", volume_config(), network=net)
    volume = ct_volume()
    src = write_nifti(tmp_path / "a.nii.gz", volume)
    mask = Predictor.from_checkpoint(ckpt).predict_file(src).mask
    np.testing.assert_array_equal(mask, (volume > 0).astype(np.uint8))


def test_2d_rgb_png_gives_label_png_of_same_height_width_and_orientation(tmp_path, monkeypatch):
    import medseg_dfl.engine.inference as inference  # patched where it is used

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 100, size=(23, 37, 3), dtype=np.uint8)  # (H, W, 3), not square
    rgb[5:12, 20:30, 0] = 250  # bright red block, off-centre
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "slide.png")
    monkeypatch.setattr(inference, "build_network", lambda cfg: Threshold(2, 3, 0.0))
    ckpt = make_checkpoint(tmp_path / "t.pt", smear_config(classes=2), network=Threshold(2, 3, 1.0))
    summary = predict_folder(ckpt, tmp_path / "in", tmp_path / "out", InferenceOptions(overlay=True))
    assert not summary.failed
    out = np.asarray(Image.open(tmp_path / "out" / "slide.png"))
    assert out.shape == (23, 37) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, (rgb[..., 0] == 250).astype(np.uint8))  # z-score > 1 only in the block
    overlay = Image.open(tmp_path / "out" / "slide_overlay.png")
    assert overlay.format == "PNG" and overlay.size[0] > 100


def test_16bit_grey_tiff_with_300_classes_gives_16bit_png(tmp_path):
    grey = np.random.default_rng(2).integers(0, 60000, size=(20, 28), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "g.tif", grey)
    ckpt = make_checkpoint(tmp_path / "t.pt", smear_config(classes=300, in_channels=1))
    summary = predict_folder(ckpt, tmp_path / "g.tif", tmp_path / "out")
    assert not summary.failed
    out = Image.open(tmp_path / "out" / "g.png")
    assert out.size == (28, 20) and out.mode.startswith("I") and np.asarray(out).max() > 255
    result = Predictor.from_checkpoint(ckpt).predict_file(tmp_path / "g.tif")
    np.testing.assert_array_equal(np.asarray(out).astype(np.int64), result.mask.astype(np.int64))  # rows first


def test_corrupt_file_is_reported_and_others_are_written(tmp_path, volume_ckpt):
    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "a.nii.gz", ct_volume())
    (tmp_path / "in" / "b.nii.gz").write_bytes(b"not a nifti file")
    write_nifti(tmp_path / "in" / "c.nii.gz", ct_volume(seed=3))
    summary = predict_folder(volume_ckpt, tmp_path / "in", tmp_path / "out")
    assert [p.name for p in summary.written] == ["a.nii.gz", "c.nii.gz"]
    assert [p.name for p, _ in summary.failed] == ["b.nii.gz"]
    assert "cannot read image" in summary.failed[0][1] and "gzip" in summary.failed[0][1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.nii.gz", "c.nii.gz"]


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, volume_ckpt):
    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "a.nii.gz", ct_volume())
    out = tmp_path / "out" / "a.nii.gz"
    out.parent.mkdir()
    out.write_bytes(b"user's file")
    summary = predict_folder(volume_ckpt, tmp_path / "in", tmp_path / "out")
    assert summary.skipped_existing == [tmp_path / "in" / "a.nii.gz"] and not summary.written
    assert out.read_bytes() == b"user's file"
    # A re-run that asks for an overlay too writes only the missing overlay.
    summary = predict_folder(volume_ckpt, tmp_path / "in", tmp_path / "out", InferenceOptions(overlay=True))
    assert summary.written and out.read_bytes() == b"user's file"
    assert (tmp_path / "out" / "a_overlay.png").is_file()
    summary = predict_folder(volume_ckpt, tmp_path / "in", tmp_path / "out", InferenceOptions(overwrite=True))
    assert nib.load(out).shape == (20, 18, 10)


def test_interrupted_write_leaves_no_partial_or_temporary_file(tmp_path, volume_ckpt, monkeypatch):
    import medseg_dfl.io.writers as writers

    def half_write(image, filename):
        Path(filename).write_bytes(b"\x1f\x8b half a volume")
        raise OSError("disk full")

    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "a.nii.gz", ct_volume())
    monkeypatch.setattr(writers.nib, "save", half_write)  # (the nibabel module itself: inputs first)
    summary = predict_folder(volume_ckpt, tmp_path / "in", tmp_path / "out")
    assert [p.name for p, _ in summary.failed] == ["a.nii.gz"] and "disk full" in summary.failed[0][1]
    assert list((tmp_path / "out").iterdir()) == []  # neither a.nii.gz nor a hidden temporary file


def test_torchrun_ranks_take_disjoint_shares(tmp_path, volume_ckpt, monkeypatch):
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        write_nifti(tmp_path / "in" / f"{name}.nii.gz", ct_volume((16, 16, 8)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    summary = predict_folder(volume_ckpt, tmp_path / "in", tmp_path / "out")
    assert (summary.rank, summary.world_size) == (1, 2)
    assert [p.name for p in summary.written] == ["b.nii.gz"]
    assert shard_for_rank(list("abcde"), 0, 2) == ["a", "c", "e"]


def test_plan_refuses_to_write_over_its_input_or_merge_two_inputs(tmp_path):
    (tmp_path / "x.nii.gz").touch()
    (tmp_path / "x.nii").touch()
    with pytest.raises(ValueError, match="would overwrite the input"):
        plan_outputs([tmp_path / "x.nii.gz"], tmp_path, tmp_path)
    with pytest.raises(ValueError, match="would both be written"):
        plan_outputs([tmp_path / "x.nii", tmp_path / "x.nii.gz"], tmp_path, tmp_path / "out")


def test_failure_reason_prefers_the_data_error_inside_monai_wrappers():
    from medseg_dfl.io.errors import DataError

    try:
        try:
            raise DataError("/data/x.png", "cannot read image (truncated)")
        except DataError as inner:
            raise RuntimeError("applying transform <LoadImaged>") from inner
    except RuntimeError as err:
        assert failure_reason(err) == "cannot read image (truncated)"


def test_half_precision_agrees_with_float32(tmp_path, volume_ckpt):
    src = write_nifti(tmp_path / "a.nii.gz", ct_volume())
    full = Predictor.from_checkpoint(volume_ckpt).predict_file(src, probabilities=True)
    half = Predictor.from_checkpoint(volume_ckpt, half=True).predict_file(src, probabilities=True)
    assert half.mask.shape == full.mask.shape
    np.testing.assert_allclose(half.probabilities, full.probabilities, atol=0.05)


def test_overlay_has_legend_of_foreground_classes_and_centre_slices():
    from medseg_dfl.visualize.overlays import class_colour, overlay_figure

    mask = np.zeros((12, 10, 8), np.uint8)
    mask[2:5, 6:9, 1:4] = 2  # centre of mass (3, 7, 2)
    fig = overlay_figure(np.zeros((1, 12, 10, 8)), mask, ["background", "organ", "lesion"], spacing=(1, 1, 3))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["organ", "lesion"]
    assert [ax.get_title() for ax in fig.axes] == ["sagittal 3", "coronal 7", "axial 2"]
    axial = fig.axes[2].images[1].get_array()  # RGBA mask layer of the axial slice (rows = axis 1)
    np.testing.assert_allclose(axial[7, 3, :3], class_colour(2))
    assert axial[0, 0, 3] == 0.0  # background is transparent
