"""The one post-processing owner: softmax, background fill + argmax, keep-largest, by hand-checkable values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg_dfl.bundle import transforms as bundle_transforms
from medseg_dfl.engine import inference, postprocess
from medseg_dfl.engine.postprocess import (
    background_fill_and_argmax_,
    keep_largest_components,
    label_dtype,
    labels_from_probabilities,
    largest_component_classes,
    softmax_,
)


def test_softmax_in_place_matches_torch():
    logits = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]], [[-1.0, 1.0]]])
    expected = torch.softmax(logits, dim=0)
    out = softmax_(logits)
    assert out.data_ptr() == logits.data_ptr()
    torch.testing.assert_close(out, expected)
    np.testing.assert_allclose(out[:, 0, 1].numpy(), [1 / 3] * 3, rtol=1e-6)


def test_background_fill_gives_class_zero_the_missing_mass_and_ties_go_to_the_lower_class():
    # pixel 0: cropped away (all zero) -> background; pixel 1: tie 0.5/0.5 between 1 and 2 -> 1;
    # pixel 2: 0.3 missing, class 2 has 0.4 > 0.3 -> 2; pixel 3: 0.6 missing, beats class 1's 0.4 -> 0
    probs = np.array([[[0.0, 0.0, 0.0, 0.0]], [[0.0, 0.5, 0.3, 0.4]], [[0.0, 0.5, 0.4, 0.0]]], np.float32)
    mask = background_fill_and_argmax_(probs, np.uint8, slabs=1)
    np.testing.assert_array_equal(mask, [[0, 1, 2, 0]])
    np.testing.assert_allclose(probs[0], [[1.0, 0.0, 0.3, 0.6]], atol=1e-6)  # filled in place
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)


def test_slabs_do_not_change_the_result():
    probs = np.random.default_rng(0).random((4, 13, 7)).astype(np.float32)
    one = background_fill_and_argmax_(probs.copy(), np.uint8, slabs=1)
    many = background_fill_and_argmax_(probs.copy(), np.uint8, slabs=5)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(one, probs.argmax(axis=0))  # sums > 1: no fill


def test_label_dtype_and_keep_largest():
    assert label_dtype(256) is np.uint8 and label_dtype(257) is np.uint16
    mask = np.zeros((6, 8), np.uint8)
    mask[0:2, 0:2] = 1  # 4 px
    mask[4:6, 4:8] = 1  # 8 px: kept
    mask[0, 6] = 2  # the other class, untouched
    kept = keep_largest_components(mask, (1,))
    assert kept.dtype == np.uint8
    assert kept[0:2, 0:2].sum() == 0 and (kept[4:6, 4:8] == 1).all() and kept[0, 6] == 2
    np.testing.assert_array_equal(keep_largest_components(mask, ()), mask)


def test_labels_from_probabilities_and_class_names():
    probs = np.zeros((3, 4, 4), np.float32)
    probs[1, 0, 0] = probs[1, 3, 2:] = 1.0
    mask = labels_from_probabilities(probs, 3, keep_largest=(1,))
    assert mask.dtype == np.uint8 and mask.sum() == 2 and (mask[3, 2:] == 1).all()
    assert largest_component_classes(["all"], ["bg", "a", "b"]) == (1, 2)
    assert largest_component_classes(["b"], ["bg", "a", "b"]) == (2,)
    with pytest.raises(ValueError, match="keep-largest: c not among"):
        largest_component_classes(["c"], ["bg", "a", "b"])


def test_inference_and_bundle_use_these_functions_not_copies():
    assert inference.softmax_ is postprocess.softmax_
    assert inference.labels_from_probabilities is postprocess.labels_from_probabilities
    assert bundle_transforms.background_fill_and_argmax_ is postprocess.background_fill_and_argmax_
    assert bundle_transforms.softmax_ is postprocess.softmax_
