"""medseg_dfl.untracked: the per-draw training transforms run without MONAI metadata tracking and
give exactly the batches of the tracked pipeline (same random streams), as plain tensors."""

import torch
from monai.data import MetaTensor, get_track_meta
from monai.transforms import Compose, RandFlipd, RandSpatialCropd, ScaleIntensityd

from medseg_dfl.untracked import without_metadata


def _pipeline(untracked: bool) -> Compose:
    steps = [
        ScaleIntensityd(keys="image"),
        RandSpatialCropd(keys=["image", "label"], roi_size=(8, 8), random_size=False),
        RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
    ]
    return Compose(without_metadata(steps) if untracked else steps)


def test_same_draws_as_tracked_pipeline_and_plain_tensors():
    gen = torch.Generator().manual_seed(0)
    image = MetaTensor(torch.rand(1, 16, 16, generator=gen), meta={"filename_or_obj": "a.png"})
    label = MetaTensor((torch.rand(1, 16, 16, generator=gen) > 0.5).float())
    tracked, untracked = _pipeline(False).set_random_state(3), _pipeline(True).set_random_state(3)
    for _ in range(5):
        a = tracked({"image": image.clone(), "label": label.clone()})
        b = untracked({"image": image.clone(), "label": label.clone()})
        assert torch.equal(a["image"].as_tensor(), b["image"]) and torch.equal(a["label"].as_tensor(), b["label"])
        assert type(b["image"]) is torch.Tensor and b["case_id"] == "a.png"
    assert get_track_meta()  # restored after every call
    assert type(_pipeline(True).transforms[0]) is ScaleIntensityd  # the cacheable prefix is left as it is
