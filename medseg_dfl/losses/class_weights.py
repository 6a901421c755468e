"""Adaptive class weights (ACW): per-class weights from running pixel frequencies of the targets.

Spec section 2 (after Liu et al., CVPR-W 2020): f_c is a running estimate of class c's pixel
frequency in the training targets (EMA with ``momentum``, or cumulative when ``momentum=None``);
the raw weight is mean_k(f_k) / (f_c + eps), clipped to ``weight_range`` (so a class that has not
been seen cannot explode), then normalised so that the weights average 1.

The running state lives in buffers (``frequencies``, ``counts``, ``num_updates``), so it is saved in
checkpoints; it changes only in training mode, and the per-batch counts are summed over all ranks
when torch.distributed is initialised, so every rank uses the same weights.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["AdaptiveClassWeights"]


class AdaptiveClassWeights(nn.Module):
    """Running class frequencies -> class weights.

    Args:
        num_classes: C; ``None`` = sized on the first update (or by ``load_state_dict``).
        momentum: EMA momentum in [0, 1) (new = momentum * old + (1 - momentum) * batch);
            ``None`` = cumulative frequencies over everything seen.
        weight_range: (low, high) clip of the raw weights, before normalisation.
        eps: added to the frequencies in the denominator.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        momentum: float | None = 0.99,
        weight_range: tuple[float, float] = (0.05, 20.0),
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if momentum is not None and not 0.0 <= momentum < 1.0:
            raise ValueError(f"weight_momentum must be in [0, 1) or None (cumulative), got {momentum}.")
        low, high = weight_range
        if not 0.0 < low <= high:
            raise ValueError(f"weight_range must satisfy 0 < low <= high, got {weight_range}.")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        self.momentum = momentum
        self.weight_range = (float(low), float(high))
        self.eps = eps
        size = 0 if num_classes is None else num_classes
        # Uniform prior until the first batch: no class starts at frequency 0.
        self.register_buffer("frequencies", torch.full((size,), 1.0 / max(size, 1), dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def num_classes(self) -> int:
        return self.frequencies.numel()

    def _resize(self, num_classes: int) -> None:
        device = self.frequencies.device
        self.frequencies = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64, device=device)
        self.counts = torch.zeros(num_classes, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one batch of one-hot (or soft) targets B,C,spatial; ``mask`` B,1,spatial drops pixels.

        Does nothing outside training mode. Under torch.distributed the batch counts are summed
        over all ranks first (a collective: every rank must call it).
        """
        if not self.training:
            return
        y = target.to(torch.float64) if mask is None else target.to(torch.float64) * mask
        self._add_counts(y.sum(dim=[0, *range(2, y.dim())]))

    @torch.no_grad()
    def update_from_labels(self, labels: torch.Tensor, num_classes: int, mask: torch.Tensor | None = None) -> None:
        """As ``update``, from integer labels B,1,spatial (no one-hot tensor needed)."""
        if not self.training:
            return
        flat = labels.reshape(-1) if mask is None else labels.reshape(-1)[mask.reshape(-1) > 0]
        self._add_counts(torch.bincount(flat, minlength=num_classes).to(torch.float64))

    def _add_counts(self, batch_counts: torch.Tensor) -> None:
        num_classes = batch_counts.numel()
        if self.num_classes == 0:
            self._resize(num_classes)
        if num_classes != self.num_classes:
            raise ValueError(f"target has {num_classes} classes, the class weights track {self.num_classes}.")
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_counts, op=dist.ReduceOp.SUM)
        total = batch_counts.sum()
        if total <= 0:
            return
        self.counts += batch_counts.to(self.counts.device)
        batch_freq = (batch_counts / total).to(self.frequencies.device)
        if self.momentum is None:
            self.frequencies.copy_(self.counts / self.counts.sum())
        elif self.num_updates == 0:
            self.frequencies.copy_(batch_freq)
        else:
            self.frequencies.mul_(self.momentum).add_(batch_freq, alpha=1.0 - self.momentum)
        self.num_updates += 1

    def weights(self) -> torch.Tensor:
        """Current weights (C,), float32, average 1; all ones before the first update."""
        if self.num_updates == 0:
            return torch.ones(self.num_classes, device=self.frequencies.device)
        f = self.frequencies
        raw = (f.mean() / (f + self.eps)).clamp(*self.weight_range)
        return (raw / raw.mean()).to(torch.float32)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Lazily sized buffers take the checkpoint's size.
        incoming = state_dict.get(prefix + "frequencies")
        if incoming is not None and incoming.numel() != self.num_classes:
            self._resize(incoming.numel())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, momentum={self.momentum}, weight_range={self.weight_range}"
