"""Worker for the 2-process gloo test (its own module: it imports torch only, not MONAI, to start fast)."""

import torch
import torch.distributed as dist

from medseg_dfl.losses.class_weights import AdaptiveClassWeights

MOMENTUM = 0.8
STEPS = 3
FRACTIONS = ((0.9, 0.09, 0.01), (0.2, 0.2, 0.6))  # rank 0 mostly background, rank 1 mostly class 2


def imbalanced_batch(seed: int, fractions, size=(2, 20, 20)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(torch.tensor(fractions), size[0] * size[1] * size[2], True, generator=g)
    labels = labels.reshape(size[0], 1, *size[1:])
    return torch.zeros(size[0], len(fractions), *size[1:]).scatter_(1, labels, 1.0)


def gloo_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        acw = AdaptiveClassWeights(3, momentum=MOMENTUM)
        for step in range(STEPS):
            acw.update(imbalanced_batch(10 * step + rank, FRACTIONS[rank]))
        torch.save(acw.weights(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
