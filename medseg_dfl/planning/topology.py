"""Patch size, network topology (MONAI ``DynUNet`` kernels and strides) and batch size, as nnU-Net plans them.

- :func:`pool_and_conv` is nnU-Net's ``get_pool_and_conv_props``: halve an axis while its feature
  map stays >= 8 voxels (4 after pooling) and its spacing is within 2x of the finest; a 3x3x3 kernel
  once an axis's spacing is within 2x of the finest (1 before, so a coarse axis is not convolved
  across slices too early). The patch is rounded up to a multiple of 2^(poolings per axis).
- :func:`plan_patch_and_batch` starts from the median shape at target spacing (capped at 256 voxels
  per axis in 3D, 2048 in 2D), shrinks the axis that is largest relative to the median shape until
  one training step at batch 2 fits the memory budget, then raises the batch while it fits and the
  batch holds at most 5 % of the data set's voxels (nnU-Net's caps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_FILTERS", "Topology", "estimate_step_bytes", "filters_for", "plan_patch_and_batch", "pool_and_conv"]

MIN_FEATURE_MAP = 4
MAX_POOLINGS = 5
MIN_BATCH = 2
MAX_BATCH_SHARE = 0.05
_INITIAL_CAP = {2: 2048, 3: 256}
MAX_FILTERS = {2: 512, 3: 320}  # nnU-Net's cap on a stage's feature maps (and the wide candidate's)
# Tensors kept per voxel and feature map for backward in one DynUNet stage (conv, norm and activation
# outputs of two convs in the encoder, the same plus the up-convolution and the concatenation in the
# decoder), and float32. An estimate: it decides the batch and patch, not an allocator's exact peak.
_TENSORS_PER_STAGE = 16
_BYTES = 4


@dataclass(frozen=True)
class Topology:
    patch: list[int]
    kernels: list[list[int]]
    strides: list[list[int]]
    poolings: list[int]

    @property
    def divisor(self) -> list[int]:
        return [2**p for p in self.poolings]


def pool_and_conv(spacing: list[float], patch: list[int]) -> Topology:
    """nnU-Net's pooling/kernel plan for ``patch`` at ``spacing`` (see the module docstring)."""
    dims = len(spacing)
    current_spacing, current_size = list(spacing), [float(s) for s in patch]
    strides, kernels, poolings, kernel = [[1] * dims], [], [0] * dims, [1] * dims
    while True:
        valid = [i for i in range(dims) if current_size[i] >= 2 * MIN_FEATURE_MAP]
        if not valid:
            break
        finest = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / finest < 2 and poolings[i] < MAX_POOLINGS]
        if not valid or (len(valid) == 1 and current_size[valid[0]] < 3 * MIN_FEATURE_MAP):
            break
        for d in range(dims):
            if kernel[d] != 3 and current_spacing[d] / min(current_spacing) < 2:
                kernel[d] = 3
        stride = [1] * dims
        for axis in valid:
            stride[axis] = 2
            poolings[axis] += 1
            current_spacing[axis] *= 2
            current_size[axis] = math.ceil(current_size[axis] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dims)
    rounded = [int(math.ceil(p / 2**n) * 2**n) for p, n in zip(patch, poolings, strict=True)]
    return Topology(patch=rounded, kernels=kernels, strides=strides, poolings=poolings)


def filters_for(topology: Topology, base: int) -> list[int]:
    """Feature maps per stage: ``base`` doubled per stage, capped as nnU-Net (320 in 3D, 512 in 2D)."""
    cap = MAX_FILTERS[len(topology.patch)]
    return [min(base * 2**i, cap) for i in range(len(topology.strides))]


def _param_count(topology: Topology, filters: list[int], in_channels: int) -> int:
    total, previous = 0, in_channels
    for kernel, width in zip(topology.kernels, filters, strict=True):
        k = int(np.prod(kernel))
        total += k * previous * width + k * width * width  # two convs per stage (encoder)
        previous = width
    for width, skip in zip(filters[:-1], filters[1:], strict=True):
        total += 2 * skip * width + 2 * 27 * width * width  # up-conv + two convs (decoder), roughly
    return total


def estimate_step_bytes(topology: Topology, filters: list[int], batch: int, in_channels: int, classes: int) -> int:
    """Memory of one training step (activations kept for backward + weights, grads and AdamW state)."""
    voxels = np.array(topology.patch, dtype=np.float64)
    activations = 0.0
    for stride, width in zip(topology.strides, filters, strict=True):
        voxels = np.ceil(voxels / np.array(stride))
        activations += _TENSORS_PER_STAGE * width * float(np.prod(voxels))
    full = float(np.prod(topology.patch))
    activations += full * (in_channels + 8 * classes)  # input, logits, softmax and the loss's terms
    params = _param_count(topology, filters, in_channels)
    return int(batch * activations * _BYTES + 4 * params * _BYTES)


def _shrink(patch: list[int], median: list[float], topology: Topology) -> list[int] | None:
    """Patch with its relatively largest axis one divisor smaller (None when nothing can shrink)."""
    ratios = [p / max(m, 1.0) for p, m in zip(patch, median, strict=True)]
    for axis in np.argsort(ratios)[::-1]:
        step = topology.divisor[axis]
        if patch[axis] - step >= 2 * MIN_FEATURE_MAP:
            smaller = list(patch)
            smaller[axis] -= step
            return smaller
    return None


def plan_patch_and_batch(
    median_shape: list[float], spacing: list[float], *, base_filters: int, in_channels: int, classes: int,
    memory_bytes: float, dataset_voxels: float,
) -> tuple[Topology, list[int], int, int, list[str]]:
    """(topology, filters, batch, estimated bytes, notes): see the module docstring."""
    dims = len(median_shape)
    patch = [max(int(round(min(m, _INITIAL_CAP[dims]))), 2 * MIN_FEATURE_MAP) for m in median_shape]
    notes: list[str] = []
    topology = pool_and_conv(spacing, patch)
    filters = filters_for(topology, base_filters)
    while estimate_step_bytes(topology, filters, MIN_BATCH, in_channels, classes) > memory_bytes:
        smaller = _shrink(topology.patch, median_shape, topology)
        if smaller is None:
            notes.append("even the smallest patch does not fit the memory budget at batch 2; trying anyway")
            break
        topology = pool_and_conv(spacing, smaller)
        filters = filters_for(topology, base_filters)
    if topology.patch != pool_and_conv(spacing, patch).patch:
        notes.append("patch shrunk below the median shape to fit the memory budget")
    batch = MIN_BATCH
    cap = max(MIN_BATCH, int(MAX_BATCH_SHARE * dataset_voxels / float(np.prod(topology.patch))))
    while batch < cap and estimate_step_bytes(topology, filters, batch + 1, in_channels, classes) <= memory_bytes:
        batch += 1
    return topology, filters, batch, estimate_step_bytes(topology, filters, batch, in_channels, classes), notes
