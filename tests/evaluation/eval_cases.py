"""Helpers of the evaluation tests: COCO-with-states files, registration, model-like outputs.

A plain module (not conftest) so that spawned worker processes of the distributed test can
import it too.
"""
import os
import uuid

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from coco_builders import coco_annotation, coco_with_states, write_json
from prediction_builders import prediction_instances

from bikestate.constants import STATE_NAMES
from bikestate.evaluation import BikeStateEvaluator


def write_coco_with_states(path, parts, images, annotations):
    """Write a "COCO with states" file (docs/data_formats.md).

    Args:
        parts (list[str]): category names, ids 1..K.
        images (list[int]): image ids (200 x 200).
        annotations (list[tuple]): (image_id, part index, [x0, y0, x1, y1], state).
    """
    coco = coco_with_states(
        [{"id": i, "file_name": f"img{i}.jpg", "height": 200, "width": 200} for i in images],
        [coco_annotation(k + 1, img, part + 1, box, state, state_name=True, trust=1.0)
         for k, (img, part, box, state) in enumerate(annotations)],
        categories=parts)
    write_json(coco, path)
    return path


def register_bike_json(json_file, name=None):
    """Register ``json_file`` keeping the states; return the dataset name."""
    name = name or f"eval_test_{uuid.uuid4().hex[:8]}"
    image_root = os.path.dirname(json_file)
    DatasetCatalog.register(
        name, lambda: load_coco_json(json_file, image_root, name,
                                     extra_annotation_keys=["state", "state_name", "trust"])
    )
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root,
                                  evaluator_type="bikestate", state_classes=list(STATE_NAMES))
    return name


def make_outputs(image_id, dets, num_states=4):
    """Model-like inputs/outputs of one image.

    Args:
        dets (list[tuple]): (part index, [x0, y0, x1, y1], score, state[, state_scores]).
    """
    rows = []
    for d in dets:
        if len(d) > 4:
            rows.append(list(d[4]))
        else:  # 0.7 on the predicted state, 0.1 elsewhere
            rows.append([0.7 if s == d[3] else 0.1 for s in range(num_states)])
    inst = prediction_instances((200, 200), [d[1] for d in dets], [d[2] for d in dets],
                                [d[0] for d in dets], rows, states=[d[3] for d in dets],
                                num_states=num_states)
    return {"image_id": image_id, "height": 200, "width": 200}, {"instances": inst}


INTACT, DAMAGED, ABSENT, OCCLUDED = range(4)
SADDLE, BELL, CHAIN = range(3)
PARTS = ["saddle", "bell", "chain"]

# Hand-built case. Image 3 has no annotation.
BOX_A, BOX_B, BOX_C = [10, 10, 50, 50], [100, 100, 120, 120], [60, 60, 160, 100]
BOX_D, BOX_E, BOX_F = [20, 20, 80, 60], [150, 10, 170, 30], [30, 120, 130, 160]
GT = [
    (1, SADDLE, BOX_A, INTACT),    # a
    (1, BELL, BOX_B, ABSENT),      # b: absent bell, hallucinated below
    (1, CHAIN, BOX_C, DAMAGED),    # c: damaged chain, predicted occluded (wrong state)
    (2, SADDLE, BOX_D, DAMAGED),   # d
    (2, BELL, BOX_E, OCCLUDED),    # e: missed (no detection)
    (2, CHAIN, BOX_F, ABSENT),     # f: absent chain, detected "absent" with a low score
]
DETS = {
    1: [
        (SADDLE, BOX_A, 0.9, INTACT),             # p1: right
        (SADDLE, [12, 12, 52, 52], 0.6, DAMAGED),  # p2: duplicate of a (IoU 0.82)
        (BELL, BOX_B, 0.8, DAMAGED),              # p3: hallucinated absent bell
        (CHAIN, BOX_C, 0.7, OCCLUDED),            # p4: wrong state
    ],
    2: [
        (SADDLE, BOX_D, 0.95, DAMAGED),           # p5: right
        (CHAIN, BOX_F, 0.3, ABSENT),              # p6: right state, below the verify score
    ],
    3: [
        (BELL, [10, 10, 30, 30], 0.55, DAMAGED),  # p7: false positive on an empty image
    ],
}


def run_evaluator(name, dets, model_output=None, **kwargs):
    """Feed ``dets`` (image id -> list of detections) through process() and evaluate()."""
    kwargs.setdefault("distributed", False)
    evaluator = BikeStateEvaluator(name, **kwargs)
    evaluator.reset()
    for image_id in sorted(dets):
        inp, out = make_outputs(image_id, dets[image_id])
        evaluator.process([inp], [out])
    return evaluator.evaluate()
