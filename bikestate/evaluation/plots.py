"""Figures of the evaluation: the state confusion matrix and AP per part (matplotlib, Agg)."""
import numpy as np

from ..constants import STATE_COLORS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix, state_names, file, title="Part states of matched detections"):
    """Save an annotated (S, S) count matrix (rows ground truth, columns prediction) as PNG.

    Args:
        matrix (ndarray): (S, S) counts.
        state_names (sequence[str]): S names.
        file: a path or a binary file object.
    """
    plt = _pyplot()
    matrix = np.asarray(matrix)
    row_sums = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_sums, out=np.zeros(matrix.shape, float), where=row_sums > 0)
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=100)
    try:
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(state_names)), labels=state_names)
        ax.set_yticks(range(len(state_names)), labels=state_names)
        ax.set_xlabel("predicted state")
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
