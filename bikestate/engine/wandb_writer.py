"""Weights & Biases logging as a detectron2 ``EventWriter`` (modelled on ``TensorboardXWriter``).

Logged under the names of bikestate's W&B dashboards (:data:`WANDB_KEYS`):

* every iteration: ``train_loss`` (detectron2's ``total_loss``), ``train_loss_classifier``
  (``loss_cls``), ``train_loss_box_reg`` (``loss_box_reg``), ``train_loss_objectness``
  (``loss_rpn_cls``), ``train_loss_rpn_box_reg`` (``loss_rpn_loc``), ``train_loss_state``
  (``loss_state``), ``learning_rate`` (``lr``); every other scalar of the storage under its own
  name (timings, ``data/skipped_images``);
* every evaluation: ``avg_train_loss``, ``avg_val_loss``, ``val_loss_*``, every evaluation metric
  (``bbox/AP``, ``state/...``), ``best/<metric>``, and ``val_predictions``: a fixed set of
  validation images with predicted and ground-truth boxes labelled by part and state;
* once: the full config (``wandb.config``); at the end, optionally ``model_best.pth`` as an
  artifact (``WANDB.LOG_CHECKPOINT``).

``WANDB.MODE``: ``auto`` (``WANDB_MODE`` from the environment if set, else online when
credentials exist — ``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in ``~/.netrc`` — else
offline into ``OUTPUT_DIR/wandb``), ``online``, ``offline``, ``disabled``.

A W&B failure never stops training: the first one logs one warning and turns the writer off.
"""
import logging
import netrc
import os
from collections import defaultdict

import yaml
from detectron2.structures import BoxMode
from detectron2.utils.events import EventWriter, get_event_storage

from ..inference.visualizer import format_label
from ..utils.io import atomic_write_text

__all__ = ["WandbWriter", "resolve_wandb_mode", "WANDB_KEYS"]

logger = logging.getLogger(__name__)

# detectron2 storage name -> W&B name.
WANDB_KEYS = {
    "total_loss": "train_loss",
    "loss_cls": "train_loss_classifier",
    "loss_box_reg": "train_loss_box_reg",
    "loss_rpn_cls": "train_loss_objectness",
    "loss_rpn_loc": "train_loss_rpn_box_reg",
    "loss_state": "train_loss_state",
    "lr": "learning_rate",
}
_MODES = ("auto", "online", "offline", "disabled")
RUN_ID_FILE = "wandb_run_id"


def _has_credentials(environ):
    if environ.get("WANDB_API_KEY"):
        return True
    try:
        path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
        return os.path.isfile(path) and netrc.netrc(path).authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode, environ=None):
    """Turn ``WANDB.MODE`` into the mode given to ``wandb.init``: online, offline or disabled."""
    environ = os.environ if environ is None else environ
    mode = str(mode).lower()
    if mode not in _MODES:
        from ..utils.errors import ConfigError

        raise ConfigError(f"WANDB.MODE {mode!r} is unknown; choose one of {', '.join(_MODES)}")
    if mode != "auto":
        return mode
    env_mode = environ.get("WANDB_MODE", "").lower()
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if env_mode == "dryrun":
        return "offline"
    return "online" if _has_credentials(environ) else "offline"


def _generate_run_id():
    try:
        from wandb.sdk.lib.runid import generate_id

        return generate_id()
    except ImportError:  # location changed between wandb versions
        import uuid

        return uuid.uuid4().hex[:8]


