"""State-aware metrics of bike-part detections: pure numpy (+ pycocotools), no dataset catalog.

Everything here works on per-image dicts of numpy arrays, so it can be unit-tested and
benchmarked without detectron2's catalogs or a model:

* **predictions** of one image: ``{"image_id": int, "boxes": (N, 4) float XYXY_ABS,
  "scores": (N,) float, "classes": (N,) int part index, "states": (N,) int state index,
  "state_scores": (N, S) float, rows sum to 1}``;
* **ground truth** of one image: ``{"image_id": int, "boxes": (M, 4) float XYXY_ABS,
  "classes": (M,) int, "states": (M,) int, "iscrowd": (M,) bool (optional)}``.
  Crowd annotations are ignored by the state and verification metrics (COCO AP ignores them its
  own way).

Conventions (documented once here, used everywhere):

* AP values are in percent (0-100) like detectron2's ``COCOEvaluator``; rates, accuracies and
  F1 scores are fractions in [0, 1].
* A metric whose denominator is empty is ``float("nan")`` (a float, so detectron2's
  ``EvalHook`` and W&B accept it): e.g. the hallucination rate of a dataset without absent parts.
* AP with ground truth but no detection at all is 0.0 (nothing recalled); AP of a category or
  area range without ground truth is NaN (pycocotools' -1).
"""
import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..utils.boxes import xyxy_to_xywh

__all__ = [
    "MATCH_IOU",
    "pairwise_iou",
    "greedy_match",
    "match_pairs",
    "confusion_matrix",
    "state_metrics",
    "per_part_state_accuracy",
    "coco_bbox_eval",
    "coco_ap_at_iou",
    "bbox_state_ap50",
    "mean_ap",
    "standard_ap",
]

# IoU at which a detection matches a ground-truth part of the same class.
MATCH_IOU = 0.5


def _nan_div(num, den):
    """``num / den`` as a float, NaN when ``den`` is 0."""
    return float(num) / float(den) if den else float("nan")


