"""nnU-Net v2 raw datasets (``DatasetXXX_Name``): read by discover_pairs, plan, preprocess, train,
infer (outputs ``CASE.nii.gz``) and evaluate; regions refused in one line; several channel files per
case grouped (the multi-channel run end to end: tests/engine/test_nnunet_multichannel.py)."""

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
from medseg_dfl.io.nnunet import is_nnunet_raw, nnunet_case_id, read_nnunet_dataset
from medseg_dfl.io.pairing import discover_pairs, split_pairs

HIPPOCAMPUS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "Task04_Hippocampus"
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])
runner = CliRunner()


def _volume(seed: int, shape=(24, 24, 16)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = np.array(shape, dtype=np.float32)[:, None, None, None] / 2 + rng.integers(-2, 3, size=(3, 1, 1, 1))
    distance = np.sqrt(((grid - centre) ** 2).sum(axis=0))
    label = np.zeros(shape, np.uint8)
    label[distance < 7] = 1
    label[distance < 3.5] = 2
    image = (label * 40 + rng.normal(100, 5, shape)).astype(np.float32)
    return image, label


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, AFFINE), path)


def _dataset_json(root: Path, **changes) -> None:
    data = {"channel_names": {"0": "T2"}, "labels": {"background": 0, "outer": 1, "inner": 2},
            "numTraining": 4, "file_ending": ".nii.gz"}  # fmt: skip
    data.update(changes)
    (root / "dataset.json").write_text(json.dumps(data))


def make_nnunet(root: Path, n_train: int = 4, n_test: int = 2) -> Path:
    for i in range(n_train + n_test):
        image, label = _volume(i)
        case = f"vol_{i:03d}"
        if i < n_train:
            _save(image, root / "imagesTr" / f"{case}_0000.nii.gz")
            _save(label, root / "labelsTr" / f"{case}.nii.gz")
        else:
            _save(image, root / "imagesTs" / f"{case}_0000.nii.gz")
            _save(label, root / "labelsTs" / f"{case}.nii.gz")  # not nnU-Net's; the truth for the test cases
    _dataset_json(root, numTraining=n_train)
    return root


@pytest.fixture(scope="module")
def nnunet(tmp_path_factory) -> Path:
    return make_nnunet(tmp_path_factory.mktemp("nn") / "Dataset001_Spheres")


def test_read_nnunet_dataset(nnunet):
    assert is_nnunet_raw(nnunet)
    data = read_nnunet_dataset(nnunet)
    assert data.class_names == ["background", "outer", "inner"] and data.channel_names == ["T2"]
    assert data.file_ending == ".nii.gz"
    assert [c for c, _, _ in data.training] == ["vol_000", "vol_001", "vol_002", "vol_003"]
    assert [c for c, _ in data.test] == ["vol_004", "vol_005"]
    assert nnunet_case_id("a_b_0000.nii.gz", ".nii.gz") == "a_b"
    assert nnunet_case_id("a_b.nii.gz", ".nii.gz") is None


def test_discover_pairs_gives_case_ids_without_channel(nnunet):
    pairs = discover_pairs(nnunet)
    assert [p.case_id for p in pairs] == ["vol_000", "vol_001", "vol_002", "vol_003"]
    assert pairs[0].image.name == "vol_000_0000.nii.gz" and pairs[0].label.name == "vol_000.nii.gz"
    train, val = split_pairs(nnunet, pairs, 0.25, seed=0)
    assert len(train) == 3 and len(val) == 1


def test_labels_are_ordered_by_value(tmp_path):
    root = make_nnunet(tmp_path / "Dataset002_X", n_train=1, n_test=0)
    _dataset_json(root, labels={"inner": 2, "background": 0, "outer": 1})
    assert read_nnunet_dataset(root).class_names == ["background", "outer", "inner"]
    _dataset_json(root, labels={"background": 0, "outer": 2})
    with pytest.raises(ValueError, match=r"values must be 0\.\.1"):
        read_nnunet_dataset(root)


