"""COCO conversion with states: exact output on a hand-built file, pycocotools and detectron2
read it, and the command line tool's errors, exit codes and all-or-nothing output."""
import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from bikestate.constants import PART_NAMES
from bikestate.data.coco import (category_names_for, convert_to_coco, load_coco_states,
                                 problems_report_path)
from bikestate.utils.errors import ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "convert_to_coco.py")


def box(left, top, width, height):
    return {"left": left, "top": top, "width": width, "height": height}


def hand_built():
    """Two images, listed out of name order; z.jpg has no size block (read from the file)."""
    return {
        "z.jpg": {"parts": {
            "saddle": {"part_name": "saddle", "absolute_bounding_box": box(5, 6, 10, 4),
                       "object_state": "damaged", "object_state_class": 1, "trust": 0.75},
            "bell": {"part_name": "bell", "absolute_bounding_box": box(-3, 2, 8, 8),
                     "object_state": "occluded", "object_state_class": 3}}},
        "a.jpg": {"image": {"height": 30, "width": 40, "channels": 3}, "parts": {
            "front_wheel": {"part_name": "front_wheel", "absolute_bounding_box": box(1, 2, 20, 25),
                            "object_state": "intact", "object_state_class": 0, "trust": 1.0},
            "dynamo": {"part_name": "dynamo", "absolute_bounding_box": box(30, 3, 2, 2),
                       "object_state": "absent", "object_state_class": 2, "trust": 0.5}}},
    }


@pytest.fixture
def tiny(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30), (90, 90, 90)).save(images / "a.jpg")
    Image.new("RGB", (24, 16), (200, 90, 90)).save(images / "z.jpg")
    json_path = tmp_path / "ann.json"
    json_path.write_text(json.dumps(hand_built()))
    return {"root": tmp_path, "images": str(images), "json": str(json_path)}


def test_output_equals_the_expected_coco(tiny):
    out = str(tiny["root"] / "coco" / "train_coco.json")
    stats = convert_to_coco(tiny["json"], tiny["images"], out, verbose=False)
    coco = json.load(open(out))
    assert coco["images"] == [
        {"id": 1, "file_name": "a.jpg", "height": 30, "width": 40},
        {"id": 2, "file_name": "z.jpg", "height": 16, "width": 24},  # size from the file
    ]
    cat = {n: i + 1 for i, n in enumerate(PART_NAMES)}
    assert coco["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": cat["front_wheel"], "bbox": [1, 2, 20, 25],
         "area": 500, "iscrowd": 0, "state": 0, "state_name": "intact", "trust": 1.0},
        {"id": 2, "image_id": 1, "category_id": cat["dynamo"], "bbox": [30, 3, 2, 2],
         "area": 4, "iscrowd": 0, "state": 2, "state_name": "absent", "trust": 0.5},
        {"id": 3, "image_id": 2, "category_id": cat["saddle"], "bbox": [5, 6, 10, 4],
         "area": 40, "iscrowd": 0, "state": 1, "state_name": "damaged", "trust": 0.75},
        # partly outside on the left: clipped to x = 0 (no trust in the input: none written)
        {"id": 4, "image_id": 2, "category_id": cat["bell"], "bbox": [0, 2, 5, 8],
         "area": 40, "iscrowd": 0, "state": 3, "state_name": "occluded"},
    ]
    assert [c["name"] for c in coco["categories"]] == list(PART_NAMES)
    assert [c["id"] for c in coco["categories"]] == list(range(1, 23))
    assert coco["state_categories"] == [{"id": 0, "name": "intact"}, {"id": 1, "name": "damaged"},
                                        {"id": 2, "name": "absent"}, {"id": 3, "name": "occluded"}]
    assert stats["images"] == 2 and stats["annotations"] == 4 and stats["clipped"] == 1
    assert stats["boxes_per_state"] == {"intact": 1, "damaged": 1, "absent": 1, "occluded": 1}
    assert stats["boxes_per_part"]["bell"] == 1 and stats["boxes_per_part"]["lock"] == 0
    assert stats["problems"] == 0 and stats["problems_path"] is None
    assert not os.path.exists(problems_report_path(out))


def test_ids_do_not_depend_on_the_input_order(tiny):
    first = str(tiny["root"] / "first.json")
    convert_to_coco(tiny["json"], tiny["images"], first, verbose=False)
    reordered = {k: hand_built()[k] for k in sorted(hand_built())}
    reordered_path = tiny["root"] / "reordered.json"
    reordered_path.write_text(json.dumps(reordered, indent=2))
    second = str(tiny["root"] / "second.json")
    convert_to_coco(str(reordered_path), tiny["images"], second, verbose=False)
    a, b = json.load(open(first)), json.load(open(second))
    a.pop("info"), b.pop("info")  # names the source file
    assert a == b


