"""Checkpoints: atomic writes, ``torch.load(weights_only=True)``-safe payloads, RNG state.

A checkpoint is self-contained for inference: ``payload["config"]`` rebuilds the network and the
transforms (``config_from_dict`` -> ``build_network``), ``payload["model_state"]`` holds the weights.
Only tensors, dicts, lists, numbers, strings, bools and None go in, so loading never unpickles code.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg_dfl.io.atomic import torch_save

__all__ = [
    "FORMAT_VERSION",
    "PAYLOAD_KEYS",
    "capture_rng_state",
    "load_checkpoint",
    "release_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT_VERSION = 1

PAYLOAD_KEYS = (
    "format_version",
    "model_state",
    "config",
    "class_names",
    "fingerprint",
    "loss_state",
    "optimizer_state",
    "scheduler_state",
    "scaler_state",
    "epoch",
    "best_metric",
    "rng_state",
)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (:func:`medseg_dfl.io.atomic.torch_save`).

    A crash or SIGKILL at any moment leaves either the previous file or the new one, never half of
    one; the temporary file a kill leaves behind is removed by the next ``--resume``.
    """
    path = Path(path)
    missing = [k for k in PAYLOAD_KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload for {path} lacks keys {missing}")
    return torch_save(payload, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt file, not a torch file, pickled code
        # PyTorch's own text is seven lines and advises loading the file unsafely: not repeated.
        refused = isinstance(err, pickle.UnpicklingError) and zipfile.is_zipfile(path)  # a torch.save archive
        reason = ("it holds Python objects, not only weights; refused, loading them could run code" if refused
                  else "not a readable PyTorch file")  # fmt: skip
        raise ValueError(f"{path}: not a medseg-dfl checkpoint ({reason})") from err
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ValueError(f"{path}: not a medseg-dfl checkpoint (a PyTorch file without its format_version)")
    if payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version")
        raise ValueError(f"{path}: unsupported checkpoint format_version {version!r} (expected {FORMAT_VERSION})")
    return payload


# What inference needs of a checkpoint; a released one keeps only these (no optimiser or RNG state).
RELEASE_KEYS = ("format_version", "model_state", "config", "class_names", "fingerprint", "scale", "epoch",
                "best_metric")  # fmt: skip


def release_checkpoint(source: str | Path, target: str | Path, count_rules: dict[str, float] | None = None) -> Path:
    """Write the inference part of a checkpoint to ``target`` (a model to ship: about a third of the
    training checkpoint), with the counting rules chosen for it (``count_rules``: keyword arguments
    of :class:`medseg_dfl.cells.instances.InstanceParams` that ``count`` uses unless told otherwise)."""
    payload = load_checkpoint(source)
    released = {key: payload[key] for key in RELEASE_KEYS if key in payload}
    if count_rules:
        released["count_rules"] = {str(k): float(v) for k, v in count_rules.items()}
    return torch_save(released, Path(target))


def capture_rng_state() -> dict[str, Any]:
    """torch/numpy/python/CUDA RNG states as weights_only-safe values (tensors and lists)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
