"""BikeStateEvaluator: COCO box AP per part plus part-state and part-verification metrics.

The model answers two questions per part: where is it (or where should it be), and in which
state is it. Box AP alone rewards a detector that "hallucinates" missing parts at their usual
place (Kayhan et al., ICIP 2021), so next to detectron2's COCO numbers this evaluator reports:

* ``bbox/*``: detectron2's :class:`COCOEvaluator` over all annotated parts (absent included).
* ``bbox_present/*``: the public DelftBikes protocol: ground truth restricted to intact,
  damaged and occluded parts, detections ranked by their own scores;
  ``bbox_present_rescored/*`` multiplies each score by the detection's probability of not being
  absent, so knowing that a part is missing is not punished.
* ``verify/*``: the verdicts the inspection report gives (:mod:`bikestate.verdict`, one per
  image and part) against the ground truth: threshold-free figures (present-vs-absent AUROC,
  hallucination at 95 % / 90 % present recall, damage AP) and the figures at the operating
  point, always in pairs (:mod:`.verification`); ``verify_loc/*`` the same when a verdict must
  also point at the part (IoU >= 0.5).
* ``state/*``: state accuracy, macro-F1, per-state precision/recall/F1 and per-part accuracy
  over detections matched one-to-one (greedy by score, IoU >= ``match_iou``) to ground truth:
  the state head on what the detector found.
* ``state_gt/*`` (when the evaluator is given the model): the state head alone on every
  ground-truth box: accuracy, macro-F1 and per-state one-vs-rest AUC.
* ``bbox_state/AP50``: AP50 where a detection counts only with the right part and state.

Results are nested by task (detectron2's convention); ``EvalHook`` flattens them to
``"bbox/AP"``, ``"state/accuracy"``, ``"verify/hallucination_rate"``, ... Every value is a float:
box AP in percent, ``verify/damage_ap`` and rates in [0, 1], NaN where undefined (see
:mod:`.conventions`).
"""
import contextlib
import copy
import csv
import io
import itertools
import json
import logging
import os
import tempfile
import time
from collections import OrderedDict

import numpy as np
from tabulate import tabulate

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils.logger import create_small_table

from ..constants import NOT_FOUND, STATE_NAMES
from ..utils.boxes import xyxy_to_xywh
from ..utils.errors import DataError
from ..utils.io import atomic_open, atomic_write_json, atomic_write_text, read_json
from ..verdict import OperatingPoint, load_operating_point
from .coco_ap import bbox_state_ap50, coco_bbox_eval, mean_ap, standard_ap
from .matching import MATCH_IOU, match_pairs
from .states import per_part_state_accuracy, state_metrics
from . import verification as V

__all__ = ["BikeStateEvaluator", "RESULTS_FILE", "load_ground_truth", "load_results"]

logger = logging.getLogger(__name__)

# The evaluation folder's detections with their state probabilities (COCO results + states),
# read back by load_results (tools/analyze_errors.py --from-eval).
RESULTS_FILE = "coco_instances_results_with_states.json"


