"""How a process started by detectron2's ``launch`` ends: with its process groups destroyed.

Left to interpreter shutdown, or destroyed while another rank still communicates, Gloo's worker
threads can abort a process (SIGABRT, "terminate called without an active exception") after its
work is done, so a successful run fails at random.
"""
import contextlib

import torch.distributed as dist

import detectron2.utils.comm as comm

__all__ = ["process_group_teardown"]


@contextlib.contextmanager
def process_group_teardown():
    """Run one process's work, then destroy its process groups.

    After the work succeeds, the ranks first meet at a barrier so that none tears down while
    another still gathers; after an error (also ``SystemExit``) there is no barrier, since the
    other ranks may be gone. Without an initialized process group it does nothing.

    Example::

        def worker(args):
            with process_group_teardown():
                return main(args)
    """
    try:
        yield
        if dist.is_available() and dist.is_initialized():
            comm.synchronize()
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