def test_pycocotools_and_detectron2_read_the_states(tiny):
    from detectron2.data.datasets import load_coco_json
    from pycocotools.coco import COCO

    out = str(tiny["root"] / "coco.json")
    convert_to_coco(tiny["json"], tiny["images"], out, verbose=False)
    coco = COCO(out)
    saddle = coco.getCatIds(catNms=["saddle"])
    (ann,) = coco.loadAnns(coco.getAnnIds(catIds=saddle))
    assert ann["state"] == 1 and coco.imgs[ann["image_id"]]["file_name"] == "z.jpg"

    dicts = load_coco_json(out, tiny["images"], extra_annotation_keys=["state"])
    states = {d["file_name"].split(os.sep)[-1]: [a["state"] for a in d["annotations"]]
              for d in dicts}
    assert states == {"a.jpg": [0, 2], "z.jpg": [1, 3]}
    assert load_coco_states(out)["annotations"][3]["state"] == 3


def test_categories_of_datasets_with_other_parts():
    assert category_names_for(["saddle", "bell"]) == list(PART_NAMES)
    assert category_names_for(["saddle", "mirror", "bell", "basket"]) == [
        "bell", "saddle", "basket", "mirror"]


def test_explicit_categories_keep_ids_of_another_file(tiny):
    names = ["saddle", "bell", "front_wheel", "dynamo", "mirror"]
    out = str(tiny["root"] / "coco.json")
    convert_to_coco(tiny["json"], tiny["images"], out, categories=names, verbose=False)
    coco = json.load(open(out))
    assert [(c["id"], c["name"]) for c in coco["categories"]] == list(enumerate(names, 1))
    assert coco["annotations"][0]["category_id"] == 3  # front_wheel
    with pytest.raises(DataError, match="parts not in the given category list: dynamo"):
        convert_to_coco(tiny["json"], tiny["images"], out, categories=names[:3], verbose=False)


def test_error_mode_writes_nothing_and_skip_mode_writes_a_report(tiny):
    ann = hand_built()
    ann["a.jpg"]["parts"]["dynamo"]["object_state"] = "stolen"
    ann["missing.jpg"] = {"parts": {}}
    bad = tiny["root"] / "bad.json"
    bad.write_text(json.dumps(ann))
    out = tiny["root"] / "out" / "coco.json"
    with pytest.raises(DataError) as info:
        convert_to_coco(str(bad), tiny["images"], str(out), verbose=False)
    assert str(info.value) == f"{bad}: 2 problems in annotations"
    assert not (tiny["root"] / "out").exists() or os.listdir(tiny["root"] / "out") == []

    stats = convert_to_coco(str(bad), tiny["images"], str(out), on_invalid="skip", verbose=False)
    assert stats["dropped_boxes"] == 1 and stats["dropped_images"] == 1
    assert sorted(os.listdir(out.parent)) == ["coco.json", "coco.problems.txt"]
    report = (out.parent / "coco.problems.txt").read_text().splitlines()
    assert report[2:] == [
        "a.jpg / dynamo: unknown state 'stolen' (expected one of intact, damaged, absent, "
        "occluded)",
        f"missing.jpg: image file not found: {os.path.join(tiny['images'], 'missing.jpg')}"]
    coco = json.load(open(out))
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 3

    # A later clean conversion to the same place removes the stale report.
    convert_to_coco(tiny["json"], tiny["images"], str(out), verbose=False)
    assert os.listdir(out.parent) == ["coco.json"]


def test_a_failed_write_in_skip_mode_leaves_the_report_and_the_output_as_they_were(
        tiny, monkeypatch):
    """The disk fills up while the COCO file is written: the problems report of this run must
    not stand beside the COCO file of the run before (it would describe another output)."""
    import errno

    import bikestate.utils.io as io_module

    out = tiny["root"] / "out" / "coco.json"
    convert_to_coco(tiny["json"], tiny["images"], str(out), on_invalid="skip", verbose=False)
    before = {name: (out.parent / name).read_bytes() for name in os.listdir(out.parent)}
    ann = hand_built()
    ann["a.jpg"]["parts"]["dynamo"]["object_state"] = "stolen"
    bad = tiny["root"] / "bad.json"
    bad.write_text(json.dumps(ann))
    sibling = io_module._temporary_sibling

    def disk_full_for_the_coco_file(path):
        if path == str(out):
            raise OSError(errno.ENOSPC, "No space left on device")
        return sibling(path)

    monkeypatch.setattr(io_module, "_temporary_sibling", disk_full_for_the_coco_file)
    with pytest.raises(ConfigError, match="No space left on device"):
        convert_to_coco(str(bad), tiny["images"], str(out), on_invalid="skip", verbose=False)
    assert {name: (out.parent / name).read_bytes() for name in os.listdir(out.parent)} == before


