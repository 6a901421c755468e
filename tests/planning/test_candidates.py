"""Candidate networks for a time budget: their kwargs, the pure rule, and the plan comment (timings faked)."""

from __future__ import annotations

import math

import pytest
import torch
from planning_data import REPO, write_rgb

from medseg_dfl.config import Config
from medseg_dfl.networks import build_network, check_input_size
from medseg_dfl.planning import candidates, plan_experiment
from medseg_dfl.planning import plan as plan_module
from medseg_dfl.planning.candidates import (
    PLAIN,
    Candidate,
    candidate_networks,
    choose_candidate,
    pick_network,
    with_candidate,
)
from medseg_dfl.planning.timing import StepTiming

VOLUMES = REPO / "sample_data" / "volumes"
NAMES = ["dynunet", "dynunet-resenc", "dynunet-narrow", "dynunet-wide", "unet-strided"]
# Fake network step seconds by candidate (how the fake timer recognises each is in _fake_step).
FAKE_S = {"dynunet": 0.6, "dynunet-resenc": 0.81, "dynunet-narrow": 0.3, "dynunet-wide": 1.5, "unet-strided": 0.17}


@pytest.fixture(scope="module")
def planned_3d() -> Config:
    """The plan of the synthetic CT volumes: patch 64x64x48, strides [1,1,1],[2,2,1],[2,2,2]x3 (anisotropic)."""
    return plan_experiment(VOLUMES).config


def test_candidates_of_a_3d_plan(planned_3d):
    kwargs = planned_3d.network.kwargs
    by_name = {c.name: c for c in candidate_networks(planned_3d)}
    assert list(by_name) == NAMES
    assert by_name["dynunet"].kwargs == kwargs and by_name["dynunet"].network == "DynUNet"
    assert by_name["dynunet-resenc"].kwargs == {**kwargs, "res_block": True}
    assert kwargs["filters"] == [16, 32, 64, 128, 256]
    assert by_name["dynunet-narrow"].kwargs["filters"] == [8, 16, 32, 64, 128]
    assert by_name["dynunet-wide"].kwargs["filters"] == [32, 64, 128, 256, 320]  # nnU-Net's 3D cap
    unet = by_name["unet-strided"]
    assert unet.network == "UNet"
    assert unet.kwargs == {"channels": [16, 32, 64, 128, 256], "strides": [[2, 2, 1], 2, 2, 2], "num_res_units": 2}


def test_every_candidate_divides_the_patch_and_builds(planned_3d):
    patch = planned_3d.transforms.patch_size
    assert patch == [64, 64, 48]
    for candidate in candidate_networks(planned_3d):
        cfg = with_candidate(planned_3d, candidate.name)
        assert cfg.network.name == candidate.network
        check_input_size(cfg)  # the UNet's strides downsample as the DynUNet's: 16x16x8
        with torch.no_grad():
            out = build_network(cfg).eval()(torch.randn(1, cfg.data.in_channels, *patch))
        assert tuple(out.shape) == (1, cfg.data.num_classes, *patch), candidate.name


def test_candidates_need_a_planned_dynunet(planned_3d):
    with pytest.raises(ValueError, match="planned DynUNet"):
        candidate_networks(with_candidate(planned_3d, "unet-strided"))
    with pytest.raises(ValueError, match="no network candidate 'vit'"):
        with_candidate(planned_3d, "vit")


def test_rule_keeps_dynunet_on_a_gpu_whatever_the_times(monkeypatch):
    monkeypatch.setattr(candidates, "CPU_PREFERENCE", ("unet-strided",))
    name, why = pick_network({"dynunet": 10.0, "unet-strided": 0.01}, 2, 1.0, "cuda")
    assert (name, why) == ("dynunet", "a GPU budget: nnU-Net's choice stays")


def test_rule_keeps_dynunet_on_a_cpu_budget_with_enough_patches(monkeypatch):
    monkeypatch.setattr(candidates, "CPU_PREFERENCE", ("unet-strided",))
    monkeypatch.setattr(candidates, "CPU_MIN_PATCHES", 10_000)
    # 0.6 s per step, batch 2, 60 min: 12,000 patches >= 10,000
    name, why = pick_network({"dynunet": 0.6, "unet-strided": 0.1}, 2, 60.0, "cpu")
    assert name == "dynunet" and "~12,000 patches in 60 min, >= 10,000" in why
    # GPU-like numbers keep nnU-Net's choice whatever CPU_MIN_PATCHES says
    monkeypatch.setattr(candidates, "CPU_MIN_PATCHES", 10**9)
    name, why = pick_network({"dynunet": 0.01, "unet-strided": 0.001}, 2, 60.0, "cpu")
    assert name == "dynunet" and ">= 500,000 (nnU-Net's 1000 epochs x 250 steps x batch 2)" in why


def test_rule_below_the_threshold_takes_the_first_preferred_candidate_not_costlier(monkeypatch):
    steps = {"dynunet": 0.6, "unet-strided": 0.9, "dynunet-narrow": 0.3, "dynunet-resenc": 0.5}
    assert pick_network(steps, 2, 5.0, "cpu")[0] == PLAIN  # shipped default: no preference, DynUNet stays
    monkeypatch.setattr(candidates, "CPU_PREFERENCE", ("unet-strided", "dynunet-resenc", "dynunet-narrow"))
    name, why = pick_network(steps, 2, 5.0, "cpu")  # 1,000 patches < 100,000; the UNet costs 1.5x: skipped
    assert name == "dynunet-resenc"
    assert "~1,000 patches in 5 min, < 100,000: dynunet-resenc is the first" in why and "(0.83x: ~1,200 patches)" in why
    monkeypatch.setattr(candidates, "MAX_SLOWDOWN", 1.6)
    assert pick_network(steps, 2, 5.0, "cpu")[0] == "unet-strided"
    monkeypatch.setattr(candidates, "CPU_PREFERENCE", ("dynunet-wide",))  # not timed: nothing to choose
    assert pick_network(steps, 2, 5.0, "cpu")[0] == PLAIN


