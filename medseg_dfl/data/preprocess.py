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
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medseg_dfl.config import Config, config_from_dict, save_config
from medseg_dfl.data.datasets import CACHE_DIRNAME, warm_disk_cache
from medseg_dfl.data.fingerprint import FINGERPRINT_NAME, compute_fingerprint, save_fingerprint
from medseg_dfl.io.atomic import remove_stale_temps, write_json
from medseg_dfl.io.checks import DataError, PairStats, validate_pair
from medseg_dfl.io.dataset_json import (
    dataset_json_path,
    has_dataset_json,
    read_dataset_json,
    write_dataset_json,
)
from medseg_dfl.io.pairing import discover_pairs, split_pairs
from medseg_dfl.io.readers import load_image

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


class PreprocessError(ValueError):
    """Some pairs failed validation; ``bad`` lists ``(file, reason)`` for each of them."""

    def __init__(self, bad: list[tuple[Path, str]], total: int) -> None:
        self.bad = bad
        shown = "; ".join(f"{path}: {reason}" for path, reason in bad[:3])
        more = f"; ... ({len(bad) - 3} more)" if len(bad) > 3 else ""
        super().__init__(
            f"{len(bad)} of {total} pairs failed validation ({shown}{more}); nothing was written "
            "(--skip-bad / skip_bad=True carries on without them)"
        )


# --------------------------------------------------------------------------- validation records


def _file_key(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path), stat.st_mtime_ns, stat.st_size]


def _pair_key(pair: Any, cfg: Config) -> str:
    files = [_file_key(Path(pair.image))] + ([_file_key(Path(pair.label))] if pair.label else [])
    return json.dumps([files, cfg.data.num_classes, cfg.data.spatial_dims])


def _stats_to_record(stats: Any) -> dict[str, Any]:
    record = dataclasses.asdict(stats)
    record["affine"] = np.asarray(stats.affine).tolist()
    record["class_counts"] = [int(c) for c in stats.class_counts]
    record["intensity_percentiles"] = [[[float(q), float(v)] for q, v in p.items()] for p in stats.intensity_percentiles]
    return record


def _stats_from_record(record: dict[str, Any]) -> Any:
    values = dict(record)
    values["shape"], values["spacing"] = tuple(values["shape"]), tuple(values["spacing"])
    values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
    values["affine"] = np.asarray(values["affine"], dtype=np.float64)
    values["class_counts"] = np.asarray(values["class_counts"], dtype=np.int64)
    values["intensity_percentiles"] = [{q: v for q, v in p} for p in values["intensity_percentiles"]]
    return PairStats(**values)


def _read_records(output_dir: Path) -> dict[str, dict]:
    path = output_dir / VALIDATED_NAME
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged record only costs a re-validation
    return data if isinstance(data, dict) else {}


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


def _validate_all(
    pairs: Sequence[Any], cfg: Config, records: dict[str, dict], report: Callable[[str, str | None], None]
) -> tuple[list[Any], list[Any], list[tuple[Path, str]], dict[str, dict], int]:
    """Validate (or reuse the record of) each pair: (good pairs, their stats, bad, records, n validated)."""
    good, stats, bad, new_records, n_validated = [], [], [], {}, 0
    for pair in pairs:
        key = _pair_key(pair, cfg)
        try:
            if pair.label is None:
                raise DataError(pair.image, "has no label")
            if key in records:
                stat = _stats_from_record(records[key])
            else:
                stat = validate_pair(pair, cfg.data.num_classes, cfg.data.spatial_dims)
                n_validated += 1
        except DataError as err:
            path, reason = (err.path or pair.image), err.reason
            bad.append((Path(path), reason))
            report(pair.case_id, f"{path}: {reason}")
            continue
        new_records[key] = _stats_to_record(stat)
        good.append(pair)
        stats.append(stat)
        report(pair.case_id, None)
    return good, stats, bad, new_records, n_validated


def _write_json(data: Any, path: Path) -> None:
    write_json(path, data)


def _dataset_json(cfg: Config, input_dir: Path, train: Sequence[Any], val: Sequence[Any]) -> dict[str, Any]:
    def entries(pairs: Sequence[Any]) -> list[dict[str, str]]:
        return [{"image": str(Path(p.image).resolve()), "label": str(Path(p.label).resolve())} for p in pairs]

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


class _Reporter:
    """Rich progress bar + one line per bad file (silent when ``enabled`` is False)."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[case]}"), console=Console(stderr=True), disable=not enabled,
        )
        self.enabled = enabled
        self.task: Any = None

    def phase(self, description: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, case="")
        self.task = self.progress.add_task(description, total=total, case="")

    def step(self, case: str, problem: str | None = None) -> None:
        if problem is not None and self.enabled:
            self.progress.console.print(f"[red]bad[/red] {problem}", markup=True, highlight=False, soft_wrap=True)
        self.progress.update(self.task, advance=1, case=case)


def preprocess_dataset(
    input_dir: str | Path, output_dir: str | Path, cfg: Config, skip_bad: bool = False, progress: bool = True
) -> PreprocessResult:
    """Validate, fingerprint and cache INPUT_DIR into OUTPUT_DIR (see the module docstring).

    Raises :class:`PreprocessError` (a ``ValueError``) listing every bad pair unless ``skip_bad``.
    """
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    _check_folders(input_dir, output_dir)
    pairs = discover_pairs(input_dir)
    reporter = _Reporter(progress)
    with reporter.progress:
        reporter.phase("validating", len(pairs))
        good, stats, bad, records, n_validated = _validate_all(
            pairs, cfg, _read_records(output_dir), lambda case, problem: reporter.step(case, problem)
        )
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
        _write_json(records, output_dir / VALIDATED_NAME)
        reporter.phase("caching", len(good))
        warm_disk_cache(out_cfg, fingerprint, lambda item: reporter.step(item["case_id"]))
    return PreprocessResult(
        n_ok=len(good), bad=bad, fingerprint_path=fingerprint_path, dataset_json_path=dataset_json_path(output_dir),
        cache_dir=output_dir / CACHE_DIRNAME, n_train=len(train), n_val=len(val), n_revalidated=n_validated,
        fingerprint=fingerprint,
    )


# --------------------------------------------------------------------------- config without --config


def _dataset_json_hints(input_dir: Path) -> tuple[list[str] | None, str | None]:
    """Class names and modality from INPUT_DIR/dataset.json when it has them."""
    path = dataset_json_path(input_dir)
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


def config_from_data(input_dir: str | Path) -> Config:
    """A config for INPUT_DIR when none is given: the defaults, plus what the data tells.

    ``spatial_dims`` and ``in_channels`` from the first image; class names and modality from a
    Decathlon ``dataset.json`` (``"labels"``, ``"modality"``) when present, else the default class
    names; 2D -> microscopy; 3D without a modality -> "ct" when the first image reaches below
    -500 (air in Hounsfield units), else "mr" (z-score).
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    names, modality = _dataset_json_hints(input_dir)
    first = load_image(discover_pairs(input_dir)[0].image)
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