def test_regions_are_refused_in_one_line(tmp_path):
    root = make_nnunet(tmp_path / "Dataset003_Regions", n_train=1, n_test=0)
    _dataset_json(root, labels={"background": 0, "whole": [1, 2], "inner": 2}, regions_class_order=[1, 2])
    with pytest.raises(ValueError, match="regions") as err:
        discover_pairs(root)
    assert "\n" not in str(err.value) and "whole" in str(err.value) and "not supported" in str(err.value)
    result = runner.invoke(app, ["plan", str(root), "-o", str(tmp_path / "p.yaml")])
    assert result.exit_code != 0 and "regions (whole) are not supported" in result.output


def test_channel_files_are_grouped_per_case(tmp_path):
    root = make_nnunet(tmp_path / "Dataset004_Two", n_train=2, n_test=1)
    for folder in ("imagesTr", "imagesTs"):
        for first in sorted((root / folder).glob("*_0000.nii.gz")):
            shutil.copy(first, first.with_name(first.name.replace("_0000", "_0001")))
    _dataset_json(root, channel_names={"0": "T2", "1": "ADC"})
    data = read_nnunet_dataset(root)
    assert data.channel_names == ["T2", "ADC"]
    assert [(c, [f.name for f in files]) for c, files, _ in data.training] == [
        ("vol_000", ["vol_000_0000.nii.gz", "vol_000_0001.nii.gz"]),
        ("vol_001", ["vol_001_0000.nii.gz", "vol_001_0001.nii.gz"]),
    ]
    assert [(c, [f.name for f in files]) for c, files in data.test] == [
        ("vol_002", ["vol_002_0000.nii.gz", "vol_002_0001.nii.gz"])
    ]
    pair = discover_pairs(root)[1]
    assert (pair.case_id, pair.image.name, pair.label.name) == ("vol_001", "vol_001_0000.nii.gz", "vol_001.nii.gz")
    assert pair.image_source == [str(root / "imagesTr" / f"vol_001_{i:04d}.nii.gz") for i in (0, 1)]
    (root / "imagesTr" / "vol_001_0001.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"cases without exactly the channels 0000\.\.0001: vol_001 \(0000\)"):
        discover_pairs(root)


def test_unpaired_and_misnamed_files_are_named(tmp_path):
    root = make_nnunet(tmp_path / "Dataset005_Odd", n_train=2, n_test=0)
    (root / "labelsTr" / "vol_001.nii.gz").unlink()
    with pytest.raises(ValueError, match="images without a label in labelsTr/: vol_001_0000.nii.gz"):
        discover_pairs(root)
    shutil.copy(root / "imagesTr" / "vol_000_0000.nii.gz", root / "imagesTr" / "vol_009.nii.gz")
    with pytest.raises(ValueError, match="not named CASE_XXXX.nii.gz.*vol_009.nii.gz"):
        discover_pairs(root)


def test_plan_train_infer_evaluate_end_to_end(nnunet, tmp_path):
    config = tmp_path / "plan.yaml"
    tiny = ["--set", "train.epochs=1", "--set", "train.batch_size=2", "--set", "transforms.patch_size=[16,16,16]",
            "--set", "network.name=unet", "--set", "network.kwargs={channels: [4, 8], strides: [2], num_res_units: 1}",
            "--set", "data.cache=none", "--set", "transforms.num_samples=1"]  # fmt: skip
    planned = runner.invoke(app, ["plan", str(nnunet), "-o", str(config), "--device", "cpu", *tiny])
    assert planned.exit_code == 0, planned.output
    cfg = yaml.safe_load(config.read_text())
    assert cfg["data"]["class_names"] == ["background", "outer", "inner"]
    assert cfg["data"]["in_channels"] == 1

    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(config), "--output", str(run), "--device", "cpu", "--no-progress"])
    assert trained.exit_code == 0, trained.output

    preds = tmp_path / "preds"
    inferred = runner.invoke(app, ["infer", str(run), str(nnunet / "imagesTs"), str(preds), "--device", "cpu"])
    assert inferred.exit_code == 0, inferred.output
    assert sorted(p.name for p in preds.glob("*.nii.gz")) == ["vol_004.nii.gz", "vol_005.nii.gz"]
    # the dataset folder itself means its imagesTs/
    again = runner.invoke(app, ["infer", str(run), str(nnunet), str(tmp_path / "preds2"), "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (tmp_path / "preds2").glob("*.nii.gz")) == ["vol_004.nii.gz", "vol_005.nii.gz"]

    report = tmp_path / "report.csv"
    evaluated = runner.invoke(app, ["evaluate", str(preds), str(nnunet / "labelsTs"), "-o", str(report), "--no-report",
                                    "--classes", "background,outer,inner"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert "outer" in evaluated.output and "inner" in evaluated.output


def test_evaluate_takes_class_names_and_labels_from_the_dataset(nnunet, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    for label in sorted((nnunet / "labelsTr").iterdir()):
        shutil.copy(label, preds / label.name)  # nnU-Net's prediction names: CASE.nii.gz
    from medseg_dfl.engine.evaluation import evaluate_folders

    report = evaluate_folders(preds, nnunet)
    assert report.class_names == ["background", "outer", "inner"]
    assert [c.case_id for c in report.cases] == ["vol_000", "vol_001", "vol_002", "vol_003"]


def _hippocampus_as_nnunet(out: Path, n: int = 6) -> Path:
    meta = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    entries = [e for e in meta["training"] if (HIPPOCAMPUS / e["image"]).is_file()][:n]
    for entry in entries:
        case = Path(entry["image"]).name.removesuffix(".nii.gz")
        (out / "imagesTr").mkdir(parents=True, exist_ok=True)
        (out / "labelsTr").mkdir(parents=True, exist_ok=True)
        shutil.copy(HIPPOCAMPUS / entry["image"], out / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copy(HIPPOCAMPUS / entry["label"], out / "labelsTr" / f"{case}.nii.gz")
    labels = {name: int(value) for value, name in meta["labels"].items()}
    (out / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": labels, "numTraining": len(entries), "file_ending": ".nii.gz",
    }))  # fmt: skip
    return out


@pytest.mark.skipif(not (HIPPOCAMPUS / "dataset.json").is_file(), reason="no hippocampus copy in ../shared/datasets")
def test_hippocampus_in_nnunet_layout(tmp_path):
    root = _hippocampus_as_nnunet(tmp_path / "Dataset004_Hippocampus")
    pairs = discover_pairs(root)
    assert len(pairs) == 6 and all(p.case_id.startswith("hippocampus_") and "_0000" not in p.case_id for p in pairs)
    assert read_nnunet_dataset(root).class_names == ["background", "Anterior", "Posterior"]
    from medseg_dfl.planning.survey import survey_dataset

    survey = survey_dataset(root)
    assert survey.json_labels == ["background", "Anterior", "Posterior"]


def test_preprocess_takes_class_names_from_labels(nnunet, tmp_path):
    out = tmp_path / "pre"
    result = runner.invoke(app, ["preprocess", str(nnunet), str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "dataset.json").read_text())
    assert written["labels"] == {"0": "background", "1": "outer", "2": "inner"}
    assert len(written["training"]) + len(written.get("validation") or []) == 4


def test_evaluate_cli_on_the_dataset_folder_draws_its_images(nnunet, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    for label in sorted((nnunet / "labelsTr").iterdir()):
        shutil.copy(label, preds / label.name)
    result = runner.invoke(app, ["evaluate", str(preds), str(nnunet), "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    assert "outer" in result.output and (tmp_path / "r.html").is_file()
    from medseg_dfl.engine.evaluation_report import _image_for

    assert _image_for("vol_001", nnunet / "imagesTr") == nnunet / "imagesTr" / "vol_001_0000.nii.gz"
