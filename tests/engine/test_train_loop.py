"""BikeStateTrainLoop's gradient check: an update with a NaN or infinite gradient is refused and
names the parameter; finite gradients update the weights."""
import pytest
import torch
from detectron2.utils.events import EventStorage

from bikestate.engine import BikeStateTrainLoop, NonFiniteLossError


class _TwoWeights(torch.nn.Module):
    """loss = sum(a * x) + sum(b): a finite loss whose gradients hooks can break."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.ones(3))
        self.b = torch.nn.Parameter(torch.ones(2))

    def forward(self, batch):
        return {"loss_x": (self.a * batch[0]["x"]).sum() + self.b.sum()}


def _step(model):
    """One update of the loop (AdamW, as the configs use); returns the weights after it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, foreach=True)
    batches = iter([[{"x": torch.tensor([1.0, 2.0, 3.0])}]])
    loop = BikeStateTrainLoop(model, batches, optimizer)
    with EventStorage(0):
        loop.iter = 7
        loop.run_step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_finite_gradients_update_the_weights():
    after = _step(_TwoWeights())
    assert (after["a"] < 1).all() and (after["b"] < 1).all()


@pytest.mark.parametrize("name, bad", [("a", float("nan")), ("b", float("inf")),
                                       ("b", -float("inf"))])
def test_a_non_finite_gradient_is_refused_and_named(name, bad):
    model = _TwoWeights()
    broken = getattr(model, name)
    broken.register_hook(lambda grad: torch.full_like(grad, 0.5).index_fill_(0, torch.tensor([1]),
                                                                             bad))
    with pytest.raises(NonFiniteLossError,
                       match=rf"iteration 7: non-finite gradients in 1 parameters \({name}\)"):
        _step(model)
    for k, v in model.state_dict().items():  # the weights were not touched
        assert torch.equal(v, torch.ones_like(v)), k