class BikeStateEvaluator(DatasetEvaluator):
    """Evaluate part boxes, part states and part verification on a registered bike dataset.

    The dataset must be registered with the ``state`` of every annotation kept (e.g. through
    ``load_coco_json(..., extra_annotation_keys=["state"])``, as
    :func:`bikestate.data.catalog.register_bike_instances` does) and metadata ``thing_classes``
    and, optionally, ``state_classes`` (default :data:`bikestate.constants.STATE_NAMES`) and
    ``json_file`` (a COCO file for :class:`COCOEvaluator`; converted from the dicts if missing).
    Ground truth is read from ``DatasetCatalog`` because the test-time mapper drops annotations.

    Model outputs: ``outputs[i]["instances"]`` with ``pred_boxes``, ``scores``,
    ``pred_classes``, ``pred_states`` (N,) and ``state_scores`` (N, S).
    """

    def __init__(self, dataset_name, cfg=None, distributed=True, output_dir=None,
                 match_iou=None, operating_point=None, max_dets_per_image=100, model=None):
        """
        Args:
            dataset_name (str): a registered dataset.
            cfg (CfgNode or None): when given, ``TEST.BIKESTATE.MATCH_IOU`` and the operating
                point (``TEST.BIKESTATE.THRESHOLDS_FILE``, else thresholds.json beside
                ``MODEL.WEIGHTS``, else the default rule with ``VERIFY_SCORE_THRESH``) supply
                the settings not passed explicitly.
            distributed (bool): gather predictions of all ranks to the main process, which
                alone returns results (others return ``{}``).
            output_dir (str or None): where result files are written (created if needed).
            match_iou (float): IoU of a match (state metrics). Default 0.5.
            operating_point (OperatingPoint or None): the verdict rule's thresholds; default:
                from ``cfg``, else :class:`~bikestate.verdict.OperatingPoint`'s defaults.
            max_dets_per_image (int): detections per image kept by every AP (COCO: 100).
            model (nn.Module or None): the model being evaluated; when given, its state head
                also classifies every ground-truth box (``state_gt/*``), which costs one more
                backbone pass per image.
        """
        match = MATCH_IOU if cfg is None else cfg.TEST.BIKESTATE.MATCH_IOU
        self._match_iou = float(match if match_iou is None else match_iou)
        if operating_point is None and cfg is not None:
            operating_point = load_operating_point(
                cfg.TEST.BIKESTATE.THRESHOLDS_FILE, cfg.MODEL.WEIGHTS,
                default_score_thresh=cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH)
        self.operating_point = operating_point or OperatingPoint()
        self._model = model
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._max_dets = int(max_dets_per_image)
        self._metadata = MetadataCatalog.get(dataset_name)
        self._ground_truth = None  # loaded on first use
        self.pairs = None  # the (image, part) verdict pairs of the last evaluate()
        self.timings = {}  # seconds per section of the last evaluate() (main process)

        if not hasattr(self._metadata, "json_file"):
            # COCOEvaluator needs a COCO file; write the conversion atomically ourselves so its
            # own (non-atomic) result dumps can stay off.
            folder = output_dir or tempfile.mkdtemp(prefix="bikestate_eval_")
            os.makedirs(folder, exist_ok=True)
            cache = os.path.join(folder, f"{dataset_name}_coco_format.json")
            if comm.is_main_process():
                convert_to_coco_json(dataset_name, cache, allow_cached=False)
            comm.synchronize()
            self._metadata.json_file = cache
        self._coco_evaluator = COCOEvaluator(
            dataset_name, tasks=("bbox",), distributed=distributed, output_dir=None,
            max_dets_per_image=self._max_dets, use_fast_impl=False,
        )

    # ------------------------------------------------------------------ collection

    def reset(self):
        self._predictions = []
        self._state_gt = []  # (gt states (M,), state probabilities (M, S)) per image
        self._coco_evaluator.reset()

    def process(self, inputs, outputs):
        """Store each image's detections as compact CPU numpy arrays.

        Args:
            inputs (list[dict]): model inputs, each with ``image_id``.
            outputs (list[dict]): model outputs, each with ``instances``.
        """
        self._coco_evaluator.process(inputs, outputs)
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            num = len(instances)
            if num and not (instances.has("pred_states") or instances.has("state_scores")):
                raise DataError(
                    f"BikeStateEvaluator: the model output of image {inp['image_id']} has no "
                    "pred_states/state_scores; is the model a bikestate model (StateROIHeads)?"
                )
            if instances.has("state_scores"):
                state_scores = instances.state_scores.float().numpy()
            else:
                state_scores = np.zeros((num, len(STATE_NAMES)), dtype=np.float32)
                state_scores[np.arange(num), instances.pred_states.numpy()] = 1.0
            states = (instances.pred_states.numpy() if instances.has("pred_states")
                      else state_scores.argmax(axis=1))
            self._predictions.append({
                "image_id": inp["image_id"],
                "boxes": instances.pred_boxes.tensor.float().numpy().astype(np.float32),
                "scores": instances.scores.float().numpy().astype(np.float32),
                "classes": instances.pred_classes.numpy().astype(np.int32),
                "states": np.asarray(states, dtype=np.int32),
                "state_scores": state_scores.astype(np.float32),
            })
        if self._model is not None:
            self._classify_ground_truth(inputs)

    def _classify_ground_truth(self, inputs):
        """The state head alone on every ground-truth box of ``inputs`` (``state_gt/*``).

        Boxes are scaled from the original image to the model input (the test resize), pooled
        and classified with ``roi_heads.forward_with_given_boxes``.
        """
        import torch
        from detectron2.structures import Boxes, Instances

        from ..modeling.roi_heads import given_box_features

        model = getattr(self._model, "module", self._model)  # DistributedDataParallel
        gt = self._load_ground_truth()
        given, keep, states = [], [], []
        for k, inp in enumerate(inputs):
            g = gt.get(int(inp["image_id"]))
            if g is None or not (~g["iscrowd"]).any():
                continue
            height, width = inp["image"].shape[-2:]
            scale = np.array([width / inp.get("width", width), height / inp.get("height", height)]
                             * 2)
            instances = Instances((height, width))
            instances.pred_boxes = Boxes(torch.as_tensor(g["boxes"][~g["iscrowd"]] * scale,
                                                         dtype=torch.float32, device=model.device))
            instances.pred_classes = torch.as_tensor(g["classes"][~g["iscrowd"]],
                                                     device=model.device)
            given.append(instances)
            keep.append(inp)
            states.append(g["states"][~g["iscrowd"]])
        if not keep:
            return
        with torch.no_grad():
            features = given_box_features(model, model.preprocess_image(keep))
            outputs = model.roi_heads.forward_with_given_boxes(features, given)
        for gt_states, out in zip(states, outputs):
            self._state_gt.append((gt_states, out.state_scores.float().cpu().numpy()))

    # ------------------------------------------------------------------ evaluation

    def evaluate(self):
        """Gather, compute every metric on the main process and write the result files.

        Returns:
            OrderedDict: ``{"bbox": {...}, "bbox_present": {...}, "state": {...},
            "verify": {...}, "bbox_state": {"AP50": ...}}`` of floats on the main process;
            ``{}`` on other ranks or when no image was processed.
        """
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._predictions, dst=0)
            predictions = list(itertools.chain(*gathered))
            state_gt = list(itertools.chain(*comm.gather(self._state_gt, dst=0)))
        else:
            predictions, state_gt = self._predictions, self._state_gt
        if self._distributed and not comm.is_main_process():
            self._coco_evaluator.evaluate()  # takes part in its gather; returns {}
            return {}

        by_image = {}
        for pred in predictions:
            by_image.setdefault(int(pred["image_id"]), pred)  # an image seen twice counts once
        if not by_image:
            self._coco_evaluator.evaluate()
            logger.warning("[BikeStateEvaluator] no image was processed; nothing to evaluate.")
            return {}
        image_ids = sorted(by_image)
        gt = self._load_ground_truth()
        unknown = [i for i in image_ids if i not in gt]
        if unknown:
            raise DataError(
                f"BikeStateEvaluator: image_id {unknown[0]} (and {len(unknown) - 1} more) of the "
                f"predictions is not in dataset '{self._dataset_name}'"
            )
        gt = {i: gt[i] for i in image_ids}
        part_names = list(self._metadata.thing_classes)
        state_names = list(self._metadata.get("state_classes", STATE_NAMES))
        num_dets = sum(len(p["scores"]) for p in by_image.values())

        results = OrderedDict()
        timer = _SectionTimer()
        with timer("bbox"):
            results["bbox"] = self._eval_bbox(image_ids, gt, by_image, part_names, num_dets)
        with timer("bbox_present"):
            for key, rescore in (("bbox_present", False), ("bbox_present_rescored", True)):
                results[key] = self._eval_bbox_present(image_ids, gt, by_image, part_names,
                                                       state_names, rescore)
        with timer("state"):
            matched = match_pairs(by_image, gt, self._match_iou)
            state, state_cm = state_metrics(matched["pair_gt_state"],
                                              matched["pair_pred_state"], state_names,
                                              matched["pair_part"], part_names)
            results["state"] = state
            if state_gt:
                results["state_gt"] = _state_gt_metrics(state_gt, state_names)
        with timer("verify"):
            pairs = V.verdict_pairs(by_image, gt, len(part_names), self.operating_point,
                                    state_names)
            results["verify"], verify_cm = V.verification_metrics(pairs, state_names)
            results["verify"]["score_thresh"] = self.operating_point.score_thresh
            results["verify"]["presence_thresh"] = (
                float("nan") if self.operating_point.presence_thresh is None
                else self.operating_point.presence_thresh)
            results["verify_loc"], _ = V.verification_metrics(V.localized(pairs, state_names),
                                                             state_names)
            self.pairs = pairs
        with timer("bbox_state"):
            results["bbox_state"] = {"AP50": bbox_state_ap50(
                image_ids, gt, by_image, len(part_names), len(state_names), self._max_dets)}

        rows = per_part_state_accuracy(matched, part_names)
        for row, verify_row in zip(rows, V.per_part_verification(pairs, part_names,
                                                                 state_names)):
            row.update(verify_row)
            row["AP"] = results["bbox"].get(f"AP-{row['part']}", float("nan"))
            row["AP_present"] = results["bbox_present"].get(f"AP-{row['part']}", float("nan"))
        self._log(results, rows, state_cm, verify_cm, state_names)
        if self._output_dir:
            with timer("files"):
                self._write_files(results, rows, by_image, pairs, state_cm, verify_cm,
                                  state_names)
        # Seconds per section of the last evaluate(), for the benchmark and the log.
        self.timings = dict(timer.seconds)
        logger.info("BikeStateEvaluator time per section: "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()))
        for task in results.values():
            for key, value in task.items():
                task[key] = float(value)
        return copy.deepcopy(results)

    def _eval_bbox(self, image_ids, gt, by_image, part_names, num_dets):
        """``bbox/*`` from detectron2's COCOEvaluator; 0 AP (not NaN) when nothing was detected."""
        coco = self._coco_evaluator.evaluate(img_ids=image_ids).get("bbox")
        if num_dets > 0 and coco is not None:
            return dict(coco)
        # COCOEvaluator answers NaN without any detection; AP's definition gives 0 where there
        # is ground truth (nothing recalled), NaN where there is none.
        anns = self._gt_annotations(image_ids, gt)
        coco_eval = coco_bbox_eval(image_ids, anns, [], range(1, len(part_names) + 1),
                                     max_dets=self._max_dets)
        return standard_ap(coco_eval, part_names)

    def _eval_bbox_present(self, image_ids, gt, by_image, part_names, state_names, rescore):
        """``AP, AP50, AP75, AP-<part>`` on present parts only; with ``rescore`` each score is
        multiplied by the detection's probability of not being absent."""
        absent = state_names.index("absent")
        anns = [a for a in self._gt_annotations(image_ids, gt) if a["state"] != absent]
        dets = []
        for image_id in image_ids:
            pred = by_image[image_id]
            scores = pred["scores"].astype(np.float64)
            if rescore and len(scores):
                scores = scores * (1.0 - pred["state_scores"][:, absent].astype(np.float64))
            for box, cls, score in zip(xyxy_to_xywh(pred["boxes"]).tolist(),
                                       pred["classes"].tolist(), scores.tolist()):
                dets.append({"image_id": image_id, "category_id": cls + 1, "bbox": box,
                             "score": score})
        # Area "all" only (no APs/m/l): a quarter of the per-image work of a standard COCOeval,
        # same AP / AP50 / AP75 as its summary.
        coco_eval = coco_bbox_eval(image_ids, anns, dets, range(1, len(part_names) + 1),
                                     standard=False, max_dets=self._max_dets)
        iou_thrs = list(np.round(coco_eval.params.iouThrs, 2))
        results = {"AP": mean_ap(coco_eval),
                   "AP50": mean_ap(coco_eval, iou_index=iou_thrs.index(0.5)),
                   "AP75": mean_ap(coco_eval, iou_index=iou_thrs.index(0.75))}
        for k, name in enumerate(part_names):
            results[f"AP-{name}"] = mean_ap(coco_eval, category_index=k)
        return results

    @staticmethod
    def _gt_annotations(image_ids, gt):
        """COCO-style ground-truth dicts (internal category id = part index + 1)."""
        anns = []
        for image_id in image_ids:
            g = gt[image_id]
            for box, cls, state, crowd in zip(xyxy_to_xywh(g["boxes"]).tolist(),
                                              g["classes"].tolist(), g["states"].tolist(),
                                              g["iscrowd"].tolist()):
                anns.append({"image_id": image_id, "category_id": cls + 1, "bbox": box,
                             "state": state, "iscrowd": int(crowd)})
        return anns

    def _load_ground_truth(self):
        """Per image id: boxes (M, 4) XYXY_ABS, classes, states, iscrowd, from DatasetCatalog."""
        if self._ground_truth is None:
            self._ground_truth = load_ground_truth(self._dataset_name)
        return self._ground_truth

    # ------------------------------------------------------------------ reporting

    def _log(self, results, rows, state_cm, verify_cm, state_names):
        for task in ("bbox_present", "state", "bbox_state"):
            headline = {k: v for k, v in results[task].items() if "-" not in k}
            logger.info(f"Evaluation results for {task}:\n" + create_small_table(headline))
        logger.info("Verification (what the report tells users, per image and part):\n"
                    + verification_table(results))
        state = results["state"]
        per_state = [[name, *(int(v) for v in state_cm[s]),
                      state[f"precision-{name}"], state[f"recall-{name}"], state[f"f1-{name}"]]
                     for s, name in enumerate(state_names)]
        logger.info(
            "States of matched detections (rows: ground truth, columns: prediction):\n"
            + tabulate(per_state, headers=["gt \\ pred", *state_names, "precision", "recall", "F1"],
                       tablefmt="pipe", floatfmt=".3f")
        )
        logger.info("Verdicts (rows: ground truth, columns: verdict):\n"
                    + tabulate([[name, *(int(v) for v in verify_cm[s])]
                                for s, name in enumerate(state_names)],
                               headers=["gt \\ verdict", *verdict_columns(state_names)],
                               tablefmt="pipe"))
        logger.info("Per-part results (AP in %, rates in [0, 1]):\n" + _per_part_table(rows))

    def _write_files(self, results, rows, by_image, pairs, state_cm, verify_cm, state_names):
        os.makedirs(self._output_dir, exist_ok=True)
        out = lambda name: os.path.join(self._output_dir, name)  # noqa: E731
        # json.dumps (C encoder) rather than json.dump (pure Python): 10x faster on 100k boxes.
        atomic_write_text(json.dumps(self._results_with_states(by_image, state_names)),
                          out(RESULTS_FILE))
        atomic_write_json({
            "state_names": state_names,
            "rows": "ground truth state", "columns": "predicted state (matched detections)",
            "matrix": state_cm.tolist(),
        }, out("state_confusion_matrix.json"), indent=2)
        atomic_write_json({
            "rows": state_names, "columns": verdict_columns(state_names),
            "description": "rows: ground-truth state, columns: the report's verdict, one count "
                           "per image and part",
            "operating_point": self.operating_point.describe(state_names),
            "matrix": verify_cm.tolist(),
        }, out("verdict_confusion_matrix.json"), indent=2)
        atomic_write_text(_per_part_csv(rows), out("per_part.csv"))
        atomic_write_json(_json_safe(results), out("bikestate_metrics.json"), indent=2)
        from .plots import plot_confusion_matrix, plot_per_part_ap, plot_verification_curves

        with atomic_open(out("state_confusion_matrix.png"), "wb") as f:
            plot_confusion_matrix(state_cm, state_names, f)
        with atomic_open(out("verdict_confusion_matrix.png"), "wb") as f:
            plot_confusion_matrix(verify_cm, state_names, f, title="Verdicts per image and part",
                                  column_names=verdict_columns(state_names), xlabel="verdict")
        with atomic_open(out("verification_curves.png"), "wb") as f:
            plot_verification_curves(pairs, state_names, self.operating_point, f)
        with atomic_open(out("per_part_ap.png"), "wb") as f:
            plot_per_part_ap(rows, f)

    def _results_with_states(self, by_image, state_names):
        """COCO result dicts (dataset category ids) with ``state``, ``state_name``, scores."""
        id_map = self._metadata.get("thing_dataset_id_to_contiguous_id")
        reverse = {v: k for k, v in id_map.items()} if id_map else None
        results = []
        for image_id in sorted(by_image):
            pred = by_image[image_id]
            # Rounded in numpy: per-value Python rounding dominates for 100k detections.
            boxes = np.round(xyxy_to_xywh(pred["boxes"]), 3).tolist()
            scores = np.round(pred["scores"].astype(np.float64), 6).tolist()
            state_scores = np.round(pred["state_scores"].astype(np.float64), 6).tolist()
            for box, cls, score, state, sscores in zip(
                boxes, pred["classes"].tolist(), scores, pred["states"].tolist(), state_scores,
            ):
                results.append({
                    "image_id": image_id,
                    "category_id": reverse[cls] if reverse else cls,
                    "bbox": box,
                    "score": score,
                    "state": state,
                    "state_name": state_names[state],
                    "state_scores": sscores,
                })
        return results


