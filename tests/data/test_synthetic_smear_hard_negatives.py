"""Hard negatives of the synthetic smears: what real smears show that is not a platelet."""

from __future__ import annotations

import numpy as np
import pytest

from medseg_dfl.data.synthetic_smear import make_smear

SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def pairs():
    return [(make_smear(192, seed), make_smear(192, seed, hard_negatives=True)) for seed in SEEDS]


def test_hard_negatives_keep_the_platelets_and_add_overlapping_red_cells(pairs):
    for plain, hard in pairs:
        np.testing.assert_array_equal(hard.instance_class[hard.instances], hard.label)
        assert (plain.instance_class == 3).sum() == (hard.instance_class == 3).sum()  # the same platelets
        assert (plain.instance_class == 2).sum() == (hard.instance_class == 2).sum()
        assert (hard.instance_class == 1).sum() > (plain.instance_class == 1).sum()  # overlap partners
        assert set(np.unique(hard.label)) <= {0, 1, 2, 3}


def test_red_cell_overlaps_and_rims_are_darker_but_stay_red_cells(pairs):
    """The darkest red-cell pixels (lens-shaped overlaps, dark rims) are darker than in the plain field."""
    darker = 0
    for plain, hard in pairs:
        green = [np.percentile(s.image[..., 1][s.label == 1], 1) for s in (plain, hard)]
        darker += green[1] < green[0] - 10
    assert darker == len(pairs)


def test_debris_is_dark_and_unlabelled():
    """Red fragments and stain precipitate on the background stay background (label 0)."""
    found = 0
    for seed in range(6):
        plain, hard = make_smear(192, seed), make_smear(192, seed, hard_negatives=True)
        background = (plain.label == 0) & (hard.label == 0)
        change = np.abs(hard.image.astype(int) - plain.image.astype(int)).sum(-1)
        found += int((change[background] > 60).sum() >= 4)
    assert found >= 4


def test_hard_negatives_are_reproducible_and_scale_with_the_magnification():
    a, b = make_smear(160, 7, hard_negatives=True), make_smear(160, 7, hard_negatives=True)
    np.testing.assert_array_equal(a.image, b.image)
    large = make_smear(320, 7, cell_diameter=50, hard_negatives=True)
    assert (large.instance_class == 1).sum() == (a.instance_class == 1).sum()  # the same layout, zoomed
