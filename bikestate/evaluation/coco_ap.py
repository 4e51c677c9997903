"""COCO average precision from numpy dicts (pycocotools underneath): box AP per part, AP at one
IoU, and the state-aware ``bbox_state`` AP50 (a detection counts only with the right state).

AP values are in percent, as :mod:`.conventions` says.
"""
import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..utils.boxes import xyxy_to_xywh
from .matching import greedy_match, same_class_iou

__all__ = ["coco_bbox_eval", "coco_ap_at_iou", "bbox_state_ap50", "mean_ap", "standard_ap"]


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
        iou = same_class_iou(np.asarray(pred["boxes"])[keep], classes[keep], gt_boxes,
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
