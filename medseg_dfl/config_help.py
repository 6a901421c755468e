"""What each config key does, in one line: the one owner of key help.

``plan`` writes it beside every key of the YAML it makes (``planning/writer.py``), the shipped
configs carry it, and ``tests/test_config.py`` checks that every key has a line and no line
outlives its key.
"""

from __future__ import annotations

__all__ = ["KEY_HELP"]

# One entry per key of the dataclasses in medseg_dfl/config.py (sections optional). Reasons *why* a
# value was chosen are the planner's (``Plan.reasons``), not these.
KEY_HELP: dict[str, str] = {
    "experiment.name": "default run directory: runs/<name>",
    "experiment.seed": "seeds network init, data split, shuffling and augmentation",
    "data.root": "the data folder (images/+labels/, *_masks files or dataset.json), relative to where you train",
    "data.spatial_dims": "2 or 3",
    "data.modality": "microscopy | ct | mr (chooses the auto intensity normalisation)",
    "data.in_channels": "image channels (3 for RGB)",
    "data.class_names": "one name per label value, background first",
    "data.val_fraction": "used only when the folder has no dataset.json 'validation' list",
    "data.fold": "cross-validation: validate on this fold of data.folds; null = the dataset.json list / val_fraction",
    "data.folds": "number of cross-validation folds (used with data.fold)",
    "data.all_cases": "train on every case and validate on none (best.pt = the last epoch); not with data.fold",
    "data.cache": "none | memory | disk: where loaded, transformed cases are kept between epochs",
    "data.cache_dir": "required for cache: disk on a raw folder",
    "data.num_workers": "data loader processes; 0 = load in the training process",
    "data.prefetch": "num_workers 0: next batch drawn in a thread during the step (off if the cores are shared)",
    "transforms.patch_size": "training patch, in the loaded image's axis order",
    "transforms.num_samples": "patches drawn per image per step (RandCropByLabelClassesd)",
    "transforms.class_ratios": "relative probability of centring a patch on each class (one per class); null = uniform",
    "transforms.target_spacing": "3D only: resample to this spacing (mm); null = the data set's median spacing",
    "transforms.intensity": (
        "auto: microscopy -> per-channel z-score, ct -> window, mr -> z-score; zscore_nonzero: per-case z-score "
        "over non-zero voxels; rgb_0_1: 8-bit colour / 255; ct_zscore: clip to window, then z-score with "
        "intensity_mean/intensity_std (nnU-Net CT)"
    ),
    "transforms.window": "[low, high] intensity window (window and ct_zscore modes)",
    "transforms.intensity_mean": "ct_zscore: the data set's foreground mean per channel",
    "transforms.intensity_std": "ct_zscore: the data set's foreground std per channel",
    "transforms.augment": "random augmentation of training patches",
    "transforms.augment.flip": "random flips (along transforms.augment.flip_axes)",
    "transforms.augment.flip_axes": "axes random flips and infer --tta mirror; null = every axis",
    "transforms.augment.rot90": "random 90-degree rotations in the first plane (square there only)",
    "transforms.augment.affine": "random rotation + scaling (strength: affine_prob, rotate_degrees, scale_fraction)",
    "transforms.augment.affine_prob": "probability of the affine step per patch",
    "transforms.augment.rotate_degrees": "largest rotation, each axis (3D) or the plane (2D), in degrees",
    "transforms.augment.scale_fraction": "scales drawn from 1 - f to 1 + f per axis",
    "transforms.augment.color_jitter": "random contrast and intensity shifts",
    "transforms.augment.noise": "Gaussian noise",
    "transforms.augment.stain": (
        "RGB microscopy: HED stain jitter, brightness, gamma, blur and scale jitter of the whole image before "
        "its intensity normalisation (medseg_dfl.stain)"
    ),
    "transforms.augment.stain_sigma": "stain jitter strength: each HED optical density scaled by U(1 - s, 1 + s)",
    "transforms.augment.low_resolution": (
        "nnU-Net's low-resolution simulation (down- and upsampling, zoom 0.5-1, p 0.25) and gamma (p 0.3, "
        "inverted image p 0.1) of the image"
    ),
    "network.name": "a MONAI network (UNet, BasicUNet, AttentionUnet, SegResNet, DynUNet, UNETR, SwinUNETR)",
    "network.kwargs": "keyword arguments of the MONAI network",
    "loss.name": "a loss of medseg_dfl.losses.registry (dfl, dice-dfl, ce, dice-ce, ...)",
    "loss.kwargs": "keyword arguments of the loss (e.g. gamma: 2.0)",
    "optim.name": "adamw | sgd",
    "optim.lr": "learning rate (peak, after any warm-up)",
    "optim.weight_decay": "decoupled (AdamW) weight decay",
    "optim.momentum": "SGD only",
    "optim.scheduler": "cosine | poly | none (stepped once per epoch)",
    "optim.warmup_epochs": "linear warm-up epochs before the schedule",
    "optim.poly_power": "poly only",
    "optim.min_lr": "floor of cosine/poly",
    "optim.grad_clip": "max gradient norm; null = no clipping",
    "train.epochs": "training epochs",
    "train.batch_size": "images per step (each gives transforms.num_samples patches)",
    "train.steps_per_epoch": "null = one pass over the training cases",
    "train.val_every": "validate every N epochs (and always after the last)",
    "train.amp": "mixed precision: float16 on CUDA, bfloat16 on a CPU with AMX/AVX512-BF16, else float32",
    "train.compile": "torch.compile the network (compile time at every start)",
    "train.ema_decay": "weights averaged over steps (0.99: about the last 100 steps) for validation, checkpoints and inference; null: off",
    "train.device": "auto | cpu | cuda (--device overrides)",
    "train.deterministic": "deterministic cuDNN kernels (CPU runs are always reproducible)",
    "inference.roi_size": "sliding-window size; null = transforms.patch_size",
    "inference.sw_batch_size": "windows per network call",
    "inference.overlap": "fraction of overlap between sliding windows, in [0, 1)",
    "inference.blend_mode": "gaussian | constant",
}
