"""Safe loading of model weights: detectron2's checkpointer with guards and a clear report.

:class:`BikeStateCheckpointer` is a :class:`~detectron2.checkpoint.DetectionCheckpointer` that

* loads ``.pth``/``.pyth`` files with ``torch.load(..., weights_only=True)``: tensors and plain
  containers only, no code runs while loading;
* accepts pickled ``.pkl`` files (which *do* run code when unpickled) only from detectron2's
  model zoo (``detectron2://...`` and the ``https://dl.fbaipublicfiles.com/detectron2/`` URLs it
  resolves to) or when ``MODEL.ALLOW_PICKLED_WEIGHTS`` is True; otherwise it refuses with a
  :class:`~bikestate.utils.errors.WeightsError` that says how to allow it;
* turns every way of not getting weights into one clear :class:`WeightsError`: a download that
  fails (offline) names the URL and how to train from scratch (``MODEL.WEIGHTS ""``), a missing
  local file, an unreadable file, a file of another architecture (no tensor matches);
* keeps every tensor whose name and shape match (e.g. a COCO model's backbone, FPN, RPN and box
  head) and reports the skipped class-specific ones (``cls_score``, ``bbox_pred``: 81 COCO
  classes vs 22 parts) in one summary, also available as :attr:`last_load_report`.
"""
import logging
import os
import pickle
import posixpath
import warnings
from urllib.parse import urlparse

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..utils.errors import WeightsError

__all__ = ["BikeStateCheckpointer", "check_weights", "load_model_weights", "is_model_zoo_url",
           "TRUSTED_PICKLE_PREFIXES"]

logger = logging.getLogger(__name__)

# Pickled weights from here are trusted: detectron2's own model zoo (the only source of the
# COCO-pretrained .pkl files the configs name).
TRUSTED_PICKLE_PREFIXES = ("detectron2://", "https://dl.fbaipublicfiles.com/detectron2/")

# Buffers that detectron2 fills from the config; never counted as loaded or missing.
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std")

_HOW_TO_ALLOW = (
    "set MODEL.ALLOW_PICKLED_WEIGHTS True if you trust the file, or convert it to a .pth "
    "state dict"
)


def is_model_zoo_url(path: str) -> bool:
    """True for ``detectron2://...`` and ``https://dl.fbaipublicfiles.com/detectron2/...``.

    The path is normalised first, so ``.../detectron2/../elsewhere`` does not pass.
    """
    parsed = urlparse(path)
    if parsed.scheme not in ("detectron2", "https"):
        return False
    normalised = parsed._replace(
        path=posixpath.normpath(parsed.path) if parsed.path else "", query="", fragment=""
    ).geturl()
    if parsed.scheme == "detectron2":
        return ".." not in parsed.path.split("/") and ".." not in parsed.netloc
    return normalised.startswith(TRUSTED_PICKLE_PREFIXES[1])


def _strip_query(path: str) -> str:
    """Remove ``?matching_heuristics=True``-style queries (detectron2 reads them itself)."""
    if "://" in path:
        return urlparse(path)._replace(query="").geturl()
    return path.split("?", 1)[0] if "?" in path and not os.path.exists(path) else path


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


class BikeStateCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` with safe loading and a report of what was loaded.

    Example (how the trainer builds it)::

        checkpointer = BikeStateCheckpointer(
            model, cfg.OUTPUT_DIR, allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS,
            trainer=weakref.proxy(trainer))
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    """

    def __init__(self, model, save_dir="", *, allow_pickled=False, save_to_disk=None,
                 **checkpointables):
        """
        Args:
            model: the model (a DDP/DataParallel wrapper is unwrapped by fvcore).
            save_dir: where checkpoints are saved and ``last_checkpoint`` is looked up.
            allow_pickled: accept pickled ``.pkl`` weights from any source and fall back to a
                full unpickling of ``.pth`` files that hold more than tensors
                (``cfg.MODEL.ALLOW_PICKLED_WEIGHTS``).
            save_to_disk: as in DetectionCheckpointer (default: main process only).
            checkpointables: other objects with ``state_dict``/``load_state_dict`` (optimizer,
                scheduler, ``trainer=``), saved and restored with the model.
        """
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.allow_pickled = bool(allow_pickled)
        #: Summary of the last :meth:`load` (None before any): ``{"path", "loaded",
        #: "total", "skipped_shape": [(name, file_shape, model_shape)], "missing": [...],
        #: "unexpected": [...]}``.
        self.last_load_report = None
        self._loading = None  # the path being loaded, as the user gave it

    # ------------------------------------------------------------------------------- loading
    def load(self, path, *args, **kwargs):
        """Load ``path`` (file or URL; "" = nothing, train from scratch). See fvcore's ``load``.

        Raises:
            WeightsError: the weights cannot or must not be loaded (see the module docstring).
        """
        if not path:
            return super().load(path, *args, **kwargs)
        location = _strip_query(path)
        pickled = location.endswith(".pkl")
        if pickled and not (self.allow_pickled or is_model_zoo_url(location)):
            raise WeightsError(
                f"refusing to load pickled weights {location}: unpickling a .pkl file can run "
                f"arbitrary code and it is not from the detectron2 model zoo; {_HOW_TO_ALLOW}"
            )
        if "://" in location:
            try:  # downloads into the iopath cache; the parent then finds it there
                self.path_manager.get_local_path(location)
            except Exception as e:  # noqa: BLE001  any network/HTTP failure, one message
                raise WeightsError(
                    f"cannot download weights {location} ({type(e).__name__}: {_one_line(e)}); "
                    f"check the network or the URL, or train from scratch with "
                    f'MODEL.WEIGHTS ""'
                ) from e
        elif not os.path.isfile(location):
            raise WeightsError(
                f"weights file not found: {location} (MODEL.WEIGHTS must name an existing "
                f'file, a URL, or "" to train from scratch)'
            )
        self._loading = location
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = None

    def _load_file(self, filename):
        """Read a weights file; only the trusted ones are unpickled."""
        source = self._loading or filename
        if filename.endswith(".pkl"):
            if not (self.allow_pickled or is_model_zoo_url(source)):
                raise WeightsError(f"refusing to load pickled weights {source}; {_HOW_TO_ALLOW}")
            try:
                data = super()._load_file(filename)
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                    AttributeError, ImportError, IndexError) as e:
                raise WeightsError(
                    f"cannot read weights file {source}: not a detectron2/Caffe2 .pkl "
                    f"checkpoint ({type(e).__name__}: {_one_line(e)})"
                ) from e
            return self._check_state_dict(data, source)
        if filename.endswith(".pyth"):  # pycls; the parent would torch.load it unchecked
            data = self._torch_load(filename)
            if "model_state" not in data:
                raise WeightsError(f"cannot read {source}: a .pyth file must hold 'model_state'")
            model_state = {k: v for k, v in data["model_state"].items()
                           if not k.endswith("num_batches_tracked")}
            return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}
        return self._check_state_dict(super()._load_file(filename), source)

    def _torch_load(self, f):
        """``torch.load`` without code execution (``weights_only=True``)."""
        source = self._loading or f
        try:
            data = torch.load(f, map_location=torch.device("cpu"), weights_only=True)
        except pickle.UnpicklingError as e:
            if not self.allow_pickled:
                raise WeightsError(
                    f"refusing to load {source}: it holds Python objects other than tensors, "
                    f"which could run code when unpickled; {_HOW_TO_ALLOW}"
                ) from e
            logger.warning("Unpickling %s fully (MODEL.ALLOW_PICKLED_WEIGHTS is True)", source)
            data = torch.load(f, map_location=torch.device("cpu"), weights_only=False)
        except (RuntimeError, EOFError, OSError, ValueError) as e:
            raise WeightsError(
                f"cannot read weights file {source}: truncated or not a PyTorch checkpoint "
                f"({type(e).__name__}: {_one_line(e)})"
            ) from e
        if not isinstance(data, dict):
            raise WeightsError(
                f"cannot read weights file {source}: expected a dict of tensors or a checkpoint "
                f"with a 'model' entry, found {type(data).__name__}"
            )
        return data

    @staticmethod
    def _check_state_dict(data, source):
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict):
            raise WeightsError(f"cannot read weights file {source}: it holds no model weights")
        return data

    def _load_model(self, checkpoint):
        """Load matching tensors; refuse a file that matches none of the model's tensors."""
        # Counted before loading: the parents rename (model-zoo heuristics) but keep every key.
        # pixel_mean/std come from the config whatever the file says: they do not count.
        file_tensors = len([k for k in checkpoint.get("model") or {}
                            if k.rsplit("module.", 1)[-1] not in _CONFIG_BUFFERS])
        incompatible = super()._load_model(checkpoint)
        model_keys = [k for k in self.model.state_dict() if k not in _CONFIG_BUFFERS]
        missing = set(incompatible.missing_keys)
        loaded = [k for k in model_keys if k not in missing]
        source = self._loading or "checkpoint"
        self.last_load_report = {
            "path": source,
            "loaded": len(loaded),
            "total": len(model_keys),
            "skipped_shape": [(k, tuple(a), tuple(b)) for k, a, b in incompatible.incorrect_shapes],
            "missing": sorted(missing - {k for k, _, _ in incompatible.incorrect_shapes}),
            "unexpected": sorted(incompatible.unexpected_keys),
        }
        # FrozenBatchNorm fills in running statistics a file lacks, so "loaded" alone can be
        # non-zero for a file of another network: also require that the file gave a tensor.
        used = (file_tensors - len(incompatible.unexpected_keys)
                - len(incompatible.incorrect_shapes))
        if not loaded or used <= 0:
            raise WeightsError(
                f"weights file {source} matches none of the model's {len(model_keys)} tensors: "
                f"it is a checkpoint of another architecture (e.g. another backbone or "
                f"MODEL.META_ARCHITECTURE); pick weights for this config or train from scratch "
                f'with MODEL.WEIGHTS ""',
                details=[
                    f"{len(incompatible.unexpected_keys)} tensors in the file, e.g. "
                    + ", ".join(sorted(incompatible.unexpected_keys)[:3]),
                ],
            )
        return incompatible

    def _log_incompatible_keys(self, incompatible):
        """One summary instead of fvcore's per-tensor warnings (which stay at debug level)."""
        report = self.last_load_report
        if report is None:
            return super()._log_incompatible_keys(incompatible)
        lines = [f"Loaded {report['loaded']} of {report['total']} model tensors from "
                 f"{report['path']}."]
        if report["skipped_shape"]:
            lines.append(
                f"Skipped {len(report['skipped_shape'])} tensors whose shape differs "
                f"(e.g. class-specific layers; they start from scratch):"
            )
            lines += [f"  {k}: {a} in the file, {b} in the model"
                      for k, a, b in report["skipped_shape"]]
        if report["missing"]:
            lines.append(f"{len(report['missing'])} model tensors not in the file "
                         f"(trained from scratch): " + _abbreviate(report["missing"]))
        if report["unexpected"]:
            lines.append(f"{len(report['unexpected'])} tensors of the file not used by the "
                         f"model: " + _abbreviate(report["unexpected"]))
        level = logging.WARNING if len(lines) > 1 else logging.INFO
        self.logger.log(level, "\n".join(lines))


class _QuietCheckpointer(BikeStateCheckpointer):
    """For :func:`check_weights`: the real load logs its report later, once."""

    def _log_incompatible_keys(self, incompatible):
        pass


def check_weights(cfg, path=None):
    """Raise the :class:`WeightsError` that loading ``path`` (default ``cfg.MODEL.WEIGHTS``)
    into the model of ``cfg`` would raise: missing file, refused pickle, unreadable file,
    another architecture. Tools call it before they write anything.

    The weights are loaded into a shape-only copy of the model on PyTorch's ``meta`` device: no
    memory for parameters, no computation, the very checks of a real load. If the model cannot
    be built there, nothing is checked (the real load still is).

    Returns:
        dict or None: the load report (see :attr:`BikeStateCheckpointer.last_load_report`), or
        None when there is nothing to check.
    """
    path = cfg.MODEL.WEIGHTS if path is None else path
    if not path:
        return None
    from detectron2.modeling import build_model

    meta_cfg = cfg.clone()
    meta_cfg.defrost()
    meta_cfg.MODEL.DEVICE = "meta"
    try:
        with torch.device("meta"):
            model = build_model(meta_cfg)
    except Exception as e:  # noqa: BLE001  an optional early check; the real load follows
        logger.debug("check_weights: cannot build the model on the meta device (%s)", e)
        return None
    checkpointer = _QuietCheckpointer(model, allow_pickled=cfg.MODEL.ALLOW_PICKLED_WEIGHTS,
                                      save_to_disk=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copying into meta tensors does nothing, as meant here
        checkpointer.load(path)
    return checkpointer.last_load_report


def _abbreviate(keys, limit=8):
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_model_weights(model, weights, allow_pickled=False):
    """Load ``weights`` (a path or URL; "" keeps the random initialisation) into ``model``.

    Loads through :class:`BikeStateCheckpointer` (no code runs while
    loading, one-line :class:`WeightsError` for a missing or unreadable file). Unlike training,
    which may start from a COCO model and learn the layers that do not fit, prediction needs
    every tensor: a file that leaves any layer at its random initialisation (another
    ``NUM_CLASSES``, another backbone) is refused instead of giving meaningless verdicts.
    """
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: predicting with an untrained, random model")
        return
    checkpointer = BikeStateCheckpointer(model, allow_pickled=allow_pickled)
    checkpointer.load(weights)
    report = checkpointer.last_load_report
    if report and (report["skipped_shape"] or report["missing"]):
        details = [f"{k}: {tuple(a)} in the file, {tuple(b)} in the model"
                   for k, a, b in report["skipped_shape"]]
        details += [f"{k}: not in the file" for k in report["missing"]]
        raise WeightsError(
            f"weights file {weights} does not fit the config: {len(details)} of the model's "
            f"{report['total']} tensors would stay untrained; use the config the model was "
            f"trained with (e.g. MODEL.ROI_HEADS.NUM_CLASSES, the backbone)",
            details=details[:10] + ([f"... {len(details) - 10} more"] if len(details) > 10
                                    else []),
        )
