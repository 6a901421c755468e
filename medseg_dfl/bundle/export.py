"""``export_bundle(run_dir, out_dir)``: a run trained with ``medseg-dfl train`` as a MONAI bundle.

The bundle (``configs/inference.json``, ``configs/metadata.json``, ``configs/logging.conf``,
``docs/README.md``, ``models/model.pt``) runs with MONAI's own runner::

    python -m monai.bundle run --config_file OUT/configs/inference.json \
        --bundle_root OUT --dataset_dir IMAGES --output_dir MASKS

and writes the masks ``medseg-dfl infer`` writes for the same checkpoint: the same network
(``medseg_dfl.networks.network_spec``), the same preprocessing (read off the transforms ``infer``
builds, ``medseg_dfl.bundle.preprocessing``), the same sliding window, mirrored when ``infer``
mirrors by default (config key ``tta``, ``medseg_dfl.bundle.inferers``), and the same softmax,
inversion and argmax (``medseg_dfl.bundle.transforms``). The bundle is assembled in a hidden folder
beside ``out_dir`` and renamed into place, so a failed export leaves nothing half written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import monai
from monai.bundle import ConfigParser

from medseg_dfl.bundle.metadata import bundle_metadata
from medseg_dfl.bundle.preprocessing import needs_inversion, preprocessing_items
from medseg_dfl.config import Config, config_from_dict
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.ensemble import mirrors_by_default, tta_flips
from medseg_dfl.engine.rescale import ModelScale, load_steps, recorded_model_scale
from medseg_dfl.io.atomic import atomic_folder, torch_save, write_json, write_text
from medseg_dfl.networks import network_spec
from medseg_dfl.pretrained import resolve_model
from medseg_dfl.transforms import build_inference_transforms

__all__ = ["LOGGING_CONF", "export_bundle", "inference_config"]

LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

_DEVICE = "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"
# MONAI binds "$import a.b" under the name "a.b" (unusable in an expression): from-imports instead.
_IMPORTS = ["$import importlib", "$import numpy", "$import torch",
            "$from medseg_dfl.io.pairing import find_images", "$from medseg_dfl.io.readers import image_readers"]  # fmt: skip


def _network_def(cfg: Config) -> dict[str, Any]:
    factory, kwargs = network_spec(cfg)
    public = getattr(monai.networks.nets, factory.__name__, None) is factory
    target = f"monai.networks.nets.{factory.__name__}" if public else f"{factory.__module__}.{factory.__qualname__}"
    try:
        return {"_target_": target, **json.loads(json.dumps(kwargs))}
    except TypeError as err:
        raise ValueError(f"network.kwargs of {factory.__name__} cannot be written to JSON ({err})") from err


_SCALE_KINDS = ("rbc", "object")  # ModelScale.kind: what ToModelScaled resamples to


def _check_scale(model_scale: ModelScale | None) -> ModelScale | None:
    """The scale the bundle resamples to (as ``infer`` does): a smear model's red cells, or a
    single-cell model's cell (only when ``cell_diameter`` is given: ``infer`` would search it)."""
    if model_scale is not None and model_scale.kind not in _SCALE_KINDS:
        raise ValueError(f"model_scale.kind must be one of {_SCALE_KINDS}, got {model_scale.kind!r}")
    return model_scale


def _scale_keys(scale: ModelScale | None) -> dict[str, None]:
    """The config keys of an image's scale (null: found per image), ``infer``'s flags of that model."""
    if scale is None:
        return {}
    # infer refuses --pixel-size for a single-cell model (rescale.inference_model_scale): no key
    return {"cell_diameter": None, "pixel_size": None} if scale.kind == "rbc" else {"cell_diameter": None}


def _preprocessing(transforms: Any, scale: ModelScale | None) -> list[dict[str, Any]]:
    items = preprocessing_items(transforms)
    if scale is None:
        return items
    step: dict[str, Any] = {"_target_": "medseg_dfl.bundle.transforms.ToModelScaled", "keys": "image",
                            "model_diameter": scale.cell_diameter_px, "cell_diameter": "@cell_diameter"}  # fmt: skip
    if scale.kind == "rbc":
        step["pixel_size"] = "@pixel_size"
    else:  # no pixel_size (see _scale_keys); a null cell_diameter: no resampling
        step["kind"] = "object"
    # after the reading, before the normalisation (it may be per image), as in infer
    items.insert(len(load_steps(transforms).transforms), step)
    return items


