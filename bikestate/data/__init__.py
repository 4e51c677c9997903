"""bikestate.data: from annotated bike photos to detectron2 ``Instances`` with part states.

One concept per module, in the order data flows through them:

* :mod:`.delftbikes` -- reader and validator of DelftBikes-format annotations
* :mod:`.formats` -- which format a file is; what a COCO-with-states file holds
* :mod:`.coco` -- conversion to COCO JSON with per-box states
* :mod:`.split` -- stratified train/val/test split
* :mod:`.cache` -- preparing a split: a user's file (converted once) or a cached SynthBikes split
* :mod:`.catalog` -- registration of a COCO-with-states file with detectron2's catalogs
* :mod:`.datasets` -- the registrar of ``bike_train`` / ``bike_val`` / ``bike_test``
* :mod:`.mapper` -- augmentation and ``Instances`` with ``gt_states``; unreadable images skipped;
  annotated images at the test-time size (validation loss, state-head refinement)
* :mod:`.samplers` -- the training sampler that resumes at a position in its stream

Each module's ``__all__`` is its public API, available here too. Modules load on first use, so
the annotation tools (converter, splitter) need neither torch nor detectron2. SynthBikes, the
embedded procedural dataset, is a data source of its own: :mod:`bikestate.synth`.
"""
import importlib

_MODULES = ("delftbikes", "formats", "coco", "split", "cache", "catalog", "datasets", "mapper",
            "samplers")
# Public name -> module, as each module's __all__ declares it (kept in sync by a test).
_EXPORTS = {
    "delftbikes": ("Problem", "DelftBikesDataset", "load_delftbikes", "read_annotation_json",
                   "parse_part_state", "ON_INVALID_CHOICES"),
    "formats": ("detect_annotation_format", "summarize_coco"),
    "coco": ("convert_to_coco", "category_names_for", "load_coco_states", "problems_report_path",
             "format_statistics"),
    "split": ("SPLIT_NAMES", "stratified_split", "state_shares", "split_labels",
              "iterative_stratification", "balance_by_swaps", "split_sizes"),
    "cache": ("FileSource", "SynthSource", "prepare_synthbikes"),
    "catalog": ("EXTRA_ANNOTATION_KEYS", "register_bike_instances", "unregister_bike_dataset",
                "load_bike_json"),
    "datasets": ("register_bike_datasets", "register_dataset_to_evaluate"),
    "mapper": ("BikeStateDatasetMapper", "build_bike_augmentation", "RandomSaturationWithFormat",
               "UnreadableImageError", "ImageSizeMismatchError", "SkipUnreadableImages",
               "SKIPPED_KEY", "transform_boxes", "build_annotated_test_loader"),
    "samplers": ("ResumableTrainingSampler",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    # PEP 562: a module (and torch / detectron2 / OpenCV behind it) loads when first used.
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'bikestate.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_MODULES))
