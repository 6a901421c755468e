"""A two-channel nnU-Net v2 raw dataset (``CASE_0000`` + ``CASE_0001`` per case) end to end: the
channel files of a case are one (2, i, j, k) image in channel order for plan, preprocess, train, infer
(one ``CASE.nii.gz`` per case, with the ``_0000`` file's geometry) and evaluate; channel files of
one case that disagree in shape are refused in one line naming the case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from medseg_dfl.cli.main import app
from medseg_dfl.engine.evaluation import evaluate_folders
from medseg_dfl.io.pairing import discover_pairs
from medseg_dfl.io.readers import load_image
from medseg_dfl.planning.survey import survey_dataset

runner = CliRunner()
SHAPE = (16, 16, 16)
N_TRAIN, N_TEST = 6, 2
TINY = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=1", "--set", "train.batch_size=2",
        "--set", "transforms.patch_size=[16,16,16]", "--set", "network.name=unet",
        "--set", "network.kwargs={channels: [4, 8], strides: [2], num_res_units: 1}",
        "--set", "data.cache=none", "--set", "transforms.num_samples=1"]  # fmt: skip


def _affine(i: int) -> np.ndarray:
    """Each case its own origin, so a prediction's geometry shows which file it came from."""
    affine = np.diag([1.2, 1.3, 2.0, 1.0])
    affine[:3, 3] = [10.0 + i, -5.0 - 2 * i, 3.0 * i]
    return affine


def _second_channel(first: np.ndarray) -> np.ndarray:
    return (300.0 - 0.5 * first).astype(np.float32)  # inverted contrast: both channels carry the shapes


def _case(i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = np.array(SHAPE, np.float32)[:, None, None, None] / 2 + rng.integers(-2, 3, size=(3, 1, 1, 1))
    distance = np.sqrt(((grid - centre) ** 2).sum(axis=0))
    label = np.zeros(SHAPE, np.uint8)
    label[distance < 6] = 1
    label[distance < 3] = 2
    return (label * 40 + rng.normal(100, 5, SHAPE)).astype(np.float32), label


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)


def make_two_channel(root: Path) -> Path:
    for i in range(N_TRAIN + N_TEST):
        image, label = _case(i)
        images, labels = ("imagesTr", "labelsTr") if i < N_TRAIN else ("imagesTs", "labelsTs")  # labelsTs: test truth
        _save(image, _affine(i), root / images / f"mc_{i:03d}_0000.nii.gz")
        _save(_second_channel(image), _affine(i), root / images / f"mc_{i:03d}_0001.nii.gz")
        _save(label, _affine(i), root / labels / f"mc_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "outer": 1, "inner": 2},
        "numTraining": N_TRAIN, "file_ending": ".nii.gz",
    }))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def two_channel(tmp_path_factory) -> Path:
    return make_two_channel(tmp_path_factory.mktemp("mc") / "Dataset010_TwoChannel")


def test_channel_files_load_as_one_image_in_channel_order(two_channel):
    pair = discover_pairs(two_channel)[2]
    assert pair.case_id == "mc_002"
    assert [f.name for f in pair.image_files] == ["mc_002_0000.nii.gz", "mc_002_0001.nii.gz"]
    image = load_image(pair.image_files)
    first = np.asarray(nib.load(pair.image).dataobj, dtype=np.float32)
    assert tuple(image.shape) == (2, *SHAPE)
    np.testing.assert_allclose(image[0].numpy(), first)
    np.testing.assert_allclose(image[1].numpy(), _second_channel(first), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(image.affine), _affine(2))