def load_ground_truth(dataset_name):
    """The ground truth of a registered bike dataset, as the evaluator scores it.

    Returns:
        dict[int, dict]: per image id, ``boxes`` (M, 4) XYXY_ABS, ``classes`` (M,) contiguous
        part ids, ``states`` (M,), ``iscrowd`` (M,) bool.
    """
    gt = {}
    for record in DatasetCatalog.get(dataset_name):
        anns = record.get("annotations", [])
        for ann in anns:
            if "state" not in ann:
                raise DataError(
                    f"dataset '{dataset_name}', image {record.get('file_name')}: an "
                    f"annotation of part {ann.get('category_id')} has no 'state'; register "
                    "the dataset with load_coco_json(..., extra_annotation_keys=['state'])"
                )
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        modes = {BoxMode(a["bbox_mode"]) for a in anns}
        if modes == {BoxMode.XYWH_ABS}:  # load_coco_json's mode: convert all at once
            boxes[:, 2:] += boxes[:, :2]
        elif modes and modes != {BoxMode.XYXY_ABS}:
            boxes = np.array([BoxMode.convert(list(a["bbox"]), a["bbox_mode"],
                                              BoxMode.XYXY_ABS) for a in anns],
                             dtype=np.float64).reshape(-1, 4)
        gt[int(record["image_id"])] = {
            "image_id": int(record["image_id"]),
            "boxes": boxes,
            "classes": np.array([a["category_id"] for a in anns], dtype=np.int64),
            "states": np.array([a["state"] for a in anns], dtype=np.int64),
            "iscrowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
        }
    return gt


