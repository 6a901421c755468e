"""Fixtures of the planning tests; the data builders live in planning_data.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from planning_data import HIPPOCAMPUS


@pytest.fixture
def hippocampus() -> Path:
    if not (HIPPOCAMPUS / "dataset.json").is_file():
        pytest.skip(f"real data not present: {HIPPOCAMPUS} (a fresh clone has no ../shared)")
    return HIPPOCAMPUS
