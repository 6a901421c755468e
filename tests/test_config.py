"""Config validation: every mistake is one clear line naming the key path and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from medseg_dfl.config import apply_overrides, config_from_dict, config_to_dict, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _one_line_error(values: dict) -> str:
    with pytest.raises(ValueError) as info:
        config_from_dict(values)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_key_names_path_and_allowed_keys():
    message = _one_line_error({"train": {"epoch": 3}})
    assert message.startswith("unknown config key train.epoch;")
    assert "allowed keys under train: amp, batch_size, compile, deterministic, device, ema_decay, epochs" in message
    nested = _one_line_error({"transforms": {"augment": {"flipp": True}}})
    assert "transforms.augment.flipp" in nested and "rot90" in nested
    assert "allowed keys: data, experiment" in _one_line_error({"trian": {}})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"train": {"epochs": "3"}}, "train.epochs: expected an integer, got '3'"),
        ({"train": {"amp": "yes"}}, "train.amp: expected true/false, got 'yes'"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected a number, got 'fast'"),
        ({"transforms": {"patch_size": [64, "a"]}}, "transforms.patch_size[1]: expected an integer"),
        ({"data": {"class_names": "rbc"}}, "data.class_names: expected a list of str"),
        ({"optim": {"name": "adam"}}, "optim.name: 'adam' is not one of adamw, sgd"),
    ],
)
def test_wrong_type_or_choice(values, expected):
    assert expected in _one_line_error(values)


def test_bad_loss_and_network_names():
    assert _one_line_error({"loss": {"name": "dfll"}}) == (
        "loss.name: 'dfll' is not one of dfl, dfl-acw, dfl-learnable, dice-dfl, ce, focal, dice, dice-ce, dice-focal, "
        "dice-focal-softmax, wce, tversky, focal-tversky"
    )
    assert _one_line_error({"network": {"name": "UNet3"}}).startswith("network.name: 'UNet3' is not one of UNet,")
    assert config_from_dict({"network": {"name": "segresnet"}}).network.name == "segresnet"  # case-insensitive


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"optim": {"min_lr": 0.1, "lr": 0.01}}, "optim.min_lr must be in [0, optim.lr=0.01]"),
        ({"optim": {"grad_clip": 0}}, "optim.grad_clip must be > 0 or null"),
        ({"optim": {"warmup_epochs": -1}}, "optim.warmup_epochs must be >= 0"),
        ({"train": {"steps_per_epoch": 0}}, "train.steps_per_epoch must be >= 1"),
        ({"data": {"num_workers": -2}}, "data.num_workers must be >= 0"),
        ({"transforms": {"patch_size": [64, 64, 64]}}, "must have 2 values (data.spatial_dims)"),
    ],
)
def test_training_values_checked(values, expected):
    assert expected in _one_line_error(values)


def test_overrides_parse_yaml_and_reject_typos(tmp_path):
    cfg = load_config(CONFIGS / "blood_smear_2d.yaml", ["train.epochs=1", "loss.name=ce", "optim.grad_clip=null"])
    assert (cfg.train.epochs, cfg.loss.name, cfg.optim.grad_clip) == (1, "ce", None)
    with pytest.raises(ValueError, match=r"^--set: unknown config key train.epoch;"):  # not the file's fault
        load_config(CONFIGS / "blood_smear_2d.yaml", ["train.epoch=1"])
    with pytest.raises(ValueError, match="must look like key.path=value"):
        apply_overrides({}, ["train.epochs"])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load_round_trip_and_comment_every_key(name, tmp_path):
    path = CONFIGS / name
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    # Every key of the schema is spelled out in the file (nothing silently defaulted) ...
    assert _key_paths(raw) == _key_paths(config_to_dict(cfg))
    # ... and every key line inside a section carries a comment, on it or just above it (`plan`
    # writes long reasons above the key).
    lines = path.read_text().splitlines()
    for before, line in zip(["", *lines], lines, strict=False):
        if re.match(r"^ +[a-z_]+:", line):
            assert "#" in line or before.strip().startswith("#"), f"{name}: uncommented key line {line!r}"
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_volume_config_is_3d_ct():
    cfg = load_config(CONFIGS / "volume_3d.yaml")
    assert (cfg.data.spatial_dims, cfg.data.modality, cfg.data.in_channels) == (3, "ct", 1)
    assert cfg.data.class_names == ["background", "organ", "lesion"]


def _key_paths(values: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        if isinstance(value, dict) and key != "kwargs":
            paths |= _key_paths(value, f"{prefix}{key}.")
        else:
            paths.add(f"{prefix}{key}")
    return paths


def _schema_keys(cls: type, path: str = "") -> tuple[set[str], set[str]]:
    """(leaf keys, section keys) of a config dataclass, as dotted paths."""
    import dataclasses
    import typing

    leaves, sections = set(), set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            sections.add(key)
            more_leaves, more_sections = _schema_keys(hints[f.name], key)
            leaves |= more_leaves
            sections |= more_sections
        else:
            leaves.add(key)
    return leaves, sections


def test_key_help_is_one_table_with_every_key_and_no_stale_one():
    from medseg_dfl.config import KEY_HELP, Config

    leaves, sections = _schema_keys(Config)
    assert sorted(leaves - set(KEY_HELP)) == []  # every key says what it does
    assert sorted(set(KEY_HELP) - leaves - sections) == []  # and no help outlives its key
    assert all(text and "\n" not in text for text in KEY_HELP.values())


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; a config or --set saying it means the number.
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n")
    cfg = load_config(path, ["optim.weight_decay=3E-5"])
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (0.001, 3e-05)
    with pytest.raises(ValueError, match="optim.lr: expected a number, got '1e-3x'"):
        load_config(None, ["optim.lr=1e-3x"])