def _postprocessing(cfg: Config, transforms: Any, num_classes: int, scale: ModelScale | None = None) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [{"_target_": "medseg_dfl.bundle.transforms.ClassProbabilitiesd", "keys": "pred"}]
    if scale is not None:  # probabilities back to the image's own size, as in infer
        steps.append({"_target_": "medseg_dfl.bundle.transforms.FromModelScaled", "keys": "pred"})
    if needs_inversion(transforms):
        # Probabilities (not labels) are resampled back, linearly, as in infer.
        steps.append({"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
                      "nearest_interp": False, "to_tensor": True})  # fmt: skip
    steps.append(
        {"_target_": "medseg_dfl.bundle.transforms.ProbabilitiesToLabelsd", "keys": "pred", "num_classes": num_classes}
    )
    if scale is not None and scale.kind == "object" and scale.core_class is not None:
        # the one cell of a single-cell model, on the label map at the image's size, as infer keeps it
        steps.append({"_target_": "medseg_dfl.bundle.transforms.KeepCoreObjectd", "keys": "pred",
                      "core_class": scale.core_class})  # fmt: skip
    two_d = cfg.data.spatial_dims == 2  # held rows first (H, W): the PNG writer must not swap its axes
    steps.append({
        "_target_": "medseg_dfl.bundle.transforms.SaveRowsFirstd" if two_d else "SaveImaged", "keys": "pred",
        "output_dir": "@output_dir", "output_postfix": "",
        "output_ext": ".png" if two_d else ".nii.gz",
        "output_dtype": "$numpy.uint8" if num_classes <= 256 else "$numpy.uint16",
        "resample": False, "separate_folder": False, "squeeze_end_dims": True,
    })  # fmt: skip
    return steps


def inference_config(cfg: Config, fingerprint: dict | None, class_names: list[str],
                     model_scale: ModelScale | None = None) -> dict[str, Any]:  # fmt: skip
    """``configs/inference.json`` for a checkpoint's config (model-zoo keys: ``bundle_root``,
    ``dataset_dir``, ``output_dir``, ``network_def``, ``preprocessing``, ``inferer``,
    ``postprocessing``, ``evaluator``; ``run`` runs it).

    ``model_scale``: the checkpoint's :func:`~medseg_dfl.engine.rescale.recorded_model_scale`. A
    smear model's (red cells) makes the bundle resample each image to it and the probabilities
    back, as ``infer`` does; its ``cell_diameter`` (px) and ``pixel_size`` (um/px) keys (null: the
    file's metadata or an estimate) are ``infer``'s ``--cell-diameter`` and ``--pixel-size``. A
    single-cell model's (``kind`` "object") gives a ``cell_diameter`` key only (px, that cell in the
    images, ``infer --cell-diameter``; null: each image at its own size, where ``infer`` would
    search the scale) and, with a ``core_class``, keeps the one cell as ``infer`` does.

    ``tta``: ``infer``'s mirroring (test-time augmentation), on by default where ``infer`` has it on
    (a single-cell model); the inferer averages over the flips of the axes training flipped
    (``engine.ensemble.tta_flips``, written out as a list).
    """
    transforms = build_inference_transforms(cfg, fingerprint)
    roi = list(cfg.inference.roi_size or cfg.transforms.patch_size)
    scale = _check_scale(model_scale)
    return {
        "imports": list(_IMPORTS),
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/data'",
        # Every image in dataset_dir (sorted), found as medseg-dfl infer finds them.
        "datalist": "$[{'image': str(p)} for p in find_images(@dataset_dir)]",
        "device": _DEVICE,
        "class_names": list(class_names),
        **_scale_keys(scale),
        # infer's default mirroring (engine.ensemble.mirrors_by_default); --tta false: the network once
        "tta": mirrors_by_default(scale),
        "network_def": _network_def(cfg),
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": _preprocessing(transforms, scale)},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},  # fmt: skip
        "inferer": {
            "_target_": "medseg_dfl.bundle.inferers.MirroredSlidingWindowInferer", "roi_size": roi,
            "sw_batch_size": cfg.inference.sw_batch_size, "overlap": cfg.inference.overlap,
            "mode": cfg.inference.blend_mode, "sw_device": "@device", "device": "cpu",
            "flips": [list(axes) for axes in tta_flips(cfg)], "tta": "@tta",
        },  # fmt: skip
        "postprocessing": {"_target_": "Compose", "transforms": _postprocessing(cfg, transforms, len(class_names), scale)},
        "handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
             "load_dict": {"model": "@network"}, "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False},
        ],  # fmt: skip
        "evaluator": {
            "_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
            "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
            "val_handlers": "@handlers", "amp": False,
        },  # fmt: skip
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
        # The run id of older model-zoo commands (`python -m monai.bundle run evaluating ...`).
        "evaluating": ["$@evaluator.run()"],
    }


