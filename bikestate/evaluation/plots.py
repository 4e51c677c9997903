"""Figures of the evaluation: confusion matrices, AP per part, verification curves (matplotlib,
Agg)."""
import os
import textwrap

import numpy as np

from ..constants import STATE_COLORS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix, state_names, file, title="Part states of matched detections",
                          column_names=None, xlabel="predicted state"):
    """Save an annotated (S, C) count matrix (rows ground truth, columns prediction) as PNG,
    each cell with its count and its share of the row.

    Args:
        matrix (ndarray): (S, C) counts.
        state_names (sequence[str]): S row names (and column names when C = S).
        file: a path or a binary file object.
        column_names (sequence[str] or None): C column names; default ``state_names``.
    """
    plt = _pyplot()
    matrix = np.asarray(matrix)
    row_sums = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_sums, out=np.zeros(matrix.shape, float), where=row_sums > 0)
    column_names = list(state_names if column_names is None else column_names)
    fig, ax = plt.subplots(figsize=(1.0 * len(column_names) + 1.2, 4.6), dpi=100)
    try:
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(column_names)), labels=column_names)
        ax.set_yticks(range(len(state_names)), labels=state_names)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ground-truth state")
        ax.set_title(title)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                color = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(matrix[i, j])}\n{shares[i, j]:.0%}", ha="center",
                        va="center", color=color, fontsize=9)
        fig.tight_layout()
        fig.savefig(file, format="png")
    finally:
        plt.close(fig)


def plot_per_part_ap(rows, file):
    """Save a horizontal bar chart of AP and present-only AP per part (percent) as PNG.

    Args:
        rows (list[dict]): per-part rows with ``part``, ``AP``, ``AP_present``.
        file: a path or a binary file object.
    """
    plt = _pyplot()
    parts = [r["part"] for r in rows]
    ap = np.nan_to_num(np.array([r.get("AP", np.nan) for r in rows], dtype=float))
    ap_present = np.nan_to_num(np.array([r.get("AP_present", np.nan) for r in rows], dtype=float))
    y = np.arange(len(parts))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(parts) + 1.2), dpi=100)
    try:
        ax.barh(y - 0.2, ap, height=0.4, label="AP (all parts)", color=STATE_COLORS[2])
        ax.barh(y + 0.2, ap_present, height=0.4, label="AP (present parts)",
                color=STATE_COLORS[0])
        ax.set_yticks(y, labels=parts, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("AP (%)")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8,
                  frameon=False)
        fig.tight_layout()
        fig.savefig(file, format="png")
    finally:
        plt.close(fig)


def plot_verification_curves(pairs, state_names, operating_point, file):
    """Save the present-vs-absent ROC and the per-state precision-recall curves as one PNG.

    Left: ROC of P(present) over all (image, part) pairs, with the operating point (the share of
    absent parts reported present against the share of present parts reported present) and the
    95 % present-recall line. Right: for each state, precision against recall when ranking the
    pairs by P(state) = score x p(state), that state's ground truth positive.

    Args:
        pairs (dict): :func:`bikestate.evaluation.verification.verdict_pairs`'s output.
        state_names (sequence[str]): S names.
        operating_point (OperatingPoint): the rule the verdicts were given with.
        file: a path or a binary file object.
    """
    from ..verdict import NOT_FOUND_ID, PRESENCE_FORMULAS
    from .verification import (retrieval_average_precision, retrieval_precision_recall_curve,
                               roc_auc, roc_curve)

    plt = _pyplot()
    absent = list(state_names).index("absent")
    present = pairs["gt_state"] != absent
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.4), dpi=100)
    try:
        if present.any() and (~present).any():
            fpr, tpr, _ = roc_curve(pairs["p_present"], present)
            formula = PRESENCE_FORMULAS[operating_point.presence]
            # Wrapped: the longest formula would run the legend out of the axes.
            label = textwrap.fill(f"P(present) = {formula}, AUROC "
                                  f"{roc_auc(pairs['p_present'], present):.3f}", 40)
            ax_roc.plot(fpr, tpr, color="black", label=label)
            said = (pairs["verdict"] != NOT_FOUND_ID) & (pairs["verdict"] != absent)
            ax_roc.plot([said[~present].mean()], [said[present].mean()], "o",
                        color=STATE_COLORS[1], label="operating point")
        ax_roc.axhline(0.95, color="grey", linestyle=":", linewidth=1, label="95 % present recall")
        ax_roc.plot([0, 1], [0, 1], color="lightgrey", linewidth=1)
        _unit_axes(ax_roc, "absent parts reported present (hallucination)",
                   "present parts reported present (recall)", "Present vs absent", "lower right")
        for s, name in enumerate(state_names):
            positive = pairs["gt_state"] == s
            if not positive.any():
                continue
            p_state = pairs["score"] * pairs["state_probs"][:, s]
            # Parts no detection speaks for are misses: the curve may stop short of recall 1.
            precision, recall, _ = retrieval_precision_recall_curve(p_state, positive)
            start = precision[:1] if len(precision) else [1.0]  # nothing ranked: one point
            ax_pr.step(np.r_[0.0, recall], np.r_[start, precision],
                       where="pre", color=STATE_COLORS[s % len(STATE_COLORS)],
                       label=f"{name}: AP {retrieval_average_precision(p_state, positive):.3f}")
        _unit_axes(ax_pr, "recall", "precision", "Per state, ranked by score x P(state)", "best")
        source = os.path.basename(operating_point.source)
        fig.suptitle(f"Verdicts at the {source} operating point", fontsize=10)
        fig.tight_layout()
        fig.savefig(file, format="png")
    finally:
        plt.close(fig)


def _unit_axes(ax, xlabel, ylabel, title, legend_loc):
    """Labels, title, [0, 1] limits and a small legend of a rate-vs-rate plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc=legend_loc, fontsize=8)


def plot_failure_heatmap(counts, part_names, kind_names, file, title="Failures per part and kind"):
    """Save a (P, K) count matrix of failures as an annotated heat map PNG: parts down, failure
    kinds across, each non-zero cell with its count.

    Args:
        counts (ndarray): (P, K) counts (:func:`bikestate.evaluation.failures.failure_counts`).
        part_names (sequence[str]): P row names.
        kind_names (sequence[str]): K column names.
        file: a path or a binary file object.
    """
    plt = _pyplot()
    counts = np.asarray(counts)
    top = max(int(counts.max()) if counts.size else 0, 1)
    fig, ax = plt.subplots(figsize=(0.75 * len(kind_names) + 2.6, 0.28 * len(part_names) + 1.9),
                           dpi=100)
    try:
        ax.imshow(counts, cmap="Reds", vmin=0, vmax=top, aspect="auto")
        ax.set_xticks(range(len(kind_names)), labels=[k.replace("_", "\n") for k in kind_names],
                      fontsize=8)
        ax.xaxis.tick_top()
        ax.set_yticks(range(len(part_names)), labels=part_names, fontsize=8)
        ax.set_title(title, fontsize=10)
        for i, j in zip(*np.nonzero(counts)):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > top / 2 else "black")
        fig.tight_layout()
        fig.savefig(file, format="png")
    finally:
        plt.close(fig)
