"""Instances from semantic masks: touching red cells split, white-cell lobes merged, platelets kept."""

from __future__ import annotations

import numpy as np
import pytest

from medseg_dfl.cells.instances import cell_kind, label_instances
from medseg_dfl.data.synthetic_smear import SMEAR_CLASSES, make_smear

MIN_VISIBLE = 0.2  # a red cell counts when at least this fraction of its area is in view (as InstanceParams.min_rbc)


def truth_counts(smear) -> dict[str, int]:
    """The generator's cells, counting a red cell when enough of it is visible."""
    area = np.pi * smear.cell_diameter**2 / 4
    visible = np.bincount(smear.instances.ravel(), minlength=smear.instance_class.size)
    counts = {}
    for index, name in enumerate(SMEAR_CLASSES[1:], start=1):
        ids = np.nonzero(smear.instance_class == index)[0]
        counts[name] = int((visible[ids] >= (MIN_VISIBLE * area if name == "rbc" else 1)).sum())
    return counts


def test_red_cells_within_3_percent_and_white_cells_platelets_exact_on_touching_smears():
    found_rbc = true_rbc = 0
    exact_wbc = exact_platelets = 0
    seeds = range(20)
    for seed in seeds:
        smear = make_smear(256, seed)
        counts = label_instances(smear.label, SMEAR_CLASSES, smear.cell_diameter).counts()
        truth = truth_counts(smear)
        found_rbc += counts["rbc"]
        true_rbc += truth["rbc"]
        assert abs(counts["rbc"] - truth["rbc"]) <= 0.08 * truth["rbc"], (seed, counts, truth)
        exact_wbc += counts["wbc"] == truth["wbc"]
        exact_platelets += counts["platelet"] == truth["platelet"]
    assert abs(found_rbc - true_rbc) <= 0.03 * true_rbc, (found_rbc, true_rbc)
    assert exact_wbc >= 0.95 * len(seeds)
    # Measured 20 of 20 since the generator keeps platelets apart (18 of 20 before: two that
    # overlapped by chance were one blob); the target is >= 95 %.
    assert exact_platelets >= 0.95 * len(seeds)


@pytest.mark.parametrize("seed", [2, 7])
def test_same_smear_at_three_magnifications_gives_the_same_counts(seed):
    counts = []
    for zoom in (1.0, 2.0, 3.6):  # red cells 25, 50 and 90 px across
        smear = make_smear(round(160 * zoom), seed, cell_diameter=25 * zoom)
        counts.append(label_instances(smear.label, SMEAR_CLASSES, smear.cell_diameter).counts())
    for other in counts[1:]:
        assert other["wbc"] == counts[0]["wbc"] and other["platelet"] == counts[0]["platelet"]
        assert abs(other["rbc"] - counts[0]["rbc"]) <= max(1, 0.05 * counts[0]["rbc"]), counts


def test_white_cell_lobes_are_one_cell_and_small_specks_are_dropped():
    mask = np.zeros((100, 100), np.uint8)
    for cy, cx in [(40, 40), (40, 54), (53, 47)]:  # three nucleus lobes 2-4 px apart
        yy, xx = np.ogrid[:100, :100]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 49] = 2
    mask[90, 90] = 2  # one stray pixel of "white cell"
    mask[80:83, 10:13] = 3  # a platelet
    cells = label_instances(mask, SMEAR_CLASSES, cell_diameter=25)
    assert cells.counts() == {"rbc": 0, "wbc": 1, "platelet": 1}
    assert cells.labels[40, 40] == cells.labels[53, 47] != 0 and cells.labels[90, 90] == 0


def test_two_overlapping_discs_become_two_red_cells_with_a_pale_centre_filled():
    yy, xx = np.ogrid[:80, :120]
    mask = np.zeros((80, 120), np.uint8)
    mask[((yy - 40) ** 2 + (xx - 40) ** 2 <= 15**2) | ((yy - 40) ** 2 + (xx - 66) ** 2 <= 15**2)] = 1
    mask[(yy - 40) ** 2 + (xx - 40) ** 2 <= 4**2] = 0  # pale centre predicted as background
    cells = label_instances(mask, SMEAR_CLASSES, cell_diameter=30)
    assert cells.counts()["rbc"] == 2
    assert cells.labels[40, 40] != 0 and cells.labels[40, 40] != cells.labels[40, 70]


