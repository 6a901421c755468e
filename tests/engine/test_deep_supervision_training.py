"""network.kwargs.deep_supervision: DynUNet's heads train through the real training step; validation,
inference and the exports see the one eval-mode output."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medseg_dfl.bundle import export_bundle
from medseg_dfl.bundle.portable import export_portable
from medseg_dfl.config import config_from_dict
from medseg_dfl.engine.components import Components
from medseg_dfl.engine.distributed import DistContext
from medseg_dfl.engine.inference import InferenceOptions, predict_folder
from medseg_dfl.engine.optim import build_optimizer, build_scheduler, trainable_parameters
from medseg_dfl.engine.training import _train_step, train
from medseg_dfl.losses.deep_supervision import supervised_loss
from medseg_dfl.losses.registry import loss_from_config
from medseg_dfl.networks import build_network
from medseg_dfl.planning.timing import time_training_step

# DynUNet with 3 stages (2 upsamplings): deep_supr_num 1 is the most MONAI allows.
DYNUNET_2D = {"kernel_size": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]], "upsample_kernel_size": [[2, 2]] * 2,
              "filters": [4, 8, 16], "deep_supervision": True, "deep_supr_num": 1}  # fmt: skip


def _tiny_3d():
    kwargs = {"kernel_size": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
              "upsample_kernel_size": [[2, 2, 2]] * 2, "filters": [4, 8, 16], "deep_supervision": True,
              "deep_supr_num": 1}  # fmt: skip
    return config_from_dict({
        "data": {"spatial_dims": 3, "modality": "mr", "in_channels": 1, "class_names": ["bg", "a", "b"]},
        "transforms": {"patch_size": [8, 8, 8]},
        "network": {"name": "DynUNet", "kwargs": kwargs},
        "loss": {"name": "dice-ce"},
        "optim": {"lr": 0.01},
    })  # fmt: skip


def test_one_training_step_trains_every_head_and_eval_gives_one_output():
    cfg = _tiny_3d()
    torch.manual_seed(0)
    model, loss_fn = build_network(cfg), loss_from_config(cfg)
    optimizer = build_optimizer(cfg, trainable_parameters(model, loss_fn))
    parts = Components(model=model, forward=model, loss_fn=loss_fn, optimizer=optimizer,
                       scheduler=build_scheduler(cfg, optimizer), scaler=torch.amp.GradScaler("cuda", enabled=False),
                       train_loader=None, val_loader=None, device=torch.device("cpu"), ctx=DistContext(),
                       amp=False, fingerprint=None)  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 1, 8, 8, 8, generator=gen), "label": torch.randint(0, 3, (2, 1, 8, 8, 8), generator=gen)}
    model.train()
    stack = model(batch["image"])
    assert stack.shape == (2, 2, 3, 8, 8, 8)  # (B, 1 + deep_supr_num, C, *spatial)
    before = copy.deepcopy(model.state_dict())
    expected = supervised_loss(copy.deepcopy(loss_fn), stack, batch["label"]).item()
    loss = _train_step(parts, cfg, batch)
    assert loss.item() == pytest.approx(expected, rel=1e-5)  # the weighted loss over both heads
    after = model.state_dict()
    changed = {k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])}
    assert any(k.startswith("deep_supervision_heads.") for k in changed)  # the extra head got a gradient
    assert any(k.startswith("output_block.") for k in changed)
    model.eval()
    with torch.no_grad():
        assert model(batch["image"]).shape == (2, 3, 8, 8, 8)


def test_plan_timing_steps_a_deep_supervision_network():
    assert time_training_step(_tiny_3d(), torch.device("cpu"), steps=1) > 0  # the stacked heads reach the loss


@pytest.fixture(scope="module")
def smears(tmp_path_factory) -> Path:
    from medseg_dfl.data.synthetic import generate_sample_data

    root = tmp_path_factory.mktemp("smears")
    generate_sample_data(root, "blood-smear", count=5, size=48, seed=0)  # 4 train, 1 val
    return root


def test_deep_supervision_run_trains_infers_and_exports(smears, tmp_path):
    cfg = config_from_dict({
        "experiment": {"name": "ds", "seed": 0},
        "data": {"root": str(smears), "cache": "memory"},
        "transforms": {"patch_size": [32, 32], "num_samples": 1, "augment": {"affine": False, "low_resolution": True}},
        "network": {"name": "DynUNet", "kwargs": DYNUNET_2D},
        "optim": {"lr": 0.01},
        "train": {"epochs": 1, "batch_size": 2},
    })  # fmt: skip
    result = train(cfg, tmp_path / "run", device="cpu")
    assert result.epochs_run == 1 and np.isfinite(result.metrics[0]["train_loss"])
    assert np.isfinite(result.metrics[0]["val_loss"]) and 0.0 <= result.best_metric <= 1.0  # validation: one output
    images = sorted((smears / "images").glob("*.png"))
    summary = predict_folder(tmp_path / "run" / "best.pt", smears / "images", tmp_path / "pred", InferenceOptions(device="cpu"))
    assert summary.ok and len(summary.written) == 5
    with Image.open(tmp_path / "pred" / images[0].name) as mask, Image.open(images[0]) as source:
        assert mask.size == source.size and set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}
    # The exports build the network from the same kwargs (heads included) and run it in eval mode.
    portable = export_portable(tmp_path / "run", tmp_path / "portable", formats=["torchscript"])
    assert portable.max_abs_diff["torchscript"] <= 1e-4
    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle")  # checks the network_def takes the weights
    network_def = json.loads((bundle / "configs" / "inference.json").read_text())["network_def"]
    assert network_def["deep_supervision"] is True and network_def["deep_supr_num"] == 1
