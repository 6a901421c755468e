"""The planner's augmentation timing: the expected cost per patch, rare costly steps included."""

from __future__ import annotations

import time

from monai.transforms import Compose, Lambdad, RandomizableTransform

from medseg_dfl.config import config_from_dict
from medseg_dfl.planning import timing


class _RandSleep(RandomizableTransform):
    """Sleeps ``seconds`` with probability ``prob``: a costly step that most patches skip."""

    def __init__(self, prob: float, seconds: float) -> None:
        super().__init__(prob)
        self.seconds = seconds

    def __call__(self, data):
        self.randomize(None)
        if self._do_transform:
            time.sleep(self.seconds)
        return data


def test_augmentation_time_is_the_mean_over_patches_not_the_median(monkeypatch):
    # p 0.3: a median of the draws is ~0 s; the expected cost per patch is 0.3 x 40 ms = 12 ms.
    pipeline = Compose([Lambdad(keys="image", func=lambda x: x), _RandSleep(prob=0.3, seconds=0.04)])
    monkeypatch.setattr(timing, "build_train_transforms", lambda cfg: pipeline)
    cfg = config_from_dict({"transforms": {"num_samples": 1}})
    seconds = timing.time_augmentation(cfg, [{"image": 0}, {"image": 1}], repeats=20)
    # 40 draws at p 0.3: 12 +- 3 sleeps, so 6-18 ms per patch; a median would be well under 1 ms.
    assert 0.004 < seconds < 0.03