def _checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    """The checkpoint to export: ``run_dir`` itself when it is a checkpoint file or a shipped model's
    name (medseg_dfl.pretrained), else ``checkpoint`` inside the run folder."""
    resolved = resolve_model(run_dir)
    if resolved.is_file():
        if checkpoint != "best.pt":  # a file or a name is the checkpoint: a second one would be ignored
            raise ValueError(f"--checkpoint {checkpoint} applies to a run directory, and {run_dir} is a checkpoint")
        return resolved
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory, checkpoint or shipped model not found: {run_dir}")
    path = run_dir / checkpoint
    if not path.is_file() and checkpoint == "best.pt" and (run_dir / "last.pt").is_file():
        path = run_dir / "last.pt"  # never validated: the last weights are all there is
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoint {checkpoint} (train a run first: medseg-dfl train)")
    return path


def _check_weights_fit(config: dict[str, Any], state: dict[str, Any], source: Path) -> None:
    """The bundle's ``network_def``, built by MONAI's parser, must take the weights strictly."""
    parser = ConfigParser({"network_def": config["network_def"]})
    try:
        parser.get_parsed_content("network_def").load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{source}: the exported network_def does not take the weights ({err})") from err


def _object_scale_note(cell_scale: ModelScale, class_names: list[str]) -> str:
    """For a single-cell model: the ``cell_diameter`` key, and the one cell kept (with a core class)."""
    diameter = cell_scale.cell_diameter_px
    core = cell_scale.core_class
    name = f" ({class_names[core]})" if core is not None and core < len(class_names) else ""
    kept = "" if core is None else f"""
As `medseg-dfl infer` does (unless `--all-objects`), only the one cell is kept: the object around
class {core}{name}, split from the cells that touch it (`medseg_dfl.bundle.transforms.KeepCoreObjectd`:
`infer`'s `keep_core_object`, on the label map).
"""
    return f"""
**Magnification.** This single-cell model was trained on crops whose cell is about {diameter:.1f} px
across (`medseg_dfl.scale.cell_diameter_px` in the metadata). Give that cell's diameter in your
images (px) as the config key `cell_diameter`, as `medseg-dfl infer --cell-diameter`: the bundle
then resamples each image so the cell is {diameter:.1f} px across
(`medseg_dfl.bundle.transforms.ToModelScaled`, before the intensity normalisation), segments it
there and resamples the class probabilities back to the image's own size
(`medseg_dfl.bundle.transforms.FromModelScaled`) before the argmax, which gives `infer
--cell-diameter PX`'s masks (mirrored as `infer` mirrors, see below):

```bash
python -m monai.bundle run --config_file configs/inference.json \\
    --bundle_root . --dataset_dir /path/to/images --output_dir /path/to/masks --cell_diameter 120
```

Without `cell_diameter` (null) each image is segmented at its own pixel grid (as `infer
--cell-diameter {diameter:g}`). `medseg-dfl infer` on the run's checkpoint instead searches each
input's scale with the network (and runs a folder at the median of the searched diameters), which
the bundle cannot.
{kept}"""


def _smear_scale_note(cell_scale: ModelScale | None, class_names: list[str] | None = None) -> str:
    """For a 2D model that records a scale: what the bundle does with an image's magnification."""
    if cell_scale is None:
        return ""
    diameter = cell_scale.cell_diameter_px
    if cell_scale.kind != "rbc":
        return _object_scale_note(cell_scale, list(class_names or []))
    return f"""
**Magnification.** This is a blood-smear model trained on images whose red cells are about
{diameter:.1f} px across (`medseg_dfl.scale.cell_diameter_px` in the metadata). As `medseg-dfl infer`
does, the bundle resamples each image so its red cells are that large
(`medseg_dfl.bundle.transforms.ToModelScaled`, before the intensity normalisation), segments it
there and resamples the class probabilities back to the image's own size
(`medseg_dfl.bundle.transforms.FromModelScaled`) before the argmax. An image's red-cell size comes
from the config keys `cell_diameter` (px) or `pixel_size` (um per px; 7.5 um red cells), as
`infer --cell-diameter` / `--pixel-size`, else from the file's metadata, else an estimate from the
image:

```bash
python -m monai.bundle run --config_file configs/inference.json \\
    --bundle_root . --dataset_dir /path/to/images --output_dir /path/to/masks --cell_diameter 40
```
"""


def _rescaling_words(cell_scale: ModelScale | None) -> str:
    # a single-cell model's bundle matches infer only with a given cell_diameter (infer searches otherwise)
    return "the rescaling to a given `cell_diameter`" if cell_scale is not None and cell_scale.kind == "object" \
        else "smear rescaling"