def test_class_kinds_and_bad_input():
    assert [cell_kind(n) for n in ("RBC", "white_blood_cell", "Platelets", "nucleus")] == [
        "rbc", "wbc", "platelet", "other"]  # fmt: skip
    with pytest.raises(ValueError, match="label 5"):
        label_instances(np.full((8, 8), 5), SMEAR_CLASSES, 25)
    with pytest.raises(ValueError, match="positive"):
        label_instances(np.zeros((8, 8)), SMEAR_CLASSES, 0)


def test_generator_instance_map_matches_its_labels_and_variety_adds_platelet_clumps():
    plain, varied = make_smear(256, 11), make_smear(256, 11, variety=True)
    for smear in (plain, varied):
        np.testing.assert_array_equal(smear.instance_class[smear.instances], smear.label)
    assert (varied.instance_class == 3).sum() > (plain.instance_class == 3).sum()
    assert (varied.instance_class == 1).sum() == (plain.instance_class == 1).sum()  # same red cells


def test_platelet_slivers_along_cell_edges_are_dropped_at_high_magnification():
    mask = np.zeros((200, 200), np.uint8)
    yy, xx = np.ogrid[:200, :200]
    mask[(yy - 50) ** 2 + (xx - 50) ** 2 <= 12**2] = 3  # a platelet 24 px across (red cells 100 px)
    mask[150:152, 20:90] = 3  # a 2 px wide sliver
    cells = label_instances(mask, SMEAR_CLASSES, cell_diameter=100)
    assert cells.counts()["platelet"] == 1 and cells.labels[50, 50] != 0 and cells.labels[150, 50] == 0


def test_white_cells_without_a_dark_nucleus_are_dropped():
    from medseg_dfl.cells.instances import drop_white_cells_without_nucleus

    mask = np.zeros((100, 160), np.uint8)
    yy, xx = np.ogrid[:100, :160]
    image = np.full((100, 160, 3), 235, np.uint8)
    for cx in (40, 120):
        mask[(yy - 50) ** 2 + (xx - cx) ** 2 <= 20**2] = 2
        image[(yy - 50) ** 2 + (xx - cx) ** 2 <= 20**2] = (200, 170, 210)  # pale lilac cytoplasm
    image[(yy - 50) ** 2 + (xx - 40) ** 2 <= 10**2] = (90, 40, 140)  # a purple nucleus in the left one
    cells = label_instances(mask, SMEAR_CLASSES, cell_diameter=25)
    assert cells.counts()["wbc"] == 2
    kept = drop_white_cells_without_nucleus(cells, image)
    assert kept.counts()["wbc"] == 1 and kept.labels[50, 40] == 1 and kept.labels[50, 120] == 0


def test_synthetic_white_cells_all_have_a_nucleus():
    from medseg_dfl.cells.instances import drop_white_cells_without_nucleus

    for seed in range(6):
        smear = make_smear(256, seed, variety=True)
        cells = label_instances(smear.label, SMEAR_CLASSES, smear.cell_diameter)
        assert drop_white_cells_without_nucleus(cells, smear.image).counts() == cells.counts()


def _discs(centres: list[tuple[float, float]], radius: float, shape=(120, 120)) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, np.int32)
    for r, c in centres:
        mask[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = 3  # platelet
    return mask


def test_platelet_clumps_are_split_at_necks_single_platelets_stay_whole():
    from medseg_dfl.cells.instances import InstanceParams

    diameter, radius = 80.0, 12.0  # platelets 0.3 of a red cell across, 0.09 of its area each
    four = _discs([(40, 40), (40, 62), (62, 40), (62, 62)], radius)  # a clump of 0.36 red-cell areas
    pair = _discs([(50, 40), (50, 62)], radius)  # 0.18 areas: below the default clump size
    assert label_instances(four, SMEAR_CLASSES, diameter).counts()["platelet"] == 4
    assert label_instances(pair, SMEAR_CLASSES, diameter).counts()["platelet"] == 1
    # The old default (0.03 red-cell areas) examined every platelet and cut this pair, and real
    # irregular platelets with it (docs/results/bccd/README.md).
    assert label_instances(pair, SMEAR_CLASSES, diameter, InstanceParams(clump=0.03)).counts()["platelet"] == 2
