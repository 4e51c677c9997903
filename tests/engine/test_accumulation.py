"""Gradient accumulation: 2 mini-batches of 1 image give the same update as 1 batch of 2."""
import copy

import pytest
import torch

from bikestate.engine import BikeStateTrainer, BikeStateTrainLoop
from detectron2.utils.events import EventStorage


def _one_update(model, batches, accum_steps):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.0)
    loop = BikeStateTrainLoop(model, iter(batches), optimizer, accum_steps=accum_steps)
    with EventStorage(0) as storage:
        loop.iter = 0
        loop.run_step()
        losses = storage.latest()["total_loss"][0]
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses


def test_two_accumulated_batches_of_one_equal_one_batch_of_two(train_net, make_args, tmp_path):
    # Deterministic: no dropout, no flip, and RPN / ROI sampling budgets larger than the number
    # of candidates, so every anchor and proposal is used whatever the random permutation.
    args = make_args(tmp_path / "accum", "MODEL.ROI_STATE_HEAD.DROPOUT", "0.0",
                     "INPUT.RANDOM_FLIP", "none", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "100000",
                     "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "100000",
                     "MODEL.ROI_HEADS.POSITIVE_FRACTION", "1.0", "MODEL.RPN.POSITIVE_FRACTION", "1.0")
    cfg = train_net.setup(args)
    torch.manual_seed(0)
    model = BikeStateTrainer.build_model(cfg)
    model.train()
    image = next(iter(BikeStateTrainer.build_train_loader(cfg)))[0]

    # The same image twice: both forms have the same per-batch normalizers, so the only
    # difference a wrong scaling could make is the factor between them.
    big, loss_big = _one_update(copy.deepcopy(model), [[image, copy.deepcopy(image)]], 1)
    acc, loss_acc = _one_update(copy.deepcopy(model),
                                [[image], [copy.deepcopy(image)]], 2)
    before = model.state_dict()
    moved = 0
    for name, value in big.items():
        if not value.dtype.is_floating_point:
            continue
        delta_big = value - before[name]
        delta_acc = acc[name] - before[name]
        torch.testing.assert_close(delta_acc, delta_big, rtol=1e-3, atol=1e-6, msg=name)
        moved += int(delta_big.abs().max() > 0)
    assert moved > 10  # the update really moved the weights
    assert loss_acc == pytest.approx(loss_big, rel=1e-4)


def test_other_samplers_come_from_detectron2(train_net, make_args, tmp_path):
    """DATALOADER.SAMPLER_TRAIN other than TrainingSampler: detectron2 builds the sampler from
    the config (here RepeatFactorTrainingSampler) and bikestate's mapper still maps."""
    args = make_args(tmp_path / "repeat", "DATALOADER.SAMPLER_TRAIN",
                     "RepeatFactorTrainingSampler", "DATALOADER.REPEAT_THRESHOLD", "0.5")
    cfg = train_net.setup(args)
    loader = BikeStateTrainer.build_train_loader(cfg)
    # detectron2 wraps the sampler in its datasets (grouping, loader, mapping): unwrap them.
    from detectron2.data.common import MapDataset, ToIterableDataset

    nodes = [loader]
    while not isinstance(nodes[-1], ToIterableDataset) and len(nodes) < 8:
        inner = getattr(nodes[-1], "dataset", None)
        nodes.append(inner if inner is not None else getattr(nodes[-1], "_dataset", None))
    assert type(nodes[-1].sampler).__name__ == "RepeatFactorTrainingSampler"
    mapped = nodes[-1].dataset  # the sampler draws indices into the mapped dataset
    assert isinstance(mapped, MapDataset)
    assert type(mapped._map_func._obj).__name__ == "SkipUnreadableImages"