class WandbWriter(EventWriter):
    """Write the ``EventStorage`` to one W&B run (create it on the main process only)."""

    def __init__(self, cfg, *, resume=False, class_names=None, state_names=None, start=True):
        """
        Args:
            cfg (CfgNode): the full config; logged as ``wandb.config``; ``cfg.WANDB`` and
                ``cfg.OUTPUT_DIR`` configure the run.
            resume (bool): continue the W&B run recorded in ``OUTPUT_DIR/wandb_run_id``
                (the trainer sets ``writer.resume`` when it resumes from a checkpoint).
            class_names (list[str]): part names for box labels.
            state_names (list[str]): state names for box captions.
            start (bool): start the run now; otherwise :meth:`start` does (the trainer starts it
                when training begins, once it knows whether it resumed).
        """
        self._cfg = cfg
        self._output_dir = cfg.OUTPUT_DIR
        self._class_names = list(class_names or [])
        self._state_names = list(state_names or [])
        self._last_iter = {}
        self._pending = defaultdict(dict)
        self._step = -1
        self._exit_code = 0
        self._run = None
        self._wandb = None
        self._started = False
        self._disabled = False
        self.resume = resume
        self.mode = resolve_wandb_mode(cfg.WANDB.MODE)
        if start:
            self.start()

    def start(self):
        """Create (or, with ``resume``, continue) the W&B run; a failure only turns W&B off."""
        if self._started or self.mode == "disabled":
            return
        self._started = True
        try:
            self._init_run(self.resume)
        except Exception as e:
            self.disable(f"could not start the W&B run: {e}")

    # ------------------------------------------------------------------ setup
    def _init_run(self, resume):
        import wandb

        self._wandb = wandb
        os.makedirs(self._output_dir, exist_ok=True)
        id_file = os.path.join(self._output_dir, RUN_ID_FILE)
        run_id = None
        if resume and os.path.isfile(id_file):
            with open(id_file, encoding="utf-8") as f:
                run_id = f.read().strip() or None
        if run_id is None:
            run_id = _generate_run_id()
        w = self._cfg.WANDB
        self._run = wandb.init(
            project=w.PROJECT,
            entity=w.ENTITY or None,
            name=w.NAME or None,
            id=run_id,
            resume="allow",
            mode=self.mode,
            dir=self._output_dir,
            config=yaml.safe_load(self._cfg.dump()),
            reinit="create_new",
        )
        atomic_write_text(run_id, id_file)
        logger.info("W&B run %s (%s) in %s", run_id, self.mode,
                    getattr(self._run, "dir", self._output_dir))

    @property
    def enabled(self):
        return self._run is not None

    @property
    def run(self):
        """The ``wandb`` run object, or None when W&B is off."""
        return self._run

    def disable(self, reason):
        """Turn W&B off for the rest of training after one warning."""
        if not self._disabled:
            logger.warning("W&B logging is turned off: %s. Training continues.", reason)
        self._disabled = True
        self._started = True  # never start after a failure
        run, self._run = self._run, None
        self._wandb = None
        if run is not None:
            try:
                run.finish(exit_code=1, quiet=True)
            except Exception:
                pass

    def mark_failed(self):
        """Training failed: :meth:`close` marks the W&B run failed (exit code 1)."""
        self._exit_code = 1

    # ------------------------------------------------------------------ EventWriter
    def write(self):
        if self._run is None:
            return
        try:
            rows = self._collect_rows()
            for it in sorted(rows):
                row = rows[it]
                if it >= self._step:
                    self._run.log(row, step=it)
                    self._step = it
                else:  # cannot go back in W&B steps: keep the value, tagged with its iteration
                    row["iteration"] = it
                    self._run.log(row)
        except Exception as e:
            self.disable(f"logging failed: {e}")

    def _collect_rows(self):
        storage = get_event_storage()
        rows = defaultdict(dict)
        for name, buffer in storage.histories().items():
            last = self._last_iter.get(name, -1)
            new = []
            for value, it in reversed(buffer.values()):
                if it <= last:
                    break
                new.append((value, it))
            if not new:
                continue
            self._last_iter[name] = new[0][1]
            key = WANDB_KEYS.get(name, name)
            for value, it in new:  # newest first: a value put twice in one iteration is the last
                rows[int(it)].setdefault(key, float(value))
        for it, extra in self._pending.items():
            rows[it].update(extra)
        self._pending.clear()
        return rows

    def log_predictions(self, iteration, originals, outputs):
        """Queue ``val_predictions`` images for ``iteration`` (logged by the next :meth:`write`).

        Args:
            originals (list[(ndarray, dict)]): RGB uint8 images (H, W, 3) and their dataset dicts.
            outputs (list[dict]): model outputs with ``instances`` in original image coordinates
                (``pred_boxes``, ``scores``, ``pred_classes`` and, from the state head,
                ``pred_states``, ``state_scores``).
        """
        if self._run is None:
            return
        images = [self._to_image(img, dd, out) for (img, dd), out in zip(originals, outputs)]
        self._pending[int(iteration)]["val_predictions"] = images

    def log_figures(self, iteration, paths):
        """Queue PNG files as W&B images for ``iteration`` (logged by the next :meth:`write`).

        Args:
            paths (dict[str, str]): W&B key -> PNG path (e.g. the evaluator's ROC curves).
        """
        if self._run is None:
            return
        for key, path in paths.items():
            self._pending[int(iteration)][key] = self._wandb.Image(path)

    def _label(self, class_id):
        return (self._class_names[class_id] if 0 <= class_id < len(self._class_names)
                else f"class {class_id}")

    def _state(self, state_id):
        return (self._state_names[state_id] if 0 <= state_id < len(self._state_names)
                else f"state {state_id}")

    def _to_image(self, img, dataset_dict, output, max_boxes=50, min_score=0.05):
        inst = output["instances"].to("cpu")
        keep = (inst.scores >= min_score).nonzero().flatten()[:max_boxes]
        inst = inst[keep]
        has_states = inst.has("pred_states")
        predictions = []
        for i in range(len(inst)):
            x0, y0, x1, y1 = (float(v) for v in inst.pred_boxes.tensor[i])
            c = int(inst.pred_classes[i])
            score = float(inst.scores[i])
            caption = f"{self._label(c)} {round(100 * score):d}%"
            scores = {"score": score}
            if has_states:
                s = int(inst.pred_states[i])
                confidence = score
                if inst.has("state_scores"):
                    scores["state_score"] = float(inst.state_scores[i, s])
                    confidence = score * scores["state_score"]
                # The label of the pictures and the report: part · state confidence.
                caption = format_label(self._label(c), self._state(s), confidence)
            predictions.append({
                "position": {"minX": x0, "minY": y0, "maxX": x1, "maxY": y1},
                "domain": "pixel", "class_id": c, "box_caption": caption, "scores": scores,
            })
        ground_truth = []
        for ann in dataset_dict.get("annotations", []):
            x0, y0, x1, y1 = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            c = int(ann["category_id"])
            caption = self._label(c)
            if "state" in ann:
                caption = format_label(caption, self._state(int(ann["state"])))
            ground_truth.append({
                "position": {"minX": float(x0), "minY": float(y0), "maxX": float(x1),
                             "maxY": float(y1)},
                "domain": "pixel", "class_id": c, "box_caption": caption,
            })
        labels = {i: n for i, n in enumerate(self._class_names)} or None
        boxes = {"predictions": {"box_data": predictions, "class_labels": labels},
                 "ground_truth": {"box_data": ground_truth, "class_labels": labels}}
        if labels is None:
            for group in boxes.values():
                group.pop("class_labels")
        return self._wandb.Image(img, boxes=boxes,
                                 caption=os.path.basename(dataset_dict.get("file_name", "")))

    def close(self):
        if self._run is None:
            return
        run = self._run
        try:
            best = os.path.join(self._output_dir, "model_best.pth")
            if self._cfg.WANDB.LOG_CHECKPOINT and self._exit_code == 0 and os.path.isfile(best):
                artifact = self._wandb.Artifact(f"model-{run.id}", type="model",
                                                metadata={"file": "model_best.pth"})
                artifact.add_file(best)
                run.log_artifact(artifact, aliases=["best"])
            run.finish(exit_code=self._exit_code)
        except Exception as e:
            logger.warning("W&B could not finish the run cleanly: %s", e)
        finally:
            self._run = None