def test_plan_train_infer_evaluate(two_channel, tmp_path):
    config = tmp_path / "plan.yaml"
    planned = runner.invoke(app, ["plan", str(two_channel), "-o", str(config), "--device", "cpu", *TINY])
    assert planned.exit_code == 0, planned.output
    cfg = yaml.safe_load(config.read_text())
    assert cfg["data"]["in_channels"] == 2
    assert cfg["data"]["class_names"] == ["background", "outer", "inner"]

    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(config), "--output", str(run), "--device", "cpu", "--no-progress"])
    assert trained.exit_code == 0, trained.output

    preds = tmp_path / "preds"
    inferred = runner.invoke(app, ["infer", str(run), str(two_channel), str(preds), "--device", "cpu"])
    assert inferred.exit_code == 0, inferred.output
    assert sorted(p.name for p in preds.iterdir()) == ["mc_006.nii.gz", "mc_007.nii.gz"]
    for i in (6, 7):
        written = nib.load(preds / f"mc_{i:03d}.nii.gz")
        assert written.shape == SHAPE and set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
        np.testing.assert_allclose(written.affine, _affine(i), atol=1e-5)

    report = evaluate_folders(preds, two_channel / "labelsTs", class_names=["background", "outer", "inner"])
    assert [c.case_id for c in report.cases] == ["mc_006", "mc_007"]
    assert report.class_names == ["background", "outer", "inner"]

    odd = tmp_path / "Dataset012_Moved"
    shutil.copytree(two_channel, odd, ignore=shutil.ignore_patterns("imagesTr", "labelsTr"))
    moved = np.asarray(nib.load(odd / "imagesTs" / "mc_007_0001.nii.gz").dataobj)
    _save(moved, _affine(0), odd / "imagesTs" / "mc_007_0001.nii.gz")  # another case's origin
    failed = runner.invoke(app, ["infer", str(run), str(odd), str(tmp_path / "odd"), "--device", "cpu"])
    assert failed.exit_code != 0
    assert sorted(p.name for p in (tmp_path / "odd").glob("*.nii.gz")) == ["mc_006.nii.gz"]
    reason = "mc_007_0000.nii.gz: channel file mc_007_0001.nii.gz with another geometry (affine) than mc_007_0000"
    assert reason in " ".join(failed.output.split())


def test_preprocess_lists_the_channel_files_and_fingerprints_each_channel(two_channel, tmp_path):
    out = tmp_path / "pre"
    result = runner.invoke(app, ["preprocess", str(two_channel), str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "dataset.json").read_text())
    entries = written["training"] + written["validation"]
    assert len(entries) == N_TRAIN
    first = next(e for e in entries if e["label"].endswith("mc_000.nii.gz"))
    assert [Path(f).name for f in first["image"]] == ["mc_000_0000.nii.gz", "mc_000_0001.nii.gz"]
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["in_channels"] == 2
    medians = [p["50.0"] for p in json.loads((out / "fingerprint.json").read_text())["intensity_percentiles"]]
    assert len(medians) == 2 and medians[1] == pytest.approx(300.0 - 0.5 * medians[0], rel=1e-5)
    again = discover_pairs(out)  # the output folder reads back with both channel files per case
    assert all(len(p.image_files) == 2 for p in again)


def test_channel_files_of_other_shapes_are_refused_naming_the_case(tmp_path):
    root = make_two_channel(tmp_path / "Dataset011_Odd")
    smaller = np.zeros((15, 16, 16), np.float32)
    _save(smaller, _affine(3), root / "imagesTr" / "mc_003_0001.nii.gz")
    pair = discover_pairs(root)[3]
    with pytest.raises(ValueError, match=r"mc_003_0001\.nii\.gz: channel file mc_003_0001\.nii\.gz of shape "
                                         r"\(15, 16, 16\), mc_003_0000\.nii\.gz has \(16, 16, 16\)") as err:  # fmt: skip
        load_image(pair.image_files)
    assert "\n" not in str(err.value)
    notes = survey_dataset(root).notes  # plan: planned without the case, saying why
    said = "mc_003_0001.nii.gz: channel file mc_003_0001.nii.gz of shape (15, 16, 16)"
    assert [n for n in notes if said in n] == notes[-1:]
    refused = runner.invoke(app, ["preprocess", str(root), str(tmp_path / "pre"), "--quiet"])
    assert refused.exit_code != 0 and not (tmp_path / "pre" / "dataset.json").exists()
    assert said in " ".join(refused.output.split())
