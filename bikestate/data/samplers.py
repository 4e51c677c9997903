"""Training samplers: detectron2's seeded infinite sampler, resumable at a position."""
from detectron2.data.samplers import TrainingSampler

__all__ = ["ResumableTrainingSampler"]


class ResumableTrainingSampler(TrainingSampler):
    """detectron2's infinite, seeded ``TrainingSampler`` that can start ``skip`` indices into its
    (per-process) stream, so a resumed run sees the images an uninterrupted run would see."""

    def __init__(self, size, shuffle=True, seed=None, skip=0):
        super().__init__(size, shuffle=shuffle, seed=seed)
        self._skip = int(skip)

    def __iter__(self):
        it = super().__iter__()
        for _ in range(self._skip):
            next(it)
        yield from it
