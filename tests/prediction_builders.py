"""Builder of model-like predictions (detectron2 ``Instances`` with part states) for the tests."""
import torch
from detectron2.structures import Boxes, Instances


def prediction_instances(image_size, boxes, scores, classes, state_scores, states=None,
                         num_states=4):
    """``Instances`` as a bikestate model returns them.

    Args:
        image_size (tuple[int, int]): (H, W).
        boxes (list): N boxes XYXY; scores (list): N; classes (list): N part ids.
        state_scores (list): N rows of state probabilities.
        states (list or None): N predicted states; default: the argmax of each row.
        num_states (int): S, for an image without detections (else the rows' length).
    """
    n = len(boxes)
    num_states = len(state_scores[0]) if n else num_states
    inst = Instances(image_size)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(n, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32).reshape(n)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64).reshape(n)
    inst.state_scores = torch.tensor(state_scores, dtype=torch.float32).reshape(n, num_states)
    inst.pred_states = (torch.tensor(states, dtype=torch.int64).reshape(n) if states is not None
                        else inst.state_scores.argmax(dim=1))
    return inst
