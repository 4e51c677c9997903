"""bikestate.data: from annotated bike photos to detectron2 ``Instances`` with part states.

One concept per module, in the order data flows through them:

* :mod:`.delftbikes` -- reader and validator of DelftBikes-format annotations
* :mod:`.coco` -- conversion to COCO JSON with per-box states
* :mod:`.split` -- stratified train/val/test split
* :mod:`.datasets` -- where the data comes from (config, env, .env, SynthBikes) and its
  registration as ``bike_train`` / ``bike_val`` / ``bike_test``
* :mod:`.mapper` -- augmentation and ``Instances`` with ``gt_states``

Each module's ``__all__`` is its public API, re-exported here. SynthBikes, the embedded
procedural dataset, is a data source of its own: :mod:`bikestate.synth`.
"""
from . import coco, datasets, delftbikes, mapper, split
from .delftbikes import *  # noqa: F401,F403
from .coco import *  # noqa: F401,F403
from .split import *  # noqa: F401,F403
from .datasets import *  # noqa: F401,F403
from .mapper import *  # noqa: F401,F403

__all__ = [*delftbikes.__all__, *coco.__all__, *split.__all__, *datasets.__all__,
           *mapper.__all__]
