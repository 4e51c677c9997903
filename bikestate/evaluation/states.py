"""Part-state metrics on matched pairs: confusion matrix, per-state precision / recall / F1,
macro-F1 and per-part accuracy (the :mod:`.conventions` for empty denominators).
"""
import numpy as np

from .conventions import nan_div

__all__ = ["confusion_matrix", "state_metrics", "per_part_state_accuracy"]


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
    results = {"accuracy": nan_div(tp.sum(), cm.sum())}
    f1s = []
    for s, name in enumerate(state_names):
        results[f"precision-{name}"] = nan_div(tp[s], n_pred[s])
        results[f"recall-{name}"] = nan_div(tp[s], n_gt[s])
        f1 = nan_div(2 * tp[s], n_pred[s] + n_gt[s])
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
            results[f"accuracy-{name}"] = nan_div(correct[sel].sum(), sel.sum())
    return results, cm


def per_part_state_accuracy(matched, part_names):
    """Per part: ``part``, ``n_matched`` and ``state_accuracy`` over its matched pairs (NaN if
    none), from :func:`~bikestate.evaluation.matching.match_pairs`'s output."""
    correct = matched["pair_gt_state"] == matched["pair_pred_state"]
    rows = []
    for p, name in enumerate(part_names):
        pairs = matched["pair_part"] == p
        rows.append({"part": name, "n_matched": int(pairs.sum()),
                     "state_accuracy": nan_div(correct[pairs].sum(), pairs.sum())})
    return rows
