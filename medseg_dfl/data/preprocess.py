"""``preprocess``: validate every pair, fingerprint the dataset, cache the deterministic pipeline.

OUTPUT_DIR gets

- ``dataset.json``: Decathlon style, *absolute* image/label paths of the good pairs in
  ``"training"``/``"validation"`` (the split of ``split_pairs`` on INPUT_DIR), ``"labels"`` from
  ``cfg.data.class_names``, ``"modality"``, ``"source"`` (INPUT_DIR);
- ``fingerprint.json`` (:mod:`medseg_dfl.data.fingerprint`);
- ``config.yaml``: the config used, with ``data.root`` = OUTPUT_DIR and ``data.cache`` = "disk", so
  ``medseg-dfl train --config OUTPUT_DIR/config.yaml`` finds the warmed cache;
- ``cache/``: MONAI ``PersistentDataset`` files of the deterministic prefix (what
  ``build_datasets`` reads when ``data.root`` is OUTPUT_DIR);
- ``validated.json``: per-file validation results keyed by path + mtime + size, so a re-run skips
  re-validating unchanged files (and the cache reuses unchanged arrays).

INPUT_DIR is only read: OUTPUT_DIR may not be INPUT_DIR or lie inside it. Bad pairs are all
collected first; nothing is written unless every pair is good or ``skip_bad`` is set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg_dfl.config import Config, config_from_dict, save_config
from medseg_dfl.data.datasets import CACHE_DIRNAME, warm_disk_cache
from medseg_dfl.data.fingerprint import FINGERPRINT_NAME, compute_fingerprint, save_fingerprint
from medseg_dfl.io.atomic import remove_stale_temps
from medseg_dfl.io.checks import BadFilesError, check_pairs, save_check_cache
from medseg_dfl.io.dataset_json import (
    dataset_json_path,
    has_dataset_json,
    read_dataset_json,
    write_dataset_json,
)
from medseg_dfl.io.errors import DataError
from medseg_dfl.io.nnunet import is_nnunet_raw, read_nnunet_dataset
from medseg_dfl.io.pairing import discover_pairs, split_pairs
from medseg_dfl.io.readers import load_image
from medseg_dfl.progress import ProgressCallback, report

__all__ = ["PreprocessError", "PreprocessResult", "config_from_data", "preprocess_dataset"]

VALIDATED_NAME = "validated.json"
CONFIG_NAME = "config.yaml"
_MODALITIES = {"ct": "ct", "mr": "mr", "mri": "mr", "t1": "mr", "t2": "mr", "flair": "mr"}


@dataclass
class PreprocessResult:
    n_ok: int
    bad: list[tuple[Path, str]]
    fingerprint_path: Path
    dataset_json_path: Path
    cache_dir: Path
    n_train: int = 0
    n_val: int = 0
    n_revalidated: int = 0
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)


class PreprocessError(BadFilesError):
    """Some pairs failed validation; ``bad`` lists ``(file, reason)`` for each of them."""

    def __init__(self, bad: list[tuple[Path, str]], total: int) -> None:
        super().__init__(bad, total, hint="nothing was written (--skip-bad / skip_bad=True carries on without them)")


# --------------------------------------------------------------------------- steps


def _check_folders(input_dir: Path, output_dir: Path) -> None:
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    if output_dir == input_dir or input_dir in output_dir.parents:
        raise ValueError(
            f"output folder {output_dir} is (inside) the input folder {input_dir}; choose another one "
            "(preprocess never writes into the input data)"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output path exists and is not a folder: {output_dir}")


def _dataset_json(cfg: Config, input_dir: Path, train: Sequence[Any], val: Sequence[Any]) -> dict[str, Any]:
    def image(pair: Any) -> str | list[str]:  # several channel files (an nnU-Net case): a list
        files = [str(Path(f).resolve()) for f in pair.image_files]
        return files if len(files) > 1 else files[0]

    def entries(pairs: Sequence[Any]) -> list[dict[str, Any]]:
        return [{"image": image(p), "label": str(Path(p.label).resolve())} for p in pairs]

    return {
        "name": input_dir.name,
        "description": f"medseg-dfl preprocess of {input_dir}",
        "source": str(input_dir),
        "tensorImageSize": f"{cfg.data.spatial_dims}D",
        "modality": {"0": cfg.data.modality.upper() if cfg.data.modality != "microscopy" else "microscopy"},
        "labels": {str(i): name for i, name in enumerate(cfg.data.class_names)},
        "numTraining": len(train),
        "numValidation": len(val),
        "training": entries(train),
        "validation": entries(val),
    }


def _output_config(cfg: Config, output_dir: Path) -> Config:
    data = dataclasses.replace(cfg.data, root=str(output_dir), cache="disk", cache_dir=None)
    return dataclasses.replace(cfg, data=data)


class _Phase:
    """Counts the cases of one phase ("validating", "caching") and reports each to ``progress``
    (bad files are listed once, by the caller, afterwards)."""

    def __init__(self, progress: ProgressCallback | None, name: str, total: int) -> None:
        self.progress, self.name, self.total, self.done = progress, name, total, 0
        report(progress, 0, total, name)

    def step(self, case: str, problem: str | None = None) -> None:
        self.done += 1
        report(self.progress, self.done, self.total, f"{self.name} {case}")


def preprocess_dataset(
    input_dir: str | Path, output_dir: str | Path, cfg: Config, skip_bad: bool = False,
    progress: ProgressCallback | None = None,
) -> PreprocessResult:
    """Validate, fingerprint and cache INPUT_DIR into OUTPUT_DIR (see the module docstring).

    Raises :class:`PreprocessError` (a ``ValueError``) listing every bad pair unless ``skip_bad``.
    """
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    _check_folders(input_dir, output_dir)
    pairs = discover_pairs(input_dir)
    checked = check_pairs(
        pairs, cfg.data.num_classes, cfg.data.spatial_dims, in_channels=cfg.data.in_channels,
        cache=output_dir / VALIDATED_NAME, on_pair=_Phase(progress, "validating", len(pairs)).step,
    )
    good, stats, bad = checked.good, checked.stats, checked.bad
    if bad and not skip_bad:
        raise PreprocessError(bad, len(pairs))
    if not good:
        raise ValueError(f"{input_dir}: no valid pairs left ({len(bad)} bad)")
    train, val = split_pairs(input_dir, good, cfg.data.val_fraction, cfg.experiment.seed)
    fingerprint = compute_fingerprint(stats, cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output_dir)  # left by a killed earlier run (not by live ones)
    write_dataset_json(output_dir, _dataset_json(cfg, input_dir, train, val))
    fingerprint_path = save_fingerprint(fingerprint, output_dir / FINGERPRINT_NAME)
    out_cfg = _output_config(cfg, output_dir)
    save_config(out_cfg, output_dir / CONFIG_NAME)
    save_check_cache(output_dir / VALIDATED_NAME, checked, keep_others=False)
    caching = _Phase(progress, "caching", len(good))
    warm_disk_cache(out_cfg, fingerprint, lambda item: caching.step(item["case_id"]))
    return PreprocessResult(
        n_ok=len(good), bad=bad, fingerprint_path=fingerprint_path, dataset_json_path=dataset_json_path(output_dir),
        cache_dir=output_dir / CACHE_DIRNAME, n_train=len(train), n_val=len(val), n_revalidated=checked.n_read,
        fingerprint=fingerprint,
    )


# --------------------------------------------------------------------------- config without --config


def _dataset_json_hints(input_dir: Path) -> tuple[list[str] | None, str | None]:
    """Class names and modality from INPUT_DIR/dataset.json when it has them."""
    path = dataset_json_path(input_dir)
    if is_nnunet_raw(input_dir):  # nnU-Net v2: labels name -> value, channel_names for the modality
        nnunet = read_nnunet_dataset(input_dir, cases=False)
        return nnunet.class_names, _MODALITIES.get(nnunet.channel_names[0].lower())
    data = read_dataset_json(input_dir) if has_dataset_json(input_dir) else {}
    labels = data.get("labels") if isinstance(data, dict) else None
    names = None
    if isinstance(labels, dict) and labels:
        if sorted(labels) != sorted(str(i) for i in range(len(labels))):
            raise ValueError(f"{path}: 'labels' keys must be the class indices 0..{len(labels) - 1}, got {sorted(labels)}")
        names = [str(labels[str(i)]) for i in range(len(labels))]
    modality = data.get("modality") if isinstance(data, dict) else None
    if isinstance(modality, dict):
        modality = next(iter(modality.values()), None)
    modality = _MODALITIES.get(str(modality).lower()) if modality else None
    return names, modality


def _first_readable_image(pairs: Sequence[Any]) -> Any:
    first_error: DataError | None = None
    for pair in pairs:
        try:
            return load_image(pair.image_files)
        except DataError as err:
            first_error = first_error or err
    raise first_error if first_error is not None else ValueError("no images to infer a config from")


def config_from_data(input_dir: str | Path) -> Config:
    """A config for INPUT_DIR when none is given: the defaults, plus what the data tells.

    ``spatial_dims`` and ``in_channels`` from the first readable image (an unreadable one is left to
    the validation to report, so ``--skip-bad`` can skip it); class names and modality from a
    Decathlon ``dataset.json`` (``"labels"``, ``"modality"``) when present, else the default class
    names; 2D -> microscopy; 3D without a modality -> "ct" when the first image reaches below
    -500 (air in Hounsfield units), else "mr" (z-score).
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    names, modality = _dataset_json_hints(input_dir)
    first = _first_readable_image(discover_pairs(input_dir))
    dims = first.ndim - 1
    if dims not in (2, 3):
        raise ValueError(f"{first.meta.get('filename_or_obj')}: {dims}D image; give --config")
    if dims == 2:
        modality = "microscopy"
    elif modality is None:
        modality = "ct" if float(first.min()) <= -500 else "mr"
    data: dict[str, Any] = {"root": str(input_dir), "spatial_dims": dims, "modality": modality,
                            "in_channels": int(first.shape[0])}
    if names:
        data["class_names"] = names
    return config_from_dict({"data": data, "transforms": {"patch_size": [128, 128] if dims == 2 else [64, 64, 64]}})