def test_nothing_usable_and_output_over_input_are_errors(tiny):
    only_bad = tiny["root"] / "only_bad.json"
    only_bad.write_text(json.dumps({"gone.jpg": {"parts": {}}}))
    out = tiny["root"] / "o.json"
    with pytest.raises(DataError, match="no usable images in annotations"):
        convert_to_coco(str(only_bad), tiny["images"], str(out), on_invalid="skip", verbose=False)
    empty = tiny["root"] / "empty.json"
    empty.write_text("{}")
    with pytest.raises(DataError, match="no usable images"):
        convert_to_coco(str(empty), tiny["images"], str(out), verbose=False)
    assert not out.exists()
    before = open(tiny["json"], "rb").read()
    with pytest.raises(ConfigError, match="would overwrite the input"):
        convert_to_coco(tiny["json"], tiny["images"], tiny["json"], verbose=False)
    assert open(tiny["json"], "rb").read() == before


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _tree(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files)


def run_tool(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("BIKESTATE_DEBUG", None)
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_cli_error_exit_code_message_and_no_output(tiny):
    """A real process: exit 2, one line + one line per problem, no traceback, no file."""
    ann = hand_built()
    ann["a.jpg"]["parts"]["front_wheel"]["absolute_bounding_box"]["width"] = -20
    ann["z.jpg"]["parts"]["saddle"]["absolute_bounding_box"]["left"] = 500
    bad = tiny["root"] / "bad.json"
    bad.write_text(json.dumps(ann))
    digest, before = _digest(bad), _tree(tiny["root"])
    out = tiny["root"] / "out" / "coco.json"
    proc = run_tool("--json", str(bad), "--images", tiny["images"], "--out", str(out))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"convert_to_coco.py: error: {bad}: 2 problems in annotations",
        # in file order: z.jpg comes first in the file
        "  z.jpg / saddle: box wholly outside the 24x16 image (left 500, top 6, width 10, "
        "height 4)",
        "  a.jpg / front_wheel: negative box width -20",
    ]
    assert "Traceback" not in proc.stderr
    assert _tree(tiny["root"]) == before and _digest(bad) == digest


def test_cli_skip_mode_writes_output_report_and_statistics(tiny):
    ann = hand_built()
    ann["a.jpg"]["parts"]["dynamo"]["object_state_class"] = 1  # disagrees with "absent"
    bad = tiny["root"] / "bad.json"
    bad.write_text(json.dumps(ann))
    out = tiny["root"] / "coco.json"
    proc = run_tool("--json", str(bad), "--images", tiny["images"], "--out", str(out),
                    "--on-invalid", "skip")
    assert proc.returncode == 0, proc.stderr
    assert "| images            |       2 |" in proc.stdout
    assert "| occluded |       1 |" in proc.stdout  # boxes per state
    assert "1 problems; invalid boxes/images skipped" in proc.stdout
    assert len(json.load(open(out))["annotations"]) == 3
    assert "a.jpg / dynamo: object_state_class 1 (damaged) disagrees with object_state " \
           "'absent' (2)" in (tiny["root"] / "coco.problems.txt").read_text()


@pytest.mark.parametrize("case", ["truncated_json", "not_writable", "images_missing"])
def test_cli_bad_input_in_process(tiny, case, capsys):
    """The same tool main, in this process (fast): one line naming the file, exit 2."""
    spec = importlib.util.spec_from_file_location("convert_to_coco_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    json_path, images, out = tiny["json"], tiny["images"], str(tiny["root"] / "out.json")
    if case == "truncated_json":
        json_path = str(tiny["root"] / "cut.json")
        with open(json_path, "w") as f:
            f.write('{\n "a.jpg": {"parts": {}},\n "z.jpg": ')  # cut after a key
        expected = f"{json_path}: unparsable JSON at line 3, column 11: Expecting value"
    elif case == "not_writable":
        blocker = tiny["root"] / "a_file"
        blocker.write_text("")
        out = str(blocker / "coco.json")  # a folder that cannot be created
        expected = f"{out}: cannot write the output"
    else:
        images = str(tiny["root"] / "no_such_images")
        expected = f"{images}: images folder not found"
    before = _tree(tiny["root"])
    with pytest.raises(SystemExit) as info:
        tool.main(["--json", json_path, "--images", images, "--out", out, "--quiet"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "Traceback" not in err[0]
    assert _tree(tiny["root"]) == before
