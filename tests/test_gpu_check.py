"""benchmarks/gpu_check.py without a GPU: its parsing of a run's files, the stage launcher's peak
memory record, and the loss timings and table on CPU at a tiny shape (issue 21, item 5)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_seconds_is_the_median_after_the_first_epoch(gpu_check, tmp_path):
    log = tmp_path / "train.log"
    line = ("2026-01-01 10:00:00,000 INFO epoch {e} train_loss=0.5 val_loss=0.4 mean_fg_dice=0.7 background=0.99 "
            "lr=0.003 steps={s} seconds={t} data_wait=0.1s")  # fmt: skip
    rows = [(1, 10, 50.0), (2, 10, 3.0), (3, 10, 2.0), (4, 10, 4.0)]
    log.write_text("2026 INFO resumed from last.pt after epoch 1\n"
                   + "\n".join(line.format(e=e, s=s, t=t) for e, s, t in rows), encoding="utf-8")  # fmt: skip
    assert gpu_check.step_seconds(log) == (0.3, 4)  # 3.0 s / 10 steps; the 50 s warm-up epoch left out


def test_best_val_dice_and_evaluate_summary(gpu_check, tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,mean_fg_dice\n1,nan\n2,0.61\n3,0.58\n", encoding="utf-8")
    assert gpu_check.best_val_dice(metrics) == pytest.approx(0.61)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"summary": {"Anterior": {"dice": {"mean": 0.8, "std": 0.1}},
                                              "Posterior": {"dice": {"mean": 0.75, "std": 0.1}}}}))  # fmt: skip
    assert gpu_check.mean_dice(report) == {"Anterior": 0.8, "Posterior": 0.75}


def test_stage_launcher_records_the_peak_memory_of_its_process(tmp_path):
    peak = tmp_path / "peak.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--stage", str(peak), "--", "--help"],
                          capture_output=True, encoding="utf-8", errors="replace", cwd=SCRIPT.parents[1])  # fmt: skip
    assert done.returncode == 0 and "train" in done.stdout
    record = json.loads(peak.read_text(encoding="utf-8"))
    assert record["cuda_mib"] is None and record["rss_mib"] > 10


def test_loss_timings_and_table_on_cpu(gpu_check, capsys):
    rows = gpu_check.loss_times("cpu", [(1, 3, 8, 8)], repeats=1)
    assert [row["shape"] for row in rows] == [(1, 3, 8, 8)]
    assert all(rows[0][name] > 0 for name in ("cross_entropy", "monai_focal", "dfl"))
    assert math.isnan(rows[0]["peak_dfl"])  # no CUDA peak on a CPU
    stages = {"train (amp)": {"seconds": 12.0, "step_s": 0.25, "dice": "val best 0.700 (2 ep)", "rss_mib": 900.0}}
    gpu_check.print_table(stages, rows, "cpu")
    out = capsys.readouterr().out
    train_line = next(line for line in out.splitlines() if line.startswith("train (amp)"))
    assert train_line.split()[2:5] == ["12.0", "0.250", "val"] and train_line.endswith("900")
    loss_line = next(line for line in out.splitlines() if line.startswith("(1, 3, 8, 8)"))
    ratio = rows[0]["dfl"] / rows[0]["cross_entropy"]
    assert f"{ratio:.2f}" in loss_line.split()
