"""K-fold splits: deterministic, disjoint, covering; config keys; split.json content; the one training
split of a config (fold-aware, dataset.json lists, skipped files); --fold/--folds as typed values."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from medseg_dfl.config import config_from_dict
from medseg_dfl.data.folds import Split, fold_case_ids, fold_split, training_split, with_fold, write_split
from medseg_dfl.data.synthetic import generate_sample_data
from medseg_dfl.io.dataset_json import read_dataset_json
from medseg_dfl.io.pairing import CasePair

IDS = [f"case_{i:03d}" for i in range(11)]


def test_folds_are_disjoint_cover_every_case_and_are_balanced():
    vals = [fold_case_ids(IDS, k, 3, seed=0)[1] for k in range(3)]
    assert sorted(sum(vals, [])) == IDS
    assert sorted(len(v) for v in vals) == [3, 4, 4]
    train, val = fold_case_ids(IDS, 1, 3, seed=0)
    assert not set(train) & set(val) and len(train) + len(val) == 11


def test_split_depends_only_on_seed_and_ids():
    assert fold_case_ids(IDS, 0, 5, seed=7) == fold_case_ids(list(reversed(IDS)), 0, 5, seed=7)
    assert fold_case_ids(IDS, 0, 5, seed=7) != fold_case_ids(IDS, 0, 5, seed=8)
    # a fixed expectation: changing the rule would silently change every recorded split
    assert fold_case_ids(IDS, 0, 5, seed=0)[1] == sorted(fold_case_ids(IDS, 0, 5, seed=0)[1])


def test_fold_split_keeps_pairs_and_order():
    pairs = [CasePair(i, f"/x/{i}.nii.gz", f"/y/{i}.nii.gz") for i in IDS]
    train, val = fold_split(pairs, 2, 4, seed=1)
    assert [p.case_id for p in val] == fold_case_ids(IDS, 2, 4, seed=1)[1]
    assert len(train) + len(val) == len(pairs)


@pytest.mark.parametrize(("fold", "folds"), [(3, 3), (-1, 3), (0, 1)])
def test_bad_fold_is_a_value_error(fold, folds):
    with pytest.raises(ValueError, match="fold"):
        fold_case_ids(IDS, fold, folds, seed=0)
    with pytest.raises(ValueError, match="data.fold"):
        config_from_dict({"data": {"fold": fold, "folds": folds}})


def test_too_few_cases_or_duplicates_are_errors():
    with pytest.raises(ValueError, match="at least 5 cases"):
        fold_case_ids(IDS[:3], 0, 5, seed=0)
    with pytest.raises(ValueError, match="unique"):
        fold_case_ids(["a", "a", "b"], 0, 2, seed=0)


def test_split_json_records_fold_and_case_ids(tmp_path):
    pair = {i: CasePair(i, Path(f"/x/{i}.png"), Path(f"/y/{i}.png")) for i in "abc"}
    record = Split((pair["a"], pair["b"]), (pair["c"],), fold=1, folds=3, seed=4).record()
    path = write_split(tmp_path, record)
    assert json.loads(path.read_text()) == {
        "fold": 1, "folds": 3, "all_cases": False, "seed": 4, "train": ["a", "b"], "validation": ["c"],
    }  # fmt: skip


def _pairs(root: Path) -> list[CasePair]:
    return [CasePair(i, root / f"{i}.png", root / f"{i}_masks.png") for i in IDS]


def test_training_split_is_the_fold_when_one_is_set(tmp_path):
    cfg = config_from_dict({"data": {"root": str(tmp_path), "fold": 1, "folds": 3}, "experiment": {"seed": 2}})
    split = training_split(cfg, pairs=_pairs(tmp_path))
    train, val = fold_case_ids(IDS, 1, 3, seed=2)
    assert [p.case_id for p in split.train_pairs] == train and [p.case_id for p in split.val_pairs] == val
    assert (split.fold, split.folds, split.seed) == (1, 3, 2)
    plain = training_split(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, fold=None)),
                           pairs=_pairs(tmp_path))  # fmt: skip
    assert (plain.fold, plain.folds, len(plain.val_pairs)) == (None, None, 2)  # round(11 * 0.2)
    assert plain.record()["folds"] is None


def test_training_split_leaves_out_skipped_images_and_needs_labels(tmp_path):
    cfg = config_from_dict({"data": {"root": str(tmp_path), "fold": 0, "folds": 2}})
    skip = {str((tmp_path / "case_003.png").resolve())}
    split = training_split(cfg, skip, _pairs(tmp_path))
    kept = [p.case_id for p in (*split.train_pairs, *split.val_pairs)]
    assert sorted(kept) == [i for i in IDS if i != "case_003"]
    unlabelled = [*_pairs(tmp_path)[:3], CasePair("x", tmp_path / "x.png", None)]
    with pytest.raises(ValueError, match="1 image\\(s\\) have no label"):
        training_split(cfg, pairs=unlabelled)


def test_training_split_honours_the_dataset_json_list_except_in_fold_mode(tmp_path):
    generate_sample_data(tmp_path, "blood-smear", count=5, size=32, seed=0)
    listed = sorted(Path(e["image"]).stem for e in read_dataset_json(tmp_path)["validation"])
    cfg = config_from_dict({"data": {"root": str(tmp_path), "val_fraction": 0.6}})
    assert sorted(p.case_id for p in training_split(cfg).val_pairs) == listed
    folded = training_split(with_fold(cfg, 0, 5))
    assert len(folded.val_pairs) == 1 and len(folded.train_pairs) == 4  # the listed cases joined the pool


def test_with_fold_sets_typed_values_and_checks_them():
    cfg = config_from_dict({})
    folded = with_fold(cfg, 2, 4)
    assert (folded.data.fold, folded.data.folds) == (2, 4)
    assert cfg.data.fold is None  # a new config; the given one is unchanged
    assert with_fold(cfg, None, 3).data == dataclasses.replace(cfg.data, folds=3)
    assert with_fold(cfg) == cfg
    with pytest.raises(ValueError, match="fold must be in 0..2 for 3 folds, got 3"):
        with_fold(cfg, 3, 3)
