"""MONAI segmentation networks by name: the one place that decides the network."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from monai.networks import nets
from torch import nn

from medseg_dfl.choices import NETWORK_NAMES
from medseg_dfl.config import Config

__all__ = ["NETWORK_NAMES", "build_network", "check_input_size", "network_spec"]


def _unet_defaults(cfg: Config) -> dict[str, Any]:
    return {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 2}


def _dynunet_defaults(cfg: Config) -> dict[str, Any]:
    dims = cfg.data.spatial_dims
    depth = 4
    kernels = [[3] * dims] * depth
    strides = [[1] * dims] + [[2] * dims] * (depth - 1)
    return {"kernel_size": kernels, "strides": strides, "upsample_kernel_size": strides[1:]}


def _vit_defaults(cfg: Config) -> dict[str, Any]:
    return {"img_size": list(cfg.transforms.patch_size)}


# Our defaults over MONAI's, by network (the others use MONAI's own defaults).
_DEFAULTS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "UNet": _unet_defaults,
    "AttentionUnet": _unet_defaults,
    "DynUNet": _dynunet_defaults,
    "UNETR": _vit_defaults,
}


def _network_table() -> dict[str, tuple[Callable[..., nn.Module], Callable[[Config], dict[str, Any]]]]:
    """lower-case name -> (MONAI class of that name, our defaults) for every name in NETWORK_NAMES."""
    return {name.lower(): (getattr(nets, name), _DEFAULTS.get(name, lambda cfg: {})) for name in NETWORK_NAMES}


def build_network(cfg: Config) -> nn.Module:
    """Build ``cfg.network.name`` with ``cfg.network.kwargs`` over sensible defaults.

    ``spatial_dims``, ``in_channels`` and ``out_channels`` come from ``cfg.data``; the network's
    kwargs may override anything else. Names are case-insensitive.
    """
    factory, kwargs = network_spec(cfg)
    check_input_size(cfg, kwargs)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise ValueError(f"cannot build network {factory.__name__} with {kwargs}: {err}") from err


def network_spec(cfg: Config) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """The MONAI network class and the exact keyword arguments :func:`build_network` calls it with
    (``medseg_dfl.bundle`` writes them into a bundle's ``network_def``)."""
    table = _network_table()
    key = cfg.network.name.lower()
    if key not in table:
        raise ValueError(f"network.name {cfg.network.name!r} is not one of {', '.join(NETWORK_NAMES)}")
    factory, defaults = table[key]
    kwargs: dict[str, Any] = {
        "spatial_dims": cfg.data.spatial_dims,
        "in_channels": cfg.data.in_channels,
        "out_channels": cfg.data.num_classes,
    }
    kwargs.update(defaults(cfg))
    kwargs.update(cfg.network.kwargs)
    accepted = inspect.signature(factory.__init__).parameters
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        # Drop defaults a given MONAI version does not take (e.g. SwinUNETR's img_size), but report
        # user-given ones.
        user_unknown = [k for k in unknown if k in cfg.network.kwargs]
        if user_unknown:
            raise ValueError(
                f"network.kwargs {user_unknown} are not parameters of {factory.__name__}; "
                f"allowed: {', '.join(k for k in accepted if k != 'self')}"
            )
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    return factory, kwargs


def _downsampling(name: str, kwargs: dict[str, Any], dims: int) -> list[int]:
    """By how much the network shrinks each spatial axis at its deepest level."""
    if name in ("unet", "attentionunet", "dynunet"):
        factor = [1] * dims
        for stride in kwargs.get("strides") or []:
            per_axis = list(stride) if isinstance(stride, (list, tuple)) else [stride] * dims
            factor = [f * int(s) for f, s in zip(factor, per_axis, strict=False)]
        return factor
    if name == "basicunet":
        return [16] * dims  # four 2x poolings
    if name == "segresnet":
        return [2 ** (len(kwargs.get("blocks_down") or (1, 2, 2, 4)) - 1)] * dims
    if name == "unetr":
        return [16] * dims  # its ViT patches
    if name == "swinunetr":
        return [32] * dims
    return [1] * dims


def check_input_size(cfg: Config, kwargs: dict[str, Any] | None = None) -> None:
    """``ValueError`` (one line) when ``transforms.patch_size`` or ``inference.roi_size`` cannot be
    divided by the network's down-sampling (a UNet with strides [2, 2, 2] needs multiples of 8)."""
    kwargs = network_spec(cfg)[1] if kwargs is None else kwargs
    factor = _downsampling(cfg.network.name.lower(), kwargs, cfg.data.spatial_dims)
    for key, size in (("transforms.patch_size", cfg.transforms.patch_size), ("inference.roi_size", cfg.inference.roi_size)):
        if size is not None and any(int(n) % f for n, f in zip(size, factor, strict=False)):
            raise ValueError(f"{key} {list(size)} is not divisible by {factor}, the down-sampling of network "
                             f"{cfg.network.name} (network.kwargs strides); use multiples of it")  # fmt: skip
