"""The loss inside MONAI: bundle configs (ConfigParser) and monai.engines.SupervisedTrainer."""

import pytest
import torch
from monai.bundle import ConfigParser

from medseg_dfl.losses import DiceDualFocalLoss, DualFocalLoss


def test_bundle_config_instantiates_the_loss():
    config = {
        "num_classes": 3,
        "loss": {
            "_target_": "medseg_dfl.losses.DualFocalLoss",
            "to_onehot_y": True,
            "gamma": 2.0,
            "beta": 0.5,
            "weight": [0.5, 1.0, 2.0],
            "num_classes": "@num_classes",
        },
        "compound": {"_target_": "medseg_dfl.losses.DiceDualFocalLoss", "to_onehot_y": True, "lambda_dice": 0.5},
    }
    parser = ConfigParser(config)
    loss = parser.get_parsed_content("loss")
    assert isinstance(loss, DualFocalLoss) and loss.gamma == 2.0
    assert isinstance(parser.get_parsed_content("compound"), DiceDualFocalLoss)
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    direct = DualFocalLoss(to_onehot_y=True, gamma=2.0, beta=0.5, weight=[0.5, 1.0, 2.0])
    torch.testing.assert_close(loss(logits, labels), direct(logits, labels))


def _data(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        label = torch.randint(0, 3, (1, 8, 8), generator=g)
        items.append({"image": label.float() + 0.15 * torch.randn(1, 8, 8, generator=g), "label": label})
    return items


@pytest.mark.parametrize("learnable", [False, True])
def test_supervised_trainer_lowers_the_loss(learnable):
    # monai.engines needs pytorch-ignite, which is not a project dependency (yet).
    pytest.importorskip("ignite", reason="monai.engines needs pytorch-ignite")
    from monai.engines import SupervisedTrainer
    from monai.engines.utils import IterationEvents

    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 3, 1)
    loss_fn = DualFocalLoss(to_onehot_y=True, learnable_alpha=learnable)
    # The loss's own parameters (the learnable scale) go to the optimiser too, without weight decay.
    optimizer = torch.optim.Adam(
        [{"params": net.parameters()}, {"params": loss_fn.parameters(), "weight_decay": 0.0}], lr=0.05
    )
    loader = torch.utils.data.DataLoader(_data(), batch_size=4)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=20, train_data_loader=loader, network=net,
        optimizer=optimizer, loss_function=loss_fn,
    )  # fmt: skip
    history = []
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda e: history.append(e.state.output["loss"].item()))
    s0 = None if loss_fn.log_alpha_inv is None else loss_fn.log_alpha_inv.item()
    trainer.run()
    assert len(history) == 40
    if learnable:
        assert loss_fn.log_alpha_inv.item() != s0
        assert history[-1] < history[0] - 1.0
    else:
        assert history[-1] < 0.6 * history[0]
