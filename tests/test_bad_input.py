"""Bad input to every command-line tool, in one table.

Each case gives a tool a mistake a user makes (a broken file, a wrong option, weights that do
not fit, an output folder that cannot be written) and checks what the user gets:

* a non-zero exit status (2: the user's input, or argparse's usage error);
* one line on stderr, ``<tool>.py: error: ...``, naming the file (or option) and the problem,
  and no Python traceback;
* nothing written: every file and folder under the case's workspace (inputs, outputs, temporary
  files) is byte for byte what it was before, and no new file or folder appeared.

The cases run in this process, each tool's ``main`` called with its own ``sys.argv``: a fresh
Python pays ~8 s of torch + detectron2 imports on a small machine. A handful also run as real
subprocesses (:func:`test_end_to_end_in_a_subprocess`) to show the exit status and stderr exactly
as a user sees them.
"""
import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from typing import Callable, Optional, Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from bikestate.constants import STATE_NAMES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(REPO, "tools")
SMALL_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu.yaml")
PLAIN_CONFIG = os.path.join(REPO, "configs", "bike_small_cpu_plain_detector.yaml")
# A tiny version of the small CPU model: the cases fail before or while loading weights, so the
# model only has to be built, never run for long.
TINY_MODEL = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "18", "MODEL.FPN.OUT_CHANNELS", "32",
              "MODEL.ROI_BOX_HEAD.FC_DIM", "64", "MODEL.ROI_STATE_HEAD.HIDDEN_DIM", "16",
              "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]
# Environment the tools read (data paths, debugging); cleared so the host's cannot leak in.
TOOL_ENV = ("TRAIN_JSON", "VAL_JSON", "TRAIN_CLEANED", "VAL_CLEANED", "OUTPUT_DIR",
            "BIKESTATE_DEBUG")
IMAGE_SIZE = (96, 64)  # width, height of the workspace's images


# ------------------------------------------------------------------------------- the workspace


def _part(name, left, top, state, width=20, height=16):
    return {"part_name": name,
            "absolute_bounding_box": {"left": left, "top": top, "width": width, "height": height},
            "object_state": STATE_NAMES[state], "object_state_class": state, "trust": 0.9}