def load_results(path, dataset_name, num_states=len(STATE_NAMES)):
    """Read back the detections of an evaluation folder (:data:`RESULTS_FILE`), per image.

    The inverse of what :class:`BikeStateEvaluator` writes: category ids are the dataset's,
    mapped back with its ``thing_dataset_id_to_contiguous_id``; boxes XYWH become XYXY. Every
    image of the dataset gets an entry (no detection: empty arrays).

    Args:
        path (str): the results file, or the evaluation folder holding it.
        dataset_name (str): the registered dataset the results are of.
        num_states (int): S, the length of every ``state_scores``.
    Returns:
        dict[int, dict]: per image id, ``boxes`` (N, 4) XYXY, ``scores`` (N,), ``classes`` (N,)
        contiguous ids, ``states`` (N,), ``state_scores`` (N, S), as the evaluator collects them.
    Raises:
        DataError: one line naming the file: unreadable, not a list of detections with
            ``state_scores``, or naming images or parts the dataset does not have.
    """
    if os.path.isdir(path):
        path = os.path.join(path, RESULTS_FILE)
    results = read_json(path, "results file")
    if not isinstance(results, list):
        raise DataError(f"{path}: expected a list of detections, found "
                        f"{type(results).__name__}")
    metadata = MetadataCatalog.get(dataset_name)
    id_map = metadata.get("thing_dataset_id_to_contiguous_id") or {
        k: k for k in range(len(metadata.thing_classes))}
    image_ids = {int(r["image_id"]) for r in DatasetCatalog.get(dataset_name)}
    columns = {i: ([], [], [], [], []) for i in image_ids}
    for k, det in enumerate(results):
        try:
            image_id, category = int(det["image_id"]), int(det["category_id"])
            x, y, w, h = (float(v) for v in det["bbox"])
            score = float(det["score"])
            state_scores = [float(v) for v in det["state_scores"]]
            state = int(det["state"]) if "state" in det else int(np.argmax(state_scores))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: detection {k} is not a detection with bbox, score and "
                            f"state_scores ({type(e).__name__}: {e})")
        if image_id not in columns:
            raise DataError(f"{path}: detection {k} is of image_id {image_id}, which dataset "
                            f"'{dataset_name}' does not have")
        if category not in id_map:
            raise DataError(f"{path}: detection {k} has category_id {category}, which dataset "
                            f"'{dataset_name}' does not have")
        if len(state_scores) != num_states:
            raise DataError(f"{path}: detection {k} has {len(state_scores)} state_scores, "
                            f"expected {num_states}")
        boxes, scores, classes, states, probs = columns[image_id]
        boxes.append((x, y, x + w, y + h))
        scores.append(score)
        classes.append(id_map[category])
        states.append(state)
        probs.append(state_scores)
    predictions = {}
    for image_id, (boxes, scores, classes, states, probs) in columns.items():
        predictions[image_id] = {
            "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
            "scores": np.array(scores, dtype=np.float32),
            "classes": np.array(classes, dtype=np.int32),
            "states": np.array(states, dtype=np.int32),
            "state_scores": np.array(probs, dtype=np.float32).reshape(-1, num_states),
        }
    return predictions


