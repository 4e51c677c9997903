"""Box format conversion shared by the evaluator, the report and the benchmarks (numpy)."""
import numpy as np


def xyxy_to_xywh(boxes):
    """(N, 4) XYXY boxes -> (N, 4) float64 XYWH, the COCO and report box format."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