def good_annotations():
    """A valid DelftBikes file: two images with a few parts in all four states."""
    return {
        "a.jpg": {"image": {"height": IMAGE_SIZE[1], "width": IMAGE_SIZE[0], "channels": 3},
                  "parts": {"saddle": _part("saddle", 10, 8, 0), "bell": _part("bell", 50, 30, 1),
                            "chain": _part("chain", 30, 40, 2)}},
        "b.jpg": {"parts": {"saddle": _part("saddle", 12, 6, 3), "bell": _part("bell", 60, 20, 0),
                            "lock": _part("lock", 40, 30, 0)}},
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A valid little dataset each case copies and then spoils: ``images/``, ``ann.json`` (the
    DelftBikes annotations) and ``train_coco.json``/``val_coco.json`` (converted)."""
    from bikestate.data.coco import convert_to_coco

    root = tmp_path_factory.mktemp("bad_input_template")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        pixels = (rng.random((IMAGE_SIZE[1], IMAGE_SIZE[0], 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / name, quality=90)
    (root / "ann.json").write_text(json.dumps(good_annotations()))
    convert_to_coco(str(root / "ann.json"), str(root / "images"), str(root / "train_coco.json"),
                    verbose=False)
    shutil.copy(root / "train_coco.json", root / "val_coco.json")
    (root / "a_file").write_text("a regular file where a folder is expected\n")
    return root


@pytest.fixture
def workspace(template, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    return ws


def snapshot(root):
    """Every file (with a hash of its bytes) and folder under ``root``."""
    state = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        state[rel + os.sep] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                state[os.path.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
    return state


# ------------------------------------------------------------------------- ways to spoil inputs


def write_json(name, obj):
    """Setup: write ``obj`` as ``<ws>/<name>``."""
    def setup(ws):
        (ws / name).write_text(json.dumps(obj))
    return setup


def annotations_with(change):
    """Setup: ``<ws>/bad.json`` = the good annotations after ``change(annotations)``."""
    def setup(ws):
        annotations = good_annotations()
        change(annotations)
        (ws / "bad.json").write_text(json.dumps(annotations))
    return setup


def set_box(image, part, **box):
    def change(annotations):
        annotations[image]["parts"][part]["absolute_bounding_box"].update(box)
    return change


def set_part(image, part, **values):
    def change(annotations):
        annotations[image]["parts"][part].update(values)
    return change


def write_bytes(name, data):
    def setup(ws):
        (ws / name).write_bytes(data)
    return setup


def write_text(name, text):
    def setup(ws):
        (ws / name).write_text(text)
    return setup


def unrelated_weights(name):
    """Setup: a valid .pth state dict of some other network (no tensor name in common)."""
    def setup(ws):
        torch.save({"model": {"encoder.layer1.weight": torch.zeros(8, 4),
                              "encoder.layer1.bias": torch.zeros(8),
                              "decoder.out.weight": torch.zeros(2, 8)}}, ws / name)
    return setup


def pickled_weights(name):
    """Setup: a detectron2-style pickled .pkl (numpy arrays), from a local path."""
    def setup(ws):
        with open(ws / name, "wb") as f:
            pickle.dump({"model": {"backbone.stem.conv1.weight": np.zeros((64, 3, 7, 7),
                                                                          np.float32)},
                         "__author__": "someone"}, f)
    return setup


def truncated_checkpoint(name):
    """Setup: the first half of a real .pth file (a download or copy cut short)."""
    def setup(ws):
        torch.save({"model": {"w": torch.arange(4096, dtype=torch.float32)}}, ws / name)
        data = (ws / name).read_bytes()
        (ws / name).write_bytes(data[: len(data) // 2])
    return setup


class WritesMarkerWhenUnpickled:
    """An object whose unpickling runs code: it creates the file ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def weights_running_code(name, marker):
    """Setup: a .pth whose full unpickling would create ``<ws>/<marker>``."""
    def setup(ws):
        torch.save({"model": {"w": torch.zeros(2)},
                    "payload": WritesMarkerWhenUnpickled(str(ws / marker))}, ws / name)
    return setup


def several(*setups):
    def setup(ws):
        for s in setups:
            s(ws)
    return setup


# ----------------------------------------------------------------------------------- the cases


@dataclasses.dataclass
class Case:
    """One bad input. ``argv`` and ``expect`` may contain ``{ws}`` (the workspace folder)."""

    id: str
    tool: str
    argv: Sequence[str]
    expect: Sequence[str]  # all of these appear in the one error line
    setup: Optional[Callable] = None
    env: dict = dataclasses.field(default_factory=dict)
    code: int = 2


def convert(*extra, json_file="{ws}/bad.json", images="{ws}/images", out="{ws}/out/coco.json"):
    return ["--json", json_file, "--images", images, "--out", out, "--quiet", *extra]


def split(*extra, json_file="{ws}/ann.json", out="{ws}/splits"):
    return ["--json", json_file, "--out", out, *extra]


def synth(*extra, out="{ws}/synth", num="2", seed="0"):
    return ["--out", out, "--num-images", num, "--seed", seed, "--image-size", "64x48",
            "--no-progress", *extra]


# train_net reads its data from the environment (the seed's variables), like a user's .env.
TRAIN_ENV = {"TRAIN_JSON": "{ws}/train_coco.json", "VAL_JSON": "{ws}/val_coco.json",
             "TRAIN_CLEANED": "{ws}/images", "VAL_CLEANED": "{ws}/images"}


def train(*opts, config=SMALL_CONFIG):
    return ["--config-file", config, *opts, *TINY_MODEL, "OUTPUT_DIR", "{ws}/run",
            "SOLVER.MAX_ITER", "1", "SOLVER.MAX_EPOCHS", "0", "DATALOADER.NUM_WORKERS", "0",
            "WANDB.MODE", "disabled"]


def predict(*opts, inputs=("{ws}/images",), output="{ws}/inspection", config=SMALL_CONFIG):
    return ["--config-file", config, "--output", output, "--input", *inputs, *TINY_MODEL, *opts]


def export(*opts, output="{ws}/export", config=SMALL_CONFIG):
    return ["--config-file", config, "--output", output, *opts, *TINY_MODEL]


def serve(*flags, model, config=SMALL_CONFIG):
    return ["--model", model, *(["--config-file", config] if config else []), *flags,
            *TINY_MODEL]


def visualize(*opts, dataset="bike_val", output="{ws}/drawn", config=SMALL_CONFIG):
    return ["--config-file", config, "--dataset", dataset, "--output", output, "--num", "2",
            *opts]


CASES = [
    # --- convert_to_coco: the annotation file ---------------------------------------------
    Case("convert-truncated-json", "convert_to_coco", convert(),
         ["{ws}/bad.json", "unparsable JSON at line 1"],
         write_text("bad.json", json.dumps(good_annotations())[:-40])),
    Case("convert-json-list-at-top", "convert_to_coco", convert(),
         ["{ws}/bad.json", "expected a JSON object keyed by image file name", "array"],
         write_json("bad.json", [good_annotations()])),
    Case("convert-record-without-parts", "convert_to_coco", convert(),
         ["{ws}/bad.json", "1 problem"],
         annotations_with(lambda a: a["b.jpg"].pop("parts"))),
    Case("convert-annotation-file-missing", "convert_to_coco",
         convert(json_file="{ws}/nope.json"), ["{ws}/nope.json", "not found"]),
    Case("convert-not-utf8", "convert_to_coco", convert(),
         ["{ws}/bad.json", "not UTF-8"], write_bytes("bad.json", b"\xff\xfe\x00garbage\x81")),
    # --- convert_to_coco: images ----------------------------------------------------------
    Case("convert-images-folder-missing", "convert_to_coco",
         convert(json_file="{ws}/ann.json", images="{ws}/no_images"),
         ["{ws}/no_images", "images folder not found"]),
    Case("convert-image-listed-but-missing", "convert_to_coco", convert(), ["{ws}/bad.json"],
         annotations_with(lambda a: a.update({"c.jpg": a["a.jpg"]}))),
    Case("convert-image-garbage-bytes", "convert_to_coco", convert(json_file="{ws}/ann.json"),
         ["{ws}/ann.json", "1 problem"],
         write_bytes("images/b.jpg", os.urandom(2000))),
    Case("convert-image-zero-bytes", "convert_to_coco", convert(json_file="{ws}/ann.json"),
         ["{ws}/ann.json", "1 problem"], write_bytes("images/a.jpg", b"")),
    Case("convert-image-declared-0x0", "convert_to_coco", convert(), ["{ws}/bad.json"],
         annotations_with(lambda a: a["a.jpg"]["image"].update(height=0, width=0))),
    Case("convert-image-truncated-jpeg", "convert_to_coco", convert(json_file="{ws}/ann.json"),
         ["{ws}/ann.json", "1 problem"],
         lambda ws: (ws / "images/a.jpg").write_bytes((ws / "images/a.jpg").read_bytes()[:600])),
    # --- convert_to_coco: boxes and states ------------------------------------------------
    Case("convert-negative-box", "convert_to_coco", convert(), ["{ws}/bad.json", "1 problem"],
         annotations_with(set_box("a.jpg", "bell", width=-5))),
    Case("convert-box-wholly-outside", "convert_to_coco", convert(), ["{ws}/bad.json"],
         annotations_with(set_box("a.jpg", "bell", left=500, top=400))),
    Case("convert-zero-size-box", "convert_to_coco", convert(), ["{ws}/bad.json"],
         annotations_with(set_box("b.jpg", "lock", height=0))),
    Case("convert-non-numeric-box", "convert_to_coco", convert(), ["{ws}/bad.json"],
         annotations_with(set_box("b.jpg", "lock", left="ten"))),
    Case("convert-unknown-state", "convert_to_coco", convert(), ["{ws}/bad.json"],
         annotations_with(set_part("a.jpg", "saddle", object_state="rusty",
                                   object_state_class=None))),
    Case("convert-state-class-disagrees", "convert_to_coco", convert(), ["{ws}/bad.json"],
         annotations_with(set_part("a.jpg", "saddle", object_state="intact",
                                   object_state_class=1))),
    # --- convert_to_coco: options and output ----------------------------------------------
    Case("convert-unknown-on-invalid", "convert_to_coco", convert("--on-invalid", "ignore"),
         ["--on-invalid", "invalid choice", "'ignore'"]),
    Case("convert-categories-from-missing", "convert_to_coco",
         convert("--categories-from", "{ws}/nope_coco.json", json_file="{ws}/ann.json"),
         ["{ws}/nope_coco.json", "not found"]),
    Case("convert-output-under-a-file", "convert_to_coco",
         convert(json_file="{ws}/ann.json", out="{ws}/a_file/coco.json"),
         ["{ws}/a_file/coco.json", "cannot write"]),
    Case("convert-output-is-the-input", "convert_to_coco",
         convert(json_file="{ws}/ann.json", out="{ws}/ann.json"),
         ["{ws}/ann.json", "overwrite the input"]),
    # --- split_dataset --------------------------------------------------------------------
    Case("split-truncated-json", "split_dataset", split(json_file="{ws}/bad.json"),
         ["{ws}/bad.json", "unparsable JSON"], write_text("bad.json", '{"a.jpg": {"parts": {')),
    Case("split-record-without-parts", "split_dataset", split(json_file="{ws}/bad.json"),
         ["{ws}/bad.json", "malformed image records"],
         annotations_with(lambda a: a["a.jpg"].pop("parts"))),
    Case("split-annotation-file-missing", "split_dataset", split(json_file="{ws}/nope.json"),
         ["{ws}/nope.json", "not found"]),
    Case("split-val-fraction-above-1", "split_dataset", split("--val-fraction", "1.5"),
         ["val fraction", "[0, 1)", "1.5"]),
    Case("split-negative-test-fraction", "split_dataset", split("--test-fraction", "-0.1"),
         ["test fraction", "[0, 1)", "-0.1"]),
    Case("split-fractions-leave-no-training", "split_dataset",
         split("--val-fraction", "0.5", "--test-fraction", "0.5"), ["no images for training"]),
    Case("split-output-under-a-file", "split_dataset",
         split("--val-fraction", "0.5", "--test-fraction", "0", out="{ws}/a_file/splits"),
         ["{ws}/a_file/splits", "cannot write"]),
    # --- make_synthetic -------------------------------------------------------------------
    Case("synth-negative-count", "make_synthetic", synth(num="-3"), ["--num-images", "-3"]),
    Case("synth-count-not-a-number", "make_synthetic", synth(num="many"),
         ["--num-images", "'many'"]),
    Case("synth-bad-size", "make_synthetic", synth("--image-size", "640by480"),
         ["--image-size", "640by480"]),
    Case("synth-size-too-small", "make_synthetic", synth("--image-size", "8x8"),
         ["--image-size", "at least 64x48"]),
    Case("synth-probs-do-not-sum-to-1", "make_synthetic", synth("--state-probs", "0.5,0.5,0.5,0.5"),
         ["state probabilities", "sum to 1"]),
    Case("synth-probs-wrong-count", "make_synthetic", synth("--state-probs", "0.5,0.5"),
         ["--state-probs", "4 numbers"]),
    Case("synth-negative-prob", "make_synthetic", synth("--state-probs", "1.2,-0.2,0,0"),
         ["state probabilities", "non-negative"]),
    Case("synth-output-under-a-file", "make_synthetic", synth(out="{ws}/a_file/synth"),
         ["--out {ws}/a_file/synth", "not a folder"]),
    # --- train_net: config ----------------------------------------------------------------
    Case("train-config-missing", "train_net", train(config="{ws}/nope.yaml"),
         ["{ws}/nope.yaml", "does not exist"], env=TRAIN_ENV),
    Case("train-config-unknown-key", "train_net", train(config="{ws}/bad.yaml"),
         ["{ws}/bad.yaml", "NO_SUCH_KEY"],
         write_text("bad.yaml", f'_BASE_: "{SMALL_CONFIG}"\nMODEL:\n  NO_SUCH_KEY: 1\n'),
         env=TRAIN_ENV),
    Case("train-config-not-yaml", "train_net", train(config="{ws}/bad.yaml"),
         ["{ws}/bad.yaml", "not valid YAML", "line"], write_text("bad.yaml", "MODEL: [unclosed\n  WEIGHTS: {\n"),
         env=TRAIN_ENV),
    Case("train-config-empty", "train_net", train(config="{ws}/empty.yaml"),
         ["{ws}/empty.yaml", "found nothing"], write_text("empty.yaml", ""), env=TRAIN_ENV),
    Case("train-option-unknown-key", "train_net", train("SOLVER.NO_SUCH_KEY", "1"),
         ["SOLVER.NO_SUCH_KEY"], env=TRAIN_ENV),
    Case("train-state-refine-negative-epochs", "train_net",
         train("SOLVER.STATE_REFINE.EPOCHS", "-1"), ["SOLVER.STATE_REFINE.EPOCHS", ">= 0"],
         env=TRAIN_ENV),
    Case("train-state-refine-without-state-head", "train_net",
         train("SOLVER.STATE_REFINE.EPOCHS", "2", config=PLAIN_CONFIG),
         ["SOLVER.STATE_REFINE.EPOCHS", "PlainDetectorROIHeads", "no state head"],
         env=TRAIN_ENV),
    Case("train-optimizer-unknown", "train_net", train("SOLVER.OPTIMIZER", "Adam"),
         ["SOLVER.OPTIMIZER 'Adam' is unknown", "SGD, AdamW"], env=TRAIN_ENV),
    Case("train-scheduler-unknown", "train_net", train("SOLVER.LR_SCHEDULER_NAME", "Cosine"),
         ["SOLVER.LR_SCHEDULER_NAME 'Cosine' is unknown"], env=TRAIN_ENV),
    Case("train-plateau-factor-above-1", "train_net",
         train("SOLVER.LR_SCHEDULER_NAME", "ReduceLROnPlateau", "SOLVER.PLATEAU.FACTOR", "2.0"),
         ["SOLVER.PLATEAU.FACTOR must be in (0, 1)"], env=TRAIN_ENV),
    Case("train-best-checkpoint-mode-typo", "train_net",
         train("TEST.BEST_CHECKPOINT.MODE", "Min"),
         ["TEST.BEST_CHECKPOINT.MODE must be 'min' or 'max', not 'Min'"], env=TRAIN_ENV),
    Case("train-calibration-recall-zero", "train_net",
         train("TEST.BIKESTATE.CALIBRATION.PRESENT_RECALL", "0.0"),
         ["TEST.BIKESTATE.CALIBRATION.PRESENT_RECALL", "(0, 1]"], env=TRAIN_ENV),
    Case("train-dataset-not-registered", "train_net", train("DATASETS.TRAIN", '("nope",)'),
         ["'nope'", "not registered"], env=TRAIN_ENV),
    # --- train_net: data ------------------------------------------------------------------
    Case("train-data-json-missing", "train_net", train(), ["{ws}/nowhere.json"],
         env={**TRAIN_ENV, "TRAIN_JSON": "{ws}/nowhere.json"}),
    Case("train-only-train-json-set", "train_net", train(), ["VAL_JSON"],
         env={"TRAIN_JSON": "{ws}/train_coco.json", "TRAIN_CLEANED": "{ws}/images"}),
    Case("train-data-json-truncated", "train_net", train(), ["{ws}/bad.json"],
         write_text("bad.json", '{"images": [{"id": 1,'),
         env={**TRAIN_ENV, "TRAIN_JSON": "{ws}/bad.json"}),
    Case("train-data-delftbikes-invalid", "train_net", train(), ["{ws}/bad.json"],
         annotations_with(set_box("a.jpg", "bell", width=-5)),
         env={**TRAIN_ENV, "TRAIN_JSON": "{ws}/bad.json"}),
    # --- train_net: weights ---------------------------------------------------------------
    Case("train-weights-missing", "train_net", train("MODEL.WEIGHTS", "{ws}/nope.pth"),
         ["{ws}/nope.pth", "not found"], env=TRAIN_ENV),
    Case("train-weights-other-architecture", "train_net",
         train("MODEL.WEIGHTS", "{ws}/other.pth"), ["{ws}/other.pth", "another architecture"],
         unrelated_weights("other.pth"), env=TRAIN_ENV),
    Case("train-weights-local-pickle", "train_net", train("MODEL.WEIGHTS", "{ws}/model.pkl"),
         ["{ws}/model.pkl", "refusing", "MODEL.ALLOW_PICKLED_WEIGHTS True"],
         pickled_weights("model.pkl"), env=TRAIN_ENV),
    Case("train-weights-corrupt", "train_net", train("MODEL.WEIGHTS", "{ws}/broken.pth"),
         ["{ws}/broken.pth", "cannot read weights file"],
         truncated_checkpoint("broken.pth"), env=TRAIN_ENV),
    Case("train-weights-run-code-when-unpickled", "train_net",
         train("MODEL.WEIGHTS", "{ws}/payload.pth"),
         ["{ws}/payload.pth", "refusing", "could run code"],
         weights_running_code("payload.pth", "marker"), env=TRAIN_ENV),  # no marker appears
    # --- predict --------------------------------------------------------------------------
    Case("predict-empty-input-folder", "predict", predict(inputs=("{ws}/empty",)),
         ["no images found", "{ws}/empty"], lambda ws: (ws / "empty").mkdir()),
    Case("predict-input-missing", "predict", predict(inputs=("{ws}/no_photos",)),
         ["no images found", "{ws}/no_photos"]),
    Case("predict-config-missing", "predict", predict(config="{ws}/nope.yaml"),
         ["{ws}/nope.yaml", "does not exist"]),
    Case("predict-config-not-yaml", "predict", predict(config="{ws}/bad.yaml"),
         ["{ws}/bad.yaml", "not valid YAML"], write_text("bad.yaml", "MODEL: [unclosed\n")),
    Case("predict-option-unknown-key", "predict", predict("MODEL.NO_SUCH_KEY", "1"),
         [SMALL_CONFIG, "MODEL.NO_SUCH_KEY"]),
    Case("predict-option-without-value", "predict", predict("MODEL.WEIGHTS"),
         ["KEY VALUE pairs"]),
    Case("predict-threshold-above-1", "predict", predict("--confidence-threshold", "2"),
         ["confidence threshold", "[0, 1]"]),
    Case("predict-weights-missing", "predict", predict("MODEL.WEIGHTS", "{ws}/nope.pth"),
         ["{ws}/nope.pth", "not found"]),
    Case("predict-weights-other-architecture", "predict",
         predict("MODEL.WEIGHTS", "{ws}/other.pth"), ["{ws}/other.pth", "another architecture"],
         unrelated_weights("other.pth")),
    Case("predict-weights-local-pickle", "predict", predict("MODEL.WEIGHTS", "{ws}/model.pkl"),
         ["{ws}/model.pkl", "refusing", "MODEL.ALLOW_PICKLED_WEIGHTS True"],
         pickled_weights("model.pkl")),
    Case("predict-weights-corrupt", "predict", predict("MODEL.WEIGHTS", "{ws}/broken.pth"),
         ["{ws}/broken.pth", "cannot read weights file"], truncated_checkpoint("broken.pth")),
    Case("predict-output-under-a-file", "predict", predict(output="{ws}/a_file/inspection"),
         ["{ws}/a_file/inspection", "cannot create output folder"]),
    # --- export_model ---------------------------------------------------------------------
    Case("export-config-missing", "export_model", export(config="{ws}/nope.yaml"),
         ["{ws}/nope.yaml", "does not exist"]),
    Case("export-opset-without-aligned-roialign", "export_model", export("--opset", "11"),
         ["opset 11", "opset >= 16"]),
    Case("export-opset-with-torchscript", "export_model",
         export("--format", "torchscript", "--opset", "17"), ["--opset", "onnx only"]),
    Case("export-weights-missing", "export_model", export("MODEL.WEIGHTS", "{ws}/nope.pth"),
         ["{ws}/nope.pth", "not found"]),
    Case("export-sample-image-unreadable", "export_model",
         export("--sample-image", "{ws}/images/a.jpg"), ["{ws}/images/a.jpg", "cannot read"],
         write_bytes("images/a.jpg", b"not a picture at all")),
    Case("export-output-is-a-file", "export_model", export(output="{ws}/a_file"),
         ["{ws}/a_file", "is a file"]),


    # --- serve ----------------------------------------------------------------------------
    Case("serve-model-missing", "serve", serve(model="{ws}/nope"),
         ["{ws}/nope", "no such model folder or weights file"]),
    Case("serve-weights-without-config", "serve", serve(model="{ws}/other.pth", config=None),
         ["{ws}/other.pth", "is a weights file", "--config-file"],
         unrelated_weights("other.pth")),
    Case("serve-folder-without-weights", "serve", serve(model="{ws}/images"),
         ["{ws}/images", "no model_best.pth or model_final.pth"]),
    Case("serve-queue-size-0", "serve", serve("--queue-size", "0", model="{ws}/other.pth"),
         ["--queue-size must be at least 1"], unrelated_weights("other.pth")),
    Case("serve-max-upload-infinite", "serve",
         serve("--max-upload-mb", "inf", model="{ws}/other.pth"),
         ["--max-upload-mb must be a positive number", "got inf"],
         unrelated_weights("other.pth")),
    Case("serve-max-upload-below-a-byte", "serve",
         serve("--max-upload-mb", "1e-9", model="{ws}/other.pth"),
         ["--max-upload-mb must be a positive number", "got 1e-09"],
         unrelated_weights("other.pth")),
    Case("serve-save-dir-under-a-file", "serve",
         serve("--save-dir", "{ws}/a_file/saved", model="{ws}/other.pth"),
         ["{ws}/a_file/saved", "cannot create --save-dir"], unrelated_weights("other.pth")),
    # --- visualize_data -------------------------------------------------------------------
    Case("visualize-unknown-dataset", "visualize_data", visualize(dataset="bike_nope"),
         ["'bike_nope'", "unknown dataset"], env=TRAIN_ENV),
    Case("visualize-config-unknown-key", "visualize_data", visualize(config="{ws}/bad.yaml"),
         ["{ws}/bad.yaml", "NO_SUCH_KEY"],
         write_text("bad.yaml", f'_BASE_: "{SMALL_CONFIG}"\nINPUT:\n  NO_SUCH_KEY: 1\n'),
         env=TRAIN_ENV),
    Case("visualize-option-unknown-key", "visualize_data", visualize("DATASETS.NOPE", "1"),
         ["DATASETS.NOPE"], env=TRAIN_ENV),
    Case("visualize-config-missing", "visualize_data", visualize(config="{ws}/nope.yaml"),
         ["{ws}/nope.yaml", "does not exist"], env=TRAIN_ENV),
    Case("visualize-data-json-missing", "visualize_data", visualize(), ["{ws}/nowhere.json"],
         env={**TRAIN_ENV, "VAL_JSON": "{ws}/nowhere.json"}),
    Case("visualize-image-unreadable", "visualize_data", visualize(),
         ["{ws}/images/a.jpg", "cannot read image", "dataset bike_val"],
         write_bytes("images/a.jpg", b"not a picture at all"), env=TRAIN_ENV),
    Case("visualize-min-size-above-max-size", "visualize_data",
         visualize("--min-size", "2000", "--max-size", "1000"), ["--min-size 2000", "--max-size"],
         env=TRAIN_ENV),
    Case("visualize-output-under-a-file", "visualize_data",
         visualize(output="{ws}/a_file/drawn"), ["{ws}/a_file/drawn"], env=TRAIN_ENV),
]

# The issue asks for at least 25 distinct cases; a table that shrinks below that is a regression.
assert len({c.id for c in CASES}) == len(CASES) >= 25


# ------------------------------------------------------------------------------ running a tool


@functools.lru_cache(maxsize=None)
def load_tool(name):
    path = os.path.join(TOOLS_DIR, f"{name}.py")
    saved = sys.argv
    sys.argv = [path]  # tools decorated at import time name themselves after sys.argv[0]
    try:
        spec = importlib.util.spec_from_file_location(f"bad_input_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.argv = saved
    return module


def fill(value, ws):
    return value.replace("{ws}", str(ws))


@pytest.fixture(autouse=True)
def restore_logging():
    """Tools attach log handlers to the stderr of the moment; drop them after each case so a
    later case does not write to a closed capture (which prints a logging traceback)."""
    manager = logging.Logger.manager
    before = {name: list(lg.handlers) for name, lg in manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    root_before = list(logging.root.handlers)
    yield
    for name, lg in list(manager.loggerDict.items()):
        if isinstance(lg, logging.Logger):
            lg.handlers[:] = before.get(name, [])
    logging.root.handlers[:] = root_before


@pytest.fixture(autouse=True)
def forget_datasets():
    """detectron2's dataset catalog is global to the process; a tool run in a new Python starts
    with no bike_* datasets, so each case does too."""
    from bikestate.data.catalog import unregister_bike_dataset

    yield
    for split in ("train", "val", "test"):
        unregister_bike_dataset(f"bike_{split}")


def run_in_process(case, ws, monkeypatch, capfd):
    """Run ``case`` with its tool's main in this process; return (exit status, stderr)."""
    for var in TOOL_ENV:
        monkeypatch.delenv(var, raising=False)
    for var, value in case.env.items():
        monkeypatch.setenv(var, fill(value, ws))
    # Relative paths and the .env file are looked up from the working folder: the workspace.
    monkeypatch.chdir(ws)
    argv = [fill(a, ws) for a in case.argv]
    module = load_tool(case.tool)
    monkeypatch.setattr(sys, "argv", [os.path.join(TOOLS_DIR, f"{case.tool}.py"), *argv])
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        if case.tool == "train_net":
            module.cli()  # reads sys.argv, like detectron2's tools
        else:
            module.main(argv)
    return exit_info.value.code, capfd.readouterr().err


def check_answer(case, ws, code, stderr):
    assert "Traceback" not in stderr, stderr
    assert code == case.code, f"exit status {code}, stderr:\n{stderr}"
    errors = [line for line in stderr.splitlines() if f"{case.tool}.py: error" in line]
    assert len(errors) == 1, f"expected one error line, stderr:\n{stderr}"
    for text in case.expect:
        assert fill(text, ws) in errors[0], f"{fill(text, ws)!r} not in {errors[0]!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, workspace, monkeypatch, capfd):
    if case.setup is not None:
        case.setup(workspace)
    before = snapshot(workspace)
    code, stderr = run_in_process(case, workspace, monkeypatch, capfd)
    check_answer(case, workspace, code, stderr)
    assert snapshot(workspace) == before, "files were written, changed or removed"


# One case per tool kind, as a user runs it: a new Python, the real exit status and stderr.
SUBPROCESS_CASES = ["convert-image-garbage-bytes", "synth-probs-do-not-sum-to-1",
                    "train-config-unknown-key", "predict-weights-local-pickle",
                    "visualize-unknown-dataset"]


@pytest.fixture(scope="module")
def subprocess_runs(template, tmp_path_factory):
    """Start all subprocess cases at once (their imports overlap), then collect them."""
    by_id = {c.id: c for c in CASES}
    started = {}
    for case_id in SUBPROCESS_CASES:
        case = by_id[case_id]
        ws = tmp_path_factory.mktemp("subprocess") / "ws"
        shutil.copytree(template, ws)
        if case.setup is not None:
            case.setup(ws)
        env = {k: v for k, v in os.environ.items() if k not in TOOL_ENV}
        env.update({k: fill(v, ws) for k, v in case.env.items()})
        env["PYTHONWARNINGS"] = "ignore"
        proc = subprocess.Popen(
            [sys.executable, os.path.join(TOOLS_DIR, f"{case.tool}.py"),
             *[fill(a, ws) for a in case.argv]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ws, env=env)
        started[case_id] = (case, ws, snapshot(ws), proc)
    results = {}
    for case_id, (case, ws, before, proc) in started.items():
        _, stderr = proc.communicate(timeout=300)
        results[case_id] = (case, ws, before, proc.returncode, stderr)
    return results


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_end_to_end_in_a_subprocess(case_id, subprocess_runs):
    case, ws, before, code, stderr = subprocess_runs[case_id]
    check_answer(case, ws, code, stderr)
    assert snapshot(ws) == before, "files were written, changed or removed"


def test_debug_shows_the_real_exception(workspace, monkeypatch, capfd):
    """The one-line answer hides the traceback only by default: --debug and BIKESTATE_DEBUG=1
    let the exception through (a developer's traceback)."""
    from bikestate.utils.errors import DataError

    case = next(c for c in CASES if c.id == "convert-truncated-json")
    case.setup(workspace)
    debug_case = dataclasses.replace(case, argv=[*case.argv, "--debug"])
    with pytest.raises(DataError, match="unparsable JSON"):
        run_in_process(debug_case, workspace, monkeypatch, capfd)
    argv = [fill(a, workspace) for a in case.argv]  # no --debug this time: the environment
    monkeypatch.setattr(sys, "argv", [os.path.join(TOOLS_DIR, "convert_to_coco.py"), *argv])
    monkeypatch.setenv("BIKESTATE_DEBUG", "1")
    with pytest.raises(DataError, match="unparsable JSON"):
        load_tool("convert_to_coco").main(argv)
