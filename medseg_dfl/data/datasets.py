"""MONAI datasets and data loaders for training and validation.

``cfg.data.root`` may be either

- a raw data folder (images/+labels/, Cellpose ``*_masks``, or a Decathlon ``dataset.json``), or
- the OUTPUT_DIR of ``medseg-dfl preprocess``: its ``dataset.json`` lists the *absolute* paths of
  the original files and the train/validation split, ``fingerprint.json`` holds the dataset
  statistics and ``cache/`` the deterministic part of the pipeline. There, :func:`build_datasets`
  loads the fingerprint itself (when none is passed) and, with ``cfg.data.cache == "disk"`` and no
  ``cfg.data.cache_dir``, uses ``<root>/cache`` -- the cache ``preprocess`` warmed.

``cfg.data.cache``: "none" -> ``monai.data.Dataset``; "memory" -> ``CacheDataset``; "disk" ->
``PersistentDataset`` in ``cfg.data.cache_dir`` (required for a raw folder: we never write into the
user's data folder). Disk cache keys hash each item *and* the deterministic transforms, so a config
change (spacing, window, ...) never reuses stale arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset
from monai.data.utils import pickle_hashing
from monai.transforms import Compose, RandomizableTrait, Transform
from torch.utils.data.distributed import DistributedSampler

from medseg_dfl.config import Config
from medseg_dfl.data.fingerprint import FINGERPRINT_NAME, load_fingerprint
from medseg_dfl.data.folds import Split, training_split
from medseg_dfl.io.dataset_json import has_dataset_json
from medseg_dfl.io.pairing import CasePair
from medseg_dfl.transforms import build_train_transforms, build_val_transforms

__all__ = [
    "CACHE_DIRNAME",
    "build_datasets",
    "build_loaders",
    "is_preprocessed",
    "make_dataset",
    "pair_to_item",
    "split_items",
    "warm_disk_cache",
]

CACHE_DIRNAME = "cache"


def is_preprocessed(root: str | Path) -> bool:
    """True for an OUTPUT_DIR of ``preprocess`` (dataset.json + fingerprint.json side by side)."""
    root = Path(root)
    return has_dataset_json(root) and (root / FINGERPRINT_NAME).is_file()


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_mtime_ns}-{stat.st_size}"


def pair_to_item(pair: CasePair) -> dict[str, Any]:
    """The data dict of a ``CasePair``; ``"stamp"`` (mtime + size of the files) makes the disk cache
    key change when a file is replaced in place."""
    item: dict[str, Any] = {"image": pair.image_source, "case_id": str(pair.case_id)}  # channel files: a list
    stamps = [_stamp(Path(f)) for f in pair.image_files]
    if pair.label is not None:
        item["label"] = str(pair.label)
        stamps.append(_stamp(Path(pair.label)))
    item["stamp"] = "/".join(stamps)
    return item


def _cache_dir(cfg: Config, root: Path) -> Path:
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir)
    if is_preprocessed(root):
        return root / CACHE_DIRNAME
    raise ValueError(
        f"data.cache is 'disk' but data.cache_dir is not set; give a cache folder (we never write into "
        f"the data folder {root}) or run `medseg-dfl preprocess` and train on its output folder"
    )


def make_dataset(cfg: Config, items: list[dict], transform: Compose, root: Path) -> Dataset:
    """One MONAI dataset of ``items`` with ``transform``, cached as ``cfg.data.cache`` says."""
    if cfg.data.cache == "none":
        return Dataset(items, transform=transform)
    if cfg.data.cache == "memory":
        workers = max(cfg.data.num_workers, 1)
        return CacheDataset(items, transform=transform, num_workers=workers, progress=False)
    cache_dir = _cache_dir(cfg, root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return PersistentDataset(items, transform=transform, cache_dir=cache_dir, hash_transform=pickle_hashing)


def split_items(cfg: Config, skip: Collection[str] = (), split: Split | None = None) -> tuple[list[dict], list[dict]]:
    """(train, val) data dicts of ``split`` (default: :func:`~medseg_dfl.data.folds.training_split`
    of ``cfg`` without the images in ``skip``, resolved paths of files that failed validation)."""
    split = training_split(cfg, skip) if split is None else split
    return [pair_to_item(p) for p in split.train_pairs], [pair_to_item(p) for p in split.val_pairs]


def _fingerprint_of(cfg: Config, fingerprint: dict | None) -> dict | None:
    if fingerprint is None and is_preprocessed(cfg.data.root):
        return load_fingerprint(cfg.data.root)
    return fingerprint


def build_datasets(
    cfg: Config, fingerprint: dict | None = None, skip: Collection[str] = (), split: Split | None = None
) -> tuple[Dataset, Dataset]:
    """(train, val) MONAI datasets of ``split`` (default: ``cfg``'s split without ``skip``; see the
    module docstring)."""
    train_items, val_items = split_items(cfg, skip, split)
    fingerprint = _fingerprint_of(cfg, fingerprint)
    root = Path(cfg.data.root)
    train_ds = make_dataset(cfg, train_items, build_train_transforms(cfg, fingerprint), root)
    val_ds = make_dataset(cfg, val_items, build_val_transforms(cfg, fingerprint), root)
    return train_ds, val_ds


def _cached_part(pipeline: Compose) -> Compose:
    """The part of ``pipeline`` MONAI caches: everything before the first random transform."""
    first = pipeline.get_index_of_first(lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))
    return pipeline if first is None else Compose(pipeline.transforms[:first])


def warm_disk_cache(
    cfg: Config, fingerprint: dict | None = None, on_item: Callable[[dict], None] | None = None
) -> int:
    """Store the deterministic part of every case in the disk cache :func:`build_datasets` reads
    (``cfg.data.cache`` must be "disk"); existing entries are reused. Returns the number of cases."""
    if cfg.data.cache != "disk":
        raise ValueError(f"warm_disk_cache needs data.cache 'disk', got {cfg.data.cache!r}")
    train_items, val_items = split_items(cfg)
    fingerprint = _fingerprint_of(cfg, fingerprint)
    root = Path(cfg.data.root)
    for items, pipeline in (
        (train_items, build_train_transforms(cfg, fingerprint)),
        (val_items, build_val_transforms(cfg, fingerprint)),
    ):
        dataset = make_dataset(cfg, items, _cached_part(pipeline), root)
        for index, item in enumerate(items):
            dataset[index]  # computes and stores, or finds, the cached arrays
            if on_item is not None:
                on_item(item)
    return len(train_items) + len(val_items)


def build_loaders(
    cfg: Config, train_ds: Dataset, val_ds: Dataset, distributed: bool = False, rank: int = 0
) -> tuple[DataLoader, DataLoader]:
    """MONAI DataLoaders: train shuffled (``DistributedSampler`` when ``distributed``), val batch 1, in order.

    The seeded generator fixes the shuffling and every random transform (MONAI seeds the transforms
    from it with 0 workers, and each worker from it otherwise): the same seed gives the same batches.
    With ``distributed`` call ``loader.sampler.set_epoch(epoch)`` each epoch. ``rank``: this
    process's rank (``DistContext.rank``; passed in, as only ``engine/distributed.py`` reads it).
    """
    seed = cfg.experiment.seed + rank
    generator = torch.Generator().manual_seed(seed)
    workers = cfg.data.num_workers
    sampler = DistributedSampler(train_ds, shuffle=True, seed=cfg.experiment.seed) if distributed else None
    train_loader = DataLoader(
        train_ds, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
        num_workers=workers, generator=generator, drop_last=False,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
    )
    # Validation is not sharded: every rank sees every case (run it on rank 0 only if you like).
    val_loader = DataLoader(
        val_ds, batch_size=1, shuffle=False, num_workers=workers,
        generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
    )
    return train_loader, val_loader