def test_choose_candidate_comment_lists_every_measured_step():
    timed = [(Candidate(n, n, "DynUNet", {}), StepTiming(FAKE_S[n], 0.01, "cpu")) for n in NAMES]
    chosen, why = choose_candidate(timed, 5.0, "cpu", patches_per_step=2)
    assert chosen.name == "dynunet"
    assert why.startswith(
        "timed on cpu (2 patches per step): dynunet 0.60 s, dynunet-resenc 0.81 s, dynunet-narrow 0.30 s, "
        "dynunet-wide 1.50 s, unet-strided 0.17 s per step (+ augmentation 10 ms per patch); chose dynunet because "
        "the plain DynUNet sees ~968 patches in 5 min"  # 300 s / (0.6 + 2 x 0.01) s x 2
    )


def _fake_step(calls: list):
    def fake(cfg: Config, device: torch.device, steps: int = 3) -> float:
        kwargs = cfg.network.kwargs
        if cfg.network.name == "UNet":
            name = "unet-strided"
        elif kwargs.get("res_block"):
            name = "dynunet-resenc"
        else:
            name = {8: "dynunet-narrow", 32: "dynunet-wide"}.get(kwargs["filters"][0], "dynunet")
        calls.append((name, cfg.transforms.patch_size, cfg.train.batch_size))
        return FAKE_S[name]
    return fake


@pytest.fixture
def fake_timer(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(candidates, "time_training_step", _fake_step(calls))
    monkeypatch.setattr(plan_module, "time_training_step", _fake_step(calls))
    monkeypatch.setattr(plan_module, "time_training_loop", lambda cfg, device: None)  # the isolated step only
    return calls


def test_plan_comment_lists_the_timed_candidates_and_keeps_dynunet(tmp_path, fake_timer):
    plan = plan_experiment(write_rgb(tmp_path / "w", n=5, size=32), time_budget_min=10.0)
    assert [c[0] for c in fake_timer] == NAMES  # each timed once; 10 min fit >= 250 steps: no re-timing
    assert plan.config.network.name == "DynUNet" and plan.config.network.kwargs["res_block"] is False
    why = plan.reasons["network.name"]
    assert "dynunet 0.60 s, dynunet-resenc 0.81 s, dynunet-narrow 0.30 s, dynunet-wide 1.50 s, unet-strided 0.17 s" in why
    assert "chose dynunet because" in why and "no cheaper candidate won on both" in why
    assert "network 0.60 s" in plan.reasons["train.epochs"]  # the budget fitted to the chosen network's step


def test_plan_takes_the_preferred_candidate_and_re_derives_it_after_a_smaller_patch(tmp_path, fake_timer, monkeypatch):
    monkeypatch.setattr(candidates, "CPU_PREFERENCE", ("unet-strided",))
    data = write_rgb(tmp_path / "w", n=5, size=64)
    planned = plan_experiment(data).config  # no budget: nothing timed, DynUNet
    assert planned.network.name == "DynUNet" and not fake_timer
    plan = plan_experiment(data, time_budget_min=0.25)  # 15 s / 0.17 s: ~88 steps < 250, a smaller patch
    cfg = plan.config
    assert "chose unet-strided because" in plan.reasons["network.name"]
    assert cfg.network.name == "UNet" and cfg.network.kwargs["num_res_units"] == 2
    assert cfg.transforms.patch_size != planned.transforms.patch_size  # made smaller for the budget
    assert fake_timer[-1][:2] == ("unet-strided", cfg.transforms.patch_size)  # re-timed: the smaller UNet
    check_input_size(cfg)
    factor = math.prod(s if isinstance(s, int) else s[0] for s in cfg.network.kwargs["strides"])
    assert all(p % factor == 0 for p in cfg.transforms.patch_size)
    assert "network.kwargs.kernel_size" not in plan.reasons and "network.kwargs.channels" in plan.reasons
    build_network(cfg)


@pytest.mark.parametrize("overrides, candidates_on", [(["network.kwargs.res_block=true"], True), ([], False)])
def test_a_network_set_by_the_user_or_no_candidates_times_only_that_one(tmp_path, fake_timer, monkeypatch,
                                                                        overrides, candidates_on):
    monkeypatch.setattr(candidates, "CPU_PREFERENCE", ("unet-strided",))
    plan = plan_experiment(write_rgb(tmp_path / "w", n=5, size=32), time_budget_min=10.0, overrides=overrides,
                           network_candidates=candidates_on)
    assert [c[0] for c in fake_timer] == (["dynunet-resenc"] if overrides else ["dynunet"])
    assert plan.config.network.name == "DynUNet" and plan.config.network.kwargs["res_block"] is bool(overrides)
    assert "timed on" not in plan.reasons["network.name"]


def test_plan_command_no_network_candidates_times_the_dynunet_only(tmp_path, fake_timer):
    from typer.testing import CliRunner

    from medseg_dfl.cli.main import app
    from medseg_dfl.config import load_config

    out = tmp_path / "p.yaml"
    args = ["plan", str(write_rgb(tmp_path / "w", n=5, size=32)), "-o", str(out), "--time-budget", "10",
            "--no-network-candidates"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [c[0] for c in fake_timer] == ["dynunet"] and load_config(out).network.name == "DynUNet"
