"""``export_portable(model, out_dir)``: a trained network as TorchScript and ONNX, for users outside Python.

Writes, beside each other in ``out_dir``:

- ``model.onnx`` (MONAI's ``convert_to_onnx``, TorchScript-based exporter, opset 17; input
  ``image`` (N, C, spatial...), output ``logits`` (N, classes, spatial...), batch and spatial axes
  dynamic) and/or ``model.ts`` (MONAI's ``convert_to_torchscript``: scripted, traced when the
  network does not script);
- ``preprocessing.json``: the same steps as data (the inference transforms' MONAI config items,
  read off the objects ``medseg-dfl infer`` builds, plus sliding window and post-processing);
- ``README.md``: what a non-Python user must reproduce to get ``infer``'s mask, generated from the
  checkpoint's config: axis order, channels, intensity normalisation, scale, sliding window, softmax
  and argmax, class names.

Each exported file is checked against the PyTorch network on an ROI-sized input before it is kept
(``PortableExport.max_abs_diff``); the folder is assembled beside ``out_dir`` and renamed into place.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.utils import convert_to_onnx, convert_to_torchscript
from PIL import Image

from medseg_dfl.bundle.export import _checkpoint_path
from medseg_dfl.bundle.preprocessing import needs_inversion, preprocessing_items
from medseg_dfl.config import Config, config_from_dict
from medseg_dfl.engine.checkpoint import load_checkpoint
from medseg_dfl.engine.rescale import recorded_model_scale
from medseg_dfl.io.atomic import atomic_folder, write_json, write_text
from medseg_dfl.io.readers import load_image
from medseg_dfl.networks import build_network
from medseg_dfl.transforms import build_inference_transforms, resolve_target_spacing

__all__ = ["FORMATS", "ONNX_OPSET", "PortableExport", "export_portable", "parse_formats", "portable_readme",
           "portable_spec"]  # fmt: skip

FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts"}
# Export checks: largest |exported - PyTorch| logit allowed on the check input.
_TOLERANCE = 1e-4
_GAUSSIAN_SIGMA_SCALE = 0.125  # MONAI sliding_window_inference's default, used by infer


@dataclass
class PortableExport:
    out_dir: Path
    files: dict[str, Path]  # "onnx", "torchscript", "readme", "spec" -> file
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # format -> largest |logit difference|


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"onnx,torchscript"`` (or a list) -> known formats, in order; ``ValueError`` naming an unknown one."""
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    items = ["torchscript" if s in ("ts", "jit") else s for s in items]
    unknown = [s for s in items if s not in FORMATS]
    if unknown or not items:
        raise ValueError(f"unknown export format(s) {unknown or text!r}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


def _image_axis_order_2d() -> str:
    """How ``load_image`` orders a 2D image's spatial axes: probed on a 2-row, 3-column PNG, so this
    text follows the readers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.png"
        Image.fromarray(np.zeros((2, 3), np.uint8)).save(path)
        shape = tuple(load_image(path).shape[1:])
    return "(W, H)" if shape == (3, 2) else "(H, W)"


def _axes_text(cfg: Config) -> str:
    if cfg.data.spatial_dims == 3:
        return ("(N, C, X, Y, Z): the volume's voxel axes as stored (NIfTI i, j, k), after the orientation "
                "step below")  # fmt: skip
    order = _image_axis_order_2d()
    if order == "(W, H)":
        return ("(N, C, W, H): **width first** - transpose an (H, W, C) image array to (C, W, H) "
                "(`numpy.transpose(img, (2, 1, 0))`) and the output mask back")  # fmt: skip
    return "(N, C, H, W): rows first - an (H, W, C) image array becomes (C, H, W) (`numpy.transpose(img, (2, 0, 1))`)"


def _describe_step(item: dict[str, Any]) -> str | None:
    """One README line for a preprocessing config item (None: nothing to reproduce)."""
    kind = item["_target_"]
    if kind == "LoadImaged":
        return "Read the image as float32 (PNG/TIFF/JPEG: pixel values as stored; NIfTI/MHA: stored values)."
    if kind == "EnsureChannelFirstd":
        return "Put the channel axis first (a grey image gets one channel)."
    if kind == "Orientationd":
        return f"Reorient the volume to `{item['axcodes']}` axis codes (MONAI `Orientation`, from the file's affine)."
    if kind == "CropForegroundd":
        return (f"Crop to the bounding box of voxels above the image minimum, with a margin of {item['margin']} "
                "(the prediction outside it is background).")  # fmt: skip
    if kind == "Spacingd":
        return (f"Resample to voxel spacing {item['pixdim']} (mm), {item['mode'][0]} interpolation; resample "
                "the class probabilities back to the original grid (linearly) before the argmax.")  # fmt: skip
    if kind == "NormalizeIntensityd":
        if item["subtrahend"] is not None:
            return (f"Subtract {item['subtrahend']} and divide by {item['divisor']} (per channel).")
        where = "over the non-zero pixels (zeros stay 0)" if item["nonzero"] else "over the whole image"
        per = "each channel separately" if item["channel_wise"] else "all channels together"
        return (f"Z-score: subtract the mean and divide by the (population, ddof=0) standard deviation, {per}, "
                f"{where}, of *this* image (a zero deviation divides by 1).")
    if kind == "ScaleIntensityRanged":
        clip = ", then clip to that range" if item["clip"] else ""
        return (f"Map intensities linearly from [{item['a_min']}, {item['a_max']}] to "
                f"[{item['b_min']}, {item['b_max']}]{clip}.")  # fmt: skip
    if kind == "ScaleIntensityRangePercentilesd":
        per = " per channel" if item["channel_wise"] else ""
        return (f"Map the image's {item['lower']}th..{item['upper']}th percentiles{per} linearly to "
                f"[{item['b_min']}, {item['b_max']}]" + (", clipped." if item["clip"] else "."))  # fmt: skip
    return f"{kind} with {', '.join(f'{k}={v}' for k, v in item.items() if k not in ('_target_', 'keys'))}."


def portable_spec(cfg: Config, fingerprint: dict | None, class_names: list[str]) -> dict[str, Any]:
    """The pre- and post-processing as data (``preprocessing.json``): MONAI config items of the
    inference transforms, the sliding window, the post-processing and the class names."""
    transforms = build_inference_transforms(cfg, fingerprint)
    roi = [int(v) for v in (cfg.inference.roi_size or cfg.transforms.patch_size)]
    return {
        "spatial_dims": cfg.data.spatial_dims,
        "in_channels": cfg.data.in_channels,
        "class_names": list(class_names),
        "target_spacing": resolve_target_spacing(cfg, fingerprint),
        "preprocessing": preprocessing_items(transforms),
        "sliding_window": {
            "roi_size": roi, "overlap": cfg.inference.overlap, "mode": cfg.inference.blend_mode,
            "sigma_scale": _GAUSSIAN_SIGMA_SCALE, "padding": "zeros, split evenly before/after, along axes shorter than roi_size",
        },  # fmt: skip
        "postprocessing": ["softmax over the class axis", *(["invert the geometric preprocessing (linear)"]
                           if needs_inversion(transforms) else []), "argmax over the class axis"],  # fmt: skip
    }


def _scale_text(cfg: Config, spec: dict[str, Any], cell_diameter: float | None, single_cell: bool = False) -> str:
    if cfg.data.spatial_dims == 3:
        spacing = spec["target_spacing"]
        return f"Voxel spacing seen in training: {spacing} mm (see the resampling step)." if spacing else \
            "The network sees each volume at its own voxel spacing (no resampling)."
    if cell_diameter:
        # A single-cell model's ruler is the cell it segments (a white cell), a smear model's the red cells.
        what = "segmented cell is" if single_cell else "red cells are"
        return (f"Magnification: trained on images whose {what} about {cell_diameter:.1f} px across; "
                f"resize an image whose {what} D px across by {cell_diameter:.1f} / D first, and resize "
                "the probabilities back (what `medseg-dfl infer` does).")  # fmt: skip
    return "Each image is segmented at its own pixel size (no resizing)."


def portable_readme(cfg: Config, spec: dict[str, Any], formats: Sequence[str], source: str = "",
                    cell_diameter: float | None = None, single_cell: bool = False) -> str:  # fmt: skip
    """``README.md`` of a portable export: the steps a user outside Python must reproduce."""
    dims, names = cfg.data.spatial_dims, spec["class_names"]
    window = spec["sliding_window"]
    steps = [s for s in map(_describe_step, spec["preprocessing"]) if s]
    files = "\n".join(f"- `{FILE_NAMES[f]}` ({'ONNX, opset ' + str(ONNX_OPSET) if f == 'onnx' else 'TorchScript'})"
                      for f in formats)  # fmt: skip
    blend = (f"Gaussian weights (sigma = {window['sigma_scale']} x roi_size per axis)"
             if window["mode"] == "gaussian" else "equal weights")  # fmt: skip
    invert = "\n   Undo the resampling/cropping on the probabilities (linear), then" if len(
        spec["postprocessing"]) > 2 else ""  # fmt: skip
    return f"""# {cfg.experiment.name}: portable network (`medseg-dfl export`)

{cfg.network.name}, {dims}D, {cfg.data.in_channels} input channel(s), {len(names)} classes; from `{source}`.

{files}
- `preprocessing.json`: the steps below as data (MONAI transform names and arguments).

## Input and output

- Input `image`: float32 {_axes_text(cfg)}.
- Output `logits`: float32 (N, {len(names)}, same spatial shape), one channel per class, *before* softmax.
- Spatial sizes must be multiples of the network's total stride: feed windows of `roi_size` (below).

## Pre-processing (per image, in this order)

{chr(10).join(f"{i}. {s}" for i, s in enumerate(steps, start=1))}

{_scale_text(cfg, spec, cell_diameter, single_cell)}

## Sliding window

Windows of roi_size = {window['roi_size']} (in the axis order above), overlap {window['overlap']}: along
each axis, windows start every int(roi x (1 - overlap)) voxels and the last one is moved back to end
at the image's edge; along an axis shorter than roi_size the image is first padded with zeros, half
before and half (the odd voxel) after, and the padding is cut off again afterwards.
Run the network on each window and average the overlapping logits with {blend}.

## Post-processing

1. Softmax over the class axis.{invert}
2. Argmax over the class axis (first class wins ties): the label map, class i = `{'`, `'.join(names)}`
   ({', '.join(f'{i} = {n}' for i, n in enumerate(names))}).

Written by PNG (uint8) for 2D or NIfTI with the input's affine for 3D, this is the mask of `medseg-dfl
infer --no-tta` without `--keep-largest` (`infer` mirrors white-cell models by default; so does
their MONAI bundle, `medseg-dfl export-bundle`).
"""


def _example_input(cfg: Config) -> torch.Tensor:
    roi = [int(v) for v in (cfg.inference.roi_size or cfg.transforms.patch_size)]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, cfg.data.in_channels, *roi, generator=generator)


def _write_onnx(network: torch.nn.Module, example: torch.Tensor, path: Path) -> float:
    import onnxruntime

    axes = {0: "batch", **{i: f"spatial_{i - 1}" for i in range(2, example.ndim)}}
    convert_to_onnx(network, [example], input_names=["image"], output_names=["logits"], opset_version=ONNX_OPSET,
                    dynamic_axes={"image": axes, "logits": axes}, filename=str(path), use_trace=True,
                    dynamo=False)  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"image": example.numpy()})[0]
    with torch.no_grad():
        reference = network(example).numpy()
    return float(np.abs(exported - reference).max())


def _write_torchscript(network: torch.nn.Module, example: torch.Tensor, path: Path) -> float:
    try:
        module = convert_to_torchscript(network, str(path), inputs=[example])
    except Exception:  # a network torch.jit.script cannot compile: trace it (fixed control flow)
        module = convert_to_torchscript(network, str(path), inputs=[example], use_trace=True)
    with torch.no_grad():
        return float((module(example) - network(example)).abs().max())


_WRITERS = {"onnx": _write_onnx, "torchscript": _write_torchscript}


def _resolve_checkpoint(model: Path, checkpoint: str) -> Path:
    return model if model.is_file() else _checkpoint_path(model, checkpoint)


def export_portable(model: str | Path, out_dir: str | Path, *, formats: Sequence[str] = FORMATS,
                    checkpoint: str = "best.pt", overwrite: bool = False) -> PortableExport:  # fmt: skip
    """Write the network of ``model`` (a run directory: its ``checkpoint``; or a ``.pt`` file) as
    ``formats`` with ``README.md`` and ``preprocessing.json`` in ``out_dir``.

    ``FileNotFoundError`` for a missing run or checkpoint, ``FileExistsError`` for a non-empty
    ``out_dir`` without ``overwrite``, ``ValueError`` for an unknown format, a checkpoint that cannot
    be exported or an export whose logits differ from PyTorch's by more than 1e-4.
    """
    formats = parse_formats(formats)
    model, out_dir = Path(model), Path(out_dir)
    source = _resolve_checkpoint(model, checkpoint)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists and is not empty (pass overwrite to replace it)")
    payload = load_checkpoint(source)
    try:
        cfg = config_from_dict(payload["config"])
        network = build_network(cfg)
        network.load_state_dict(payload["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{source}: checkpoint cannot be exported ({err})") from err
    network = network.float().eval()
    class_names = list(payload.get("class_names") or cfg.data.class_names)
    spec = portable_spec(cfg, payload.get("fingerprint"), class_names)
    scale = recorded_model_scale(payload.get("scale"), class_names, cfg.data.spatial_dims)
    readme = portable_readme(cfg, spec, formats, str(source), scale.cell_diameter_px if scale else None,
                             single_cell=scale is not None and scale.kind == "object")  # fmt: skip
    example = _example_input(cfg)
    result = PortableExport(out_dir, {})
    with atomic_folder(out_dir, overwrite=overwrite) as staging:
        for fmt in formats:
            diff = _WRITERS[fmt](network, example, staging / FILE_NAMES[fmt])
            if not diff <= _TOLERANCE:
                raise ValueError(f"{source}: {fmt} export differs from PyTorch by {diff:.2e} (> {_TOLERANCE})")
            result.files[fmt], result.max_abs_diff[fmt] = out_dir / FILE_NAMES[fmt], diff
        write_json(staging / "preprocessing.json", spec)
        write_text(staging / "README.md", readme)
    result.files.update(readme=out_dir / "README.md", spec=out_dir / "preprocessing.json")
    return result