class _SectionTimer:
    """``with timer("name"):`` adds the wall time of the block to ``seconds["name"]``."""

    def __init__(self):
        self.seconds = OrderedDict()

    @contextlib.contextmanager
    def __call__(self, name):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


PER_PART_COLUMNS = ("part", "AP", "AP_present", "auroc_present", "halluc_at_95r",
                    "present_recall", "hallucination_rate", "not_found_rate", "damage_ap",
                    "damage_precision", "damage_recall", "macro_f1", "state_accuracy", "n_pairs",
                    "n_absent", "n_damaged", "n_matched")
# Files of an evaluation folder worth looking at as pictures (logged to W&B as images).
FIGURES = ("verification_curves.png", "verdict_confusion_matrix.png",
           "state_confusion_matrix.png", "per_part_ap.png")
# The verification figures shown together, each pair side by side: (label, key, counterpart).
VERIFICATION_ROWS = (
    ("present vs absent AUROC", "verify/auroc_present", None),
    ("hallucination at 95 % / 90 % present recall", "verify/halluc_at_95r",
     "verify/halluc_at_90r"),
    ("present recall / hallucination (operating point)", "verify/present_recall",
     "verify/hallucination_rate"),
    ("not found (present parts)", "verify/not_found_rate", None),
    ("damage AP", "verify/damage_ap", None),
    ("damage precision / recall", "verify/damage_precision", "verify/damage_recall"),
    ("verdict macro-F1 / majority baseline", "verify/macro_f1", "verify/macro_f1_majority"),
    ("localized: present recall / macro-F1", "verify_loc/present_recall", "verify_loc/macro_f1"),
)