def pairwise_iou(boxes1, boxes2):
    """IoU of every pair of XYXY boxes, the COCO way (no +1 on widths).

    Args:
        boxes1 (ndarray): (N, 4) XYXY_ABS.
        boxes2 (ndarray): (M, 4) XYXY_ABS.
    Returns:
        ndarray: (N, M) float64 IoU; 0 where the union is empty.
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    wh1 = np.clip(boxes1[:, 2:] - boxes1[:, :2], 0, None)
    wh2 = np.clip(boxes2[:, 2:] - boxes2[:, :2], 0, None)
    area1, area2 = wh1[:, 0] * wh1[:, 1], wh2[:, 0] * wh2[:, 1]
    lt = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _same_class_iou(pred_boxes, pred_classes, gt_boxes, gt_classes):
    """(N, M) IoU with -1 wherever the predicted part differs from the ground-truth part."""
    iou = pairwise_iou(pred_boxes, gt_boxes)
    iou[np.asarray(pred_classes)[:, None] != np.asarray(gt_classes)[None, :]] = -1.0
    return iou


def greedy_match(pred_scores, iou, iou_thresh=MATCH_IOU):
    """One-to-one greedy matching by score, as COCO does it for one IoU threshold.

    Detections are visited from the highest score down; each takes the still unmatched ground
    truth with the highest IoU if that IoU is >= ``iou_thresh`` (on equal IoUs the later ground
    truth, as pycocotools). Duplicates stay unmatched.

    Args:
        pred_scores (ndarray): (N,) detection scores.
        iou (ndarray): (N, M) IoU, negative where a pair may not match (other part).
        iou_thresh (float): minimum IoU of a match.
    Returns:
        ndarray: (N,) int64 index of the matched ground truth, -1 when unmatched.
    """
    num_pred, num_gt = iou.shape
    match = np.full(num_pred, -1, dtype=np.int64)
    if num_pred == 0 or num_gt == 0:
        return match
    order = np.argsort(-np.asarray(pred_scores), kind="stable")
    candidates = iou[order] >= iou_thresh
    rows = np.flatnonzero(candidates.any(axis=1))  # only detections that can match cost a loop
    taken = np.zeros(num_gt, dtype=bool)
    for row in rows:
        det = order[row]
        ious = np.where(taken, -1.0, iou[det])
        best = num_gt - 1 - int(ious[::-1].argmax())  # ties: the last, as pycocotools
        if ious[best] >= iou_thresh:
            match[det] = best
            taken[best] = True
    return match


def match_pairs(predictions, ground_truths, iou_thresh=MATCH_IOU):
    """Match detections one-to-one to ground truth (greedy by score, same part), per image.

    Args:
        predictions (dict[int, dict]): per image id, the predictions (module docstring). An
            image without an entry has no detection.
        ground_truths (dict[int, dict]): per image id, the ground truth; images without
            annotations may be missing or have empty arrays.
        iou_thresh (float): IoU of a match.
    Returns:
        dict of 1-d int64 arrays, one entry per matched (ground truth, detection) pair,
        concatenated over images: ``pair_part``, ``pair_gt_state``, ``pair_pred_state``.
    """
    pair_part, pair_gt, pair_pred = [], [], []
    for image_id, gt in ground_truths.items():
        gt_classes = np.asarray(gt["classes"], dtype=np.int64).reshape(-1)
        pred = predictions.get(image_id)
        if gt_classes.size == 0 or pred is None or len(pred["scores"]) == 0:
            continue
        keep = ~np.asarray(gt.get("iscrowd", np.zeros(gt_classes.size, bool)), dtype=bool)
        gt_classes = gt_classes[keep]
        gt_boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)[keep]
        gt_states = np.asarray(gt["states"], dtype=np.int64).reshape(-1)[keep]
        iou = _same_class_iou(pred["boxes"], pred["classes"], gt_boxes, gt_classes)
        match = greedy_match(np.asarray(pred["scores"], dtype=np.float64), iou, iou_thresh)
        matched = match >= 0
        pair_part.append(gt_classes[match[matched]])
        pair_gt.append(gt_states[match[matched]])
        pair_pred.append(np.asarray(pred["states"], dtype=np.int64)[matched])

    def cat(arrays):
        return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)

    return {"pair_part": cat(pair_part), "pair_gt_state": cat(pair_gt),
            "pair_pred_state": cat(pair_pred)}


def confusion_matrix(gt_states, pred_states, num_states):
    """(S, S) int64 counts: rows are ground-truth states, columns predicted states.

    Predicted values outside ``[0, S)`` are not counted.
    """
    gt_states = np.asarray(gt_states, dtype=np.int64)
    pred_states = np.asarray(pred_states, dtype=np.int64)
    ok = (pred_states >= 0) & (pred_states < num_states)
    flat = gt_states[ok] * num_states + pred_states[ok]
    return np.bincount(flat, minlength=num_states * num_states).reshape(num_states, num_states)


def state_metrics(gt_states, pred_states, state_names, gt_parts=None, part_names=None):
    """State metrics over matched (ground truth, detection) pairs.

    * ``accuracy``: share of pairs whose predicted state equals the ground-truth state.
    * ``precision-<s>``: among pairs predicted ``s``, the share whose ground truth is ``s``
      (NaN if ``s`` is never predicted); ``recall-<s>``: among pairs whose ground truth is
      ``s``, the share predicted ``s`` (NaN if ``s`` is not in the ground truth);
      ``f1-<s>`` = 2 TP / (#predicted s + #ground-truth s), i.e. the harmonic mean, 0 when one
      side is empty and NaN when both are.
    * ``macro_f1``: mean F1 over the states present in ground truth or prediction (sklearn's
      ``f1_score(average="macro")`` with ``zero_division=0``).
    * ``accuracy-<part>`` (when ``gt_parts`` is given): accuracy over that part's pairs.
    * ``num_pairs``: number of matched pairs.

    Args:
        gt_states, pred_states (ndarray): (P,) states of the matched pairs.
        state_names (sequence[str]): S names.
        gt_parts (ndarray or None): (P,) part index of each pair.
        part_names (sequence[str] or None): names of the parts.
    Returns:
        (dict[str, float], ndarray): the metrics and the (S, S) confusion matrix.
    """
    num_states = len(state_names)
    gt_states = np.asarray(gt_states, dtype=np.int64)
    pred_states = np.asarray(pred_states, dtype=np.int64)
    cm = confusion_matrix(gt_states, pred_states, num_states)
    tp = np.diag(cm)
    n_gt = cm.sum(axis=1)
    n_pred = cm.sum(axis=0)
    results = {"accuracy": _nan_div(tp.sum(), cm.sum())}
    f1s = []
    for s, name in enumerate(state_names):
        results[f"precision-{name}"] = _nan_div(tp[s], n_pred[s])
        results[f"recall-{name}"] = _nan_div(tp[s], n_gt[s])
        f1 = _nan_div(2 * tp[s], n_pred[s] + n_gt[s])
        results[f"f1-{name}"] = f1
        if n_pred[s] + n_gt[s] > 0:
            f1s.append(f1)
    results["macro_f1"] = float(np.mean(f1s)) if f1s else float("nan")
    results["num_pairs"] = float(len(gt_states))
    if gt_parts is not None and part_names is not None:
        gt_parts = np.asarray(gt_parts, dtype=np.int64)
        correct = gt_states == pred_states
        for p, name in enumerate(part_names):
            sel = gt_parts == p
            results[f"accuracy-{name}"] = _nan_div(correct[sel].sum(), sel.sum())
    return results, cm


def per_part_state_accuracy(matched, part_names):
    """Per part: ``part``, ``n_matched`` and ``state_accuracy`` over its matched pairs (NaN if
    none), from :func:`match_pairs`'s output."""
    correct = matched["pair_gt_state"] == matched["pair_pred_state"]
    rows = []
    for p, name in enumerate(part_names):
        pairs = matched["pair_part"] == p
        rows.append({"part": name, "n_matched": int(pairs.sum()),
                     "state_accuracy": _nan_div(correct[pairs].sum(), pairs.sum())})
    return rows


# ------------------------------------------------------------------------------ COCO AP


def _coco_from_lists(image_ids, category_ids, annotations):
    coco = COCO()
    coco.dataset = {
        "images": [{"id": int(i)} for i in image_ids],
        "categories": [{"id": int(c)} for c in category_ids],
        "annotations": annotations,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_bbox_eval(image_ids, gt_annotations, detections, category_ids, iou_thrs=None,
                   standard=True, max_dets=100):
    """Run pycocotools' official bbox COCOeval on in-memory ground truth and detections.

    Unlike ``COCO.loadRes`` this accepts an empty detection list (AP 0 where there is ground
    truth). Inputs are not modified.

    Args:
        image_ids (iterable[int]): images evaluated (also those without annotations).
        gt_annotations (list[dict]): ``image_id``, ``category_id``, ``bbox`` (XYWH), optional
            ``iscrowd`` and ``area`` (default w * h).
        detections (list[dict]): ``image_id``, ``category_id``, ``bbox`` (XYWH), ``score``.
        category_ids (iterable[int]): every category id that may occur.
        iou_thrs (sequence[float] or None): IoU thresholds; None = COCO's .50:.05:.95.
        standard (bool): True: COCO's 4 area ranges and maxDets [1, 10, max_dets], and
            ``summarize()`` fills ``stats``. False: area "all" and ``max_dets`` only, no
            summary (faster; read ``eval["precision"]`` or use :func:`mean_ap`).
        max_dets (int): detections kept per image (highest scores first).
    Returns:
        COCOeval: evaluated and accumulated (``stats`` filled when ``standard``).
    """
    image_ids = sorted({int(i) for i in image_ids})
    category_ids = sorted({int(c) for c in category_ids})
    gts = []
    for k, ann in enumerate(gt_annotations, start=1):
        x, y, w, h = (float(v) for v in ann["bbox"])
        gts.append({
            "id": k, "image_id": int(ann["image_id"]), "category_id": int(ann["category_id"]),
            "bbox": [x, y, w, h], "area": float(ann.get("area", w * h)),
            "iscrowd": int(ann.get("iscrowd", 0)),
        })
    dts = []
    for k, det in enumerate(detections, start=1):
        x, y, w, h = (float(v) for v in det["bbox"])
        dts.append({
            "id": k, "image_id": int(det["image_id"]), "category_id": int(det["category_id"]),
            "bbox": [x, y, w, h], "area": w * h, "score": float(det["score"]), "iscrowd": 0,
        })
    coco_gt = _coco_from_lists(image_ids, category_ids, gts)
    coco_dt = _coco_from_lists(image_ids, category_ids, dts)
    coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
    coco_eval.params.imgIds = image_ids
    coco_eval.params.catIds = category_ids
    if iou_thrs is not None:
        coco_eval.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
    if standard:
        coco_eval.params.maxDets = [1, 10, max_dets]
    else:
        coco_eval.params.areaRng = [[0 ** 2, 1e5 ** 2]]
        coco_eval.params.areaRngLbl = ["all"]
        coco_eval.params.maxDets = [max_dets]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
        if standard:
            coco_eval.summarize()
    return coco_eval


def mean_ap(coco_eval, iou_index=None, category_index=None):
    """AP in percent from an accumulated COCOeval, the way ``summarize`` averages it.

    Averages ``eval["precision"]`` over recall thresholds, the IoU threshold ``iou_index``
    (all when None) and the category ``category_index`` (all when None), area "all" and the
    last maxDets, skipping -1 entries (no ground truth). NaN when nothing is left.
    """
    precision = coco_eval.eval["precision"]  # (T IoUs, R recalls, K categories, A areas, M)
    area = list(coco_eval.params.areaRngLbl).index("all")
    precision = precision[:, :, :, area, -1]
    if iou_index is not None:
        precision = precision[iou_index: iou_index + 1]
    if category_index is not None:
        precision = precision[:, :, category_index]
    precision = precision[precision > -1]
    return float(np.mean(precision) * 100) if precision.size else float("nan")


def standard_ap(coco_eval, per_category_names=None):
    """``AP``, ``AP50``, ``AP75`` (percent) and ``AP-<name>`` per category from a standard eval.

    ``per_category_names`` lists the names in the order of ``params.catIds``.
    """
    stats = coco_eval.stats
    results = {
        name: float(stats[i] * 100) if stats[i] >= 0 else float("nan")
        for i, name in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl"])
    }
    if per_category_names is not None:
        for k, name in enumerate(per_category_names):
            results[f"AP-{name}"] = mean_ap(coco_eval, category_index=k)
    return results


def coco_ap_at_iou(image_ids, ground_truths, predictions, iou_thresh=0.5, max_dets=100):
    """Per-category COCO AP at one IoU threshold, area "all", identical to pycocotools.

    A vectorised re-implementation of ``COCOeval.evaluate`` + ``accumulate`` for one IoU
    threshold and the "all" area range: per image and category the ``max_dets`` best
    detections are matched greedily by score to the unmatched ground truth of highest IoU
    (ties as pycocotools), then per category detections of all images are ranked by score
    (stable: image order, then score order within the image, as pycocotools concatenates
    them), and precision is interpolated at the 101 recall thresholds 0:.01:1.
    ``tests/evaluation/test_metrics.py`` checks it against pycocotools on random data.
    Crowd ground truth is not supported (use :func:`coco_bbox_eval`); ground-truth boxes must
    be valid (x1 >= x0, y1 >= y0), as the dataset validator ensures.

    Args:
        image_ids (iterable[int]): evaluated images.
        ground_truths (dict[int, dict]): ``boxes`` (M, 4) XYXY, ``classes`` (M,) category.
        predictions (dict[int, dict]): ``boxes`` (N, 4) XYXY, ``scores`` (N,), ``classes``.
    Returns:
        dict[int, ndarray]: per category with ground truth, the (101,) interpolated precision.
    """
    image_ids = sorted({int(i) for i in image_ids})
    det_cat, det_score, det_img, det_pos, det_tp, gt_cats = [], [], [], [], [], []
    for img_index, image_id in enumerate(image_ids):
        gt = ground_truths.get(image_id)
        gt_classes = np.zeros(0, np.int64) if gt is None else np.asarray(gt["classes"], np.int64)
        gt_boxes = np.zeros((0, 4)) if gt is None else gt["boxes"]
        gt_cats.append(gt_classes)
        pred = predictions.get(image_id)
        if pred is None or len(pred["scores"]) == 0:
            continue
        scores = np.asarray(pred["scores"], dtype=np.float64)
        classes = np.asarray(pred["classes"], dtype=np.int64)
        order = np.argsort(-scores, kind="mergesort")
        # Rank of each detection within its category, best first: pycocotools keeps max_dets.
        sorted_classes = classes[order]
        rank = np.empty(order.size, np.int64)
        by_class = np.argsort(sorted_classes, kind="mergesort")
        starts = np.searchsorted(sorted_classes[by_class], sorted_classes[by_class], side="left")
        rank[by_class] = np.arange(order.size) - starts
        keep = order[rank < max_dets]
        iou = _same_class_iou(np.asarray(pred["boxes"])[keep], classes[keep], gt_boxes,
                              gt_classes)
        match = greedy_match(scores[keep], iou, min(iou_thresh, 1 - 1e-10))
        sorted_keep = np.argsort(-scores[keep], kind="mergesort")
        # pycocotools ignores unmatched detections outside the area range [0, 1e10]; only
        # degenerate (inverted) boxes have a negative area.
        kept_boxes = np.asarray(pred["boxes"], dtype=np.float64)[keep][sorted_keep]
        area = (kept_boxes[:, 2] - kept_boxes[:, 0]) * (kept_boxes[:, 3] - kept_boxes[:, 1])
        matched = match[sorted_keep] >= 0
        counted = matched | ((area >= 0) & (area <= 1e10))
        det_cat.append(classes[keep][sorted_keep][counted])
        det_score.append(scores[keep][sorted_keep][counted])
        det_tp.append(matched[counted])
        det_img.append(np.full(counted.sum(), img_index))
        det_pos.append(np.flatnonzero(counted))
    gt_cats = np.concatenate(gt_cats) if gt_cats else np.zeros(0, np.int64)
    categories, num_gt = np.unique(gt_cats, return_counts=True)
    if det_cat:
        det_cat, det_score, det_tp = map(np.concatenate, (det_cat, det_score, det_tp))
        det_img, det_pos = np.concatenate(det_img), np.concatenate(det_pos)
        ranked = np.lexsort((det_pos, det_img, -det_score, det_cat))
        det_cat, det_tp = det_cat[ranked], det_tp[ranked]
    else:
        det_cat, det_tp = np.zeros(0, np.int64), np.zeros(0, bool)
    rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
    lo = np.searchsorted(det_cat, categories, side="left")
    hi = np.searchsorted(det_cat, categories, side="right")
    precisions = {}
    for cat, npig, a, b in zip(categories.tolist(), num_gt.tolist(), lo, hi):
        tp_flags = det_tp[a:b]
        tp = np.cumsum(tp_flags).astype(float)
        fp = np.cumsum(~tp_flags).astype(float)
        rc = tp / npig
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope
        q = np.zeros(rec_thrs.size)
        inds = np.searchsorted(rc, rec_thrs, side="left")
        valid = inds < pr.size
        q[valid] = pr[inds[valid]]
        precisions[cat] = q
    return precisions


def bbox_state_ap50(image_ids, ground_truths, predictions, num_parts, num_states,
                    max_dets=100, implementation="numpy"):
    """AP50 (percent) where a detection counts only when its part AND its state are right.

    COCO AP with one category per (part, state) pair (id ``part * S + state``), IoU threshold
    0.5, area "all", ``max_dets`` per image and category; the result is the mean over the
    (part, state) categories that have ground truth (COCO's rule), absent parts included. A
    detection of the right part with the wrong state is a false positive of its own (part,
    state) category and leaves the ground truth's category unrecalled.

    Args:
        image_ids (iterable[int]): evaluated images.
        ground_truths (dict[int, dict]), predictions (dict[int, dict]): as in the module doc.
        implementation (str): "numpy" (:func:`coco_ap_at_iou`, fast) or "pycocotools"
            (the reference; crowd ground truth needs it).
    Returns:
        float: AP50 in percent; NaN without ground truth.
    """
    def combined(per_image):  # (part, state) -> one category id
        return {image_id: dict(x, classes=np.asarray(x["classes"], np.int64) * num_states
                               + np.asarray(x["states"], np.int64))
                for image_id, x in per_image.items()}

    has_crowd = any(np.any(g.get("iscrowd", False)) for g in ground_truths.values())
    if implementation == "numpy" and not has_crowd:
        precisions = coco_ap_at_iou(image_ids, combined(ground_truths), combined(predictions),
                                    0.5, max_dets)
        if not precisions:
            return float("nan")
        return float(np.mean(np.stack(list(precisions.values()))) * 100)

    gts, dets = [], []
    for image_id in image_ids:
        gt = ground_truths.get(image_id)
        if gt is not None and len(gt["classes"]):
            crowd = np.asarray(gt.get("iscrowd", np.zeros(len(gt["classes"]), bool)))
            cats = np.asarray(gt["classes"]) * num_states + np.asarray(gt["states"]) + 1
            for box, cat, c in zip(xyxy_to_xywh(gt["boxes"]).tolist(), cats.tolist(),
                                   crowd.tolist()):
                gts.append({"image_id": image_id, "category_id": cat, "bbox": box,
                            "iscrowd": int(c)})
        pred = predictions.get(image_id)
        if pred is not None and len(pred["scores"]):
            cats = np.asarray(pred["classes"]) * num_states + np.asarray(pred["states"]) + 1
            for box, cat, score in zip(xyxy_to_xywh(pred["boxes"]).tolist(), cats.tolist(),
                                       np.asarray(pred["scores"]).tolist()):
                dets.append({"image_id": image_id, "category_id": cat, "bbox": box,
                             "score": score})
    if not gts:
        return float("nan")
    coco_eval = coco_bbox_eval(image_ids, gts, dets, range(1, num_parts * num_states + 1),
                               iou_thrs=[0.5], standard=False, max_dets=max_dets)
    return mean_ap(coco_eval)
