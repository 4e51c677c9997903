"""process_group_teardown: the process group is gone after the work, with or without an error."""
import pytest
import torch.distributed as dist

from bikestate.engine import process_group_teardown


@pytest.fixture
def gloo_group(tmp_path):
    """A real one-process Gloo group (file rendezvous), destroyed if a test leaves it."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_destroys_the_group_after_the_work(gloo_group):
    with process_group_teardown():
        assert dist.is_initialized()
        dist.barrier()
    assert not dist.is_initialized()


def test_destroys_the_group_after_an_error(gloo_group):
    with pytest.raises(SystemExit):
        with process_group_teardown():
            raise SystemExit(2)
    assert not dist.is_initialized()


def test_nothing_to_do_without_a_group():
    assert not dist.is_initialized()
    with process_group_teardown():
        pass
    assert not dist.is_initialized()