def verdict_columns(state_names):
    """Column names of the verdict confusion matrix: the states, then ``not_found``."""
    return list(state_names) + [NOT_FOUND]


def verification_table(results):
    """The verification figures as a table, each rate beside its counterpart.

    Args:
        results (dict): evaluation results, nested (``{"verify": {...}}``) or flat
            (``{"verify/macro_f1": ...}``); missing or undefined figures show as n/a.
    """
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in value.items()})
        else:
            flat[key] = value

    def fmt(key):
        value = flat.get(key) if key else None
        return "n/a" if value is None or value != value else f"{value:.3f}"

    return tabulate([[label, fmt(key) + ("" if other is None else f" / {fmt(other)}")]
                     for label, key, other in VERIFICATION_ROWS],
                    headers=["verification", "value"], tablefmt="github")


def _per_part_csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_PART_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _per_part_table(rows):
    return tabulate([[row.get(c) for c in PER_PART_COLUMNS] for row in rows],
                    headers=list(PER_PART_COLUMNS), tablefmt="pipe", floatfmt=".3f",
                    numalign="right")


def _json_safe(obj):
    """NaN is not JSON; write it as null."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj



def _state_gt_metrics(state_gt, state_names):
    """``state_gt/*``: accuracy, macro-F1 and per-state one-vs-rest AUC of the state head on
    ground-truth boxes. ``state_gt`` is a list of (gt states (M,), probabilities (M, S))."""
    gt = np.concatenate([g for g, _ in state_gt]).astype(np.int64)
    probs = np.concatenate([p for _, p in state_gt]).reshape(len(gt), len(state_names))
    figures, _ = state_metrics(gt, probs.argmax(axis=1), state_names)
    results = {"accuracy": figures["accuracy"], "macro_f1": figures["macro_f1"],
               "num_boxes": float(len(gt))}
    for s, name in enumerate(state_names):
        results[f"f1-{name}"] = figures[f"f1-{name}"]
        results[f"auroc-{name}"] = V.roc_auc(probs[:, s], gt == s)
    return results