def _mirroring_note(cfg: Config, cell_scale: ModelScale | None) -> str:
    """What the config key ``tta`` does for this model, and its default (``infer``'s)."""
    flips = tta_flips(cfg)
    if flips == [()]:
        return """**Mirroring.** Training flipped no axis, so there is nothing to mirror: the network runs once
per window, as in `medseg-dfl infer` (the config key `tta` changes nothing).
"""
    axes = sorted({axis - 2 for combo in flips for axis in combo})
    how = f"""the softmax of each window is averaged over its {len(flips)} mirrorings along the axes
training flipped (spatial axes {axes}; `medseg_dfl.bundle.inferers.MirroredSlidingWindowInferer`
runs `infer`'s `AveragedProbabilities`, {len(flips)}x the network's time)"""
    if mirrors_by_default(cell_scale):
        return f"""**Mirroring.** As `medseg-dfl infer` does by default for a single-cell model,
{how}.
The config key `tta` (true) switches it off, as `infer --no-tta` does: add `--tta false` to the
command.
"""
    return f"""**Mirroring.** As `medseg-dfl infer` does by default for this model, the network runs once per
window (the config key `tta` is false). With `--tta true`, as with `infer --tta`,
{how}.
"""


def _readme(cfg: Config, class_names: list[str], source: Path, cell_scale: ModelScale | None = None) -> str:
    classes = ", ".join(f"{i} = {name}" for i, name in enumerate(class_names))
    return f"""# {cfg.experiment.name}: exported by `medseg-dfl export-bundle`

{cfg.network.name} ({cfg.data.spatial_dims}D, {cfg.data.in_channels} input channel(s)) trained with
medseg-dfl, loss `{cfg.loss.name}`, from `{source}`. Classes: {classes}.

## Inference

```bash
python -m monai.bundle run --config_file configs/inference.json \\
    --bundle_root . --dataset_dir /path/to/images --output_dir /path/to/masks
```

Reads every image in `dataset_dir` (the files `medseg-dfl infer` would read) and writes one label map
per image (`<stem>.png` for 2D inputs, `<stem>.nii.gz` for 3D), on the input's own grid. The
preprocessing, sliding window and post-processing are those of `medseg-dfl infer` for the same
checkpoint, {_rescaling_words(cell_scale)} included (see below), so the masks are the same. Needs
`pip install medseg-dfl[bundle]` (MONAI, pytorch-ignite, fire).
{_smear_scale_note(cell_scale, class_names)}
{_mirroring_note(cfg, cell_scale)}
Masks only (no probability maps or overlays); one checkpoint.

`configs/metadata.json` holds MONAI's metadata fields; its `medseg_dfl` section has the class names,
the scale the network sees (`target_spacing`; null = the image's own grid), the intensity
normalisation and the loss (with its scale alpha and adaptive class weights).
"""


def _write_bundle(folder: Path, config: dict, metadata: dict, readme: str, state: dict) -> None:
    write_json(folder / "configs" / "inference.json", config, indent=4)
    write_json(folder / "configs" / "metadata.json", metadata, indent=4)
    write_text(folder / "configs" / "logging.conf", LOGGING_CONF)
    write_text(folder / "docs" / "README.md", readme)
    torch_save({k: v.detach().cpu() for k, v in state.items()}, folder / "models" / "model.pt")


def export_bundle(run_dir: str | Path, out_dir: str | Path, *, checkpoint: str = "best.pt",
                  overwrite: bool = False) -> Path:  # fmt: skip
    """Write the run in ``run_dir`` (its ``best.pt``; ``last.pt`` if never validated) as a MONAI
    bundle in ``out_dir``; return ``out_dir``. ``run_dir`` may also be a checkpoint file or a
    shipped model's name (``blood-smear``).

    ``FileNotFoundError`` for a missing run or checkpoint, ``FileExistsError`` for a non-empty
    ``out_dir`` without ``overwrite``, ``ValueError`` for a checkpoint that cannot be exported.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    source = _checkpoint_path(run_dir, checkpoint)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists and is not empty (pass overwrite to replace it)")
    payload = load_checkpoint(source)
    try:
        cfg = config_from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{source}: checkpoint config is not usable ({err})") from err
    class_names = list(payload.get("class_names") or cfg.data.class_names)
    fingerprint = payload.get("fingerprint")
    cell_scale = recorded_model_scale(payload.get("scale"), class_names, cfg.data.spatial_dims)
    config = inference_config(cfg, fingerprint, class_names, cell_scale)
    _check_weights_fit(config, payload["model_state"], source)
    roi = list(cfg.inference.roi_size or cfg.transforms.patch_size)
    metadata = bundle_metadata(
        cfg, class_names, roi, fingerprint=fingerprint, loss_state=payload.get("loss_state"),
        best_metric=payload.get("best_metric"), source=str(source),
    )  # fmt: skip
    if cell_scale is not None:
        metadata["medseg_dfl"]["scale"]["cell_diameter_px"] = cell_scale.cell_diameter_px
    readme = _readme(cfg, class_names, source, cell_scale)
    with atomic_folder(out_dir, overwrite=overwrite) as staging:
        _write_bundle(staging, config, metadata, readme, payload["model_state"])
    return out_dir
