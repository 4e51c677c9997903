"""SynthBikes generator: determinism, DelftBikes format, state shares, occlusion, CLI."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bikestate.constants import PART_NAMES, STATE_IDS, STATE_NAMES
from bikestate.synth import (
    DEFAULT_STATE_PROBS,
    MIN_OCCLUDED_COVERAGE,
    generate_synthbikes,
    render_bike,
)
from bikestate.utils.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(path):
    with open(path, "rb") as f:
        return f.read()


def _images(folder):
    return sorted(os.listdir(os.path.join(folder, "images")))


def test_same_seed_same_bytes_and_pixels(synth_small, tmp_path):
    again = generate_synthbikes(str(tmp_path), num_images=12, seed=7, image_size=(320, 240),
                                show_progress=False)
    assert _load(again) == _load(synth_small["json"])
    assert _images(str(tmp_path)) == _images(synth_small["root"])
    for name in _images(str(tmp_path)):
        a = cv2.imread(os.path.join(str(tmp_path), "images", name))
        b = cv2.imread(os.path.join(synth_small["images"], name))
        assert np.array_equal(a, b), name


def test_image_does_not_depend_on_how_many_are_generated(synth_small, tmp_path):
    generate_synthbikes(str(tmp_path), num_images=3, seed=7, image_size=(320, 240),
                        show_progress=False)
    for name in _images(str(tmp_path)):
        assert _load(os.path.join(str(tmp_path), "images", name)) == \
            _load(os.path.join(synth_small["images"], name))


def test_other_seed_differs(synth_small, tmp_path):
    path = generate_synthbikes(str(tmp_path), num_images=2, seed=8, image_size=(320, 240),
                               show_progress=False)
    other = json.loads(_load(path))
    ours = json.loads(_load(synth_small["json"]))
    assert not set(other) & set(ours)  # file names carry the seed: no collisions
    boxes = lambda rec: [p["absolute_bounding_box"] for p in rec["parts"].values()]  # noqa: E731
    assert boxes(next(iter(other.values()))) != boxes(next(iter(ours.values())))
    a = cv2.imread(os.path.join(str(tmp_path), "images", sorted(other)[0]))
    b = cv2.imread(os.path.join(synth_small["images"], sorted(ours)[0]))
    assert not np.array_equal(a, b)


def test_delftbikes_format(synth_small):
    annotations = json.loads(_load(synth_small["json"]))
    assert len(annotations) == 12
    for name, record in annotations.items():
        img = cv2.imread(os.path.join(synth_small["images"], name))
        assert img is not None, name
        assert record["image"] == {"height": img.shape[0], "width": img.shape[1], "channels": 3}
        assert list(record["parts"]) == list(PART_NAMES)
        for part, ann in record["parts"].items():
            assert set(ann) == {"part_name", "absolute_bounding_box", "object_state",
                                "object_state_class", "trust"}
            assert ann["part_name"] == part
            assert ann["object_state"] in STATE_NAMES
            assert ann["object_state_class"] == STATE_IDS[ann["object_state"]]
            assert 0.0 <= ann["trust"] <= 1.0
            box = ann["absolute_bounding_box"]
            assert set(box) == {"left", "top", "width", "height"}
            assert box["width"] >= 1 and box["height"] >= 1, (name, part, box)
            assert box["left"] >= 0 and box["top"] >= 0, (name, part, box)
            assert box["left"] + box["width"] <= 320 + 1e-6, (name, part, box)
            assert box["top"] + box["height"] <= 240 + 1e-6, (name, part, box)


def test_render_bike_returns_rgb_image_and_all_parts():
    img, parts = render_bike(np.random.default_rng(0), 200, 150)
    assert img.shape == (150, 200, 3) and img.dtype == np.uint8
    assert list(parts) == list(PART_NAMES)
    for p in parts.values():
        assert len(p["box"]) == 4 and p["state"] in range(4)


def _state_shares(probs, n, size=(200, 150), seed=11):
    counts = np.zeros(4)
    for i in range(n):
        _, parts = render_bike(np.random.default_rng([seed, i]), *size, probs)
        for p in parts.values():
            counts[p["state"]] += 1
    return counts / counts.sum()


def test_default_state_shares_follow_delftbikes():
    shares = _state_shares(DEFAULT_STATE_PROBS, 100)
    # 2,200 parts: a binomial share of 0.2 has a standard deviation under 0.01 (more with
    # occluders hitting neighbours together), so 0.035 leaves room for chance, not for bias.
    assert np.all(np.abs(shares - np.array(DEFAULT_STATE_PROBS)) < 0.035), shares


@pytest.mark.parametrize("state", range(4))
def test_state_probs_are_settable(state):
    probs = [0.0] * 4
    probs[state] = 1.0
    shares = _state_shares(probs, 4)
    assert shares[state] == 1.0, shares


def test_skewed_state_probs():
    probs = (0.3, 0.3, 0.1, 0.3)
    shares = _state_shares(probs, 40, seed=5)
    assert np.all(np.abs(shares - np.array(probs)) < 0.06), shares


def test_occluded_parts_are_covered_and_visible_ones_are_not():
    seen = 0
    for i in range(12):
        img, parts, occ = render_bike(np.random.default_rng([3, i]), 240, 180,
                                      (0.6, 0.1, 0.1, 0.2), return_occlusion=True)
        assert occ.shape == img.shape[:2] and occ.dtype == bool
        for name, p in parts.items():
            left, top, w, h = p["box"]
            x0, y0 = int(round(left)), int(round(top))
            x1, y1 = max(int(round(left + w)), x0 + 1), max(int(round(top + h)), y0 + 1)
            cover = occ[y0:y1, x0:x1].mean()
            if p["state"] == STATE_IDS["occluded"]:
                seen += 1
                assert cover >= MIN_OCCLUDED_COVERAGE - 0.02, (i, name, cover)
            elif p["state"] != STATE_IDS["absent"]:
                assert cover < MIN_OCCLUDED_COVERAGE + 0.02, (i, name, cover)
    assert seen > 10


def test_bikes_face_both_ways_and_vary_in_size():
    facing_left, widths = 0, []
    for i in range(20):
        _, parts = render_bike(np.random.default_rng([21, i]), 320, 240, (1, 0, 0, 0))
        front, back = parts["front_wheel"]["box"], parts["back_wheel"]["box"]
        facing_left += front[0] + front[2] / 2 < back[0] + back[2] / 2
        widths.append(max(front[0] + front[2], back[0] + back[2]) - min(front[0], back[0]))
    assert 3 <= facing_left <= 17
    assert min(widths) < 0.5 * 320 < max(widths)


def test_small_parts_stay_visible():
    """Bell, dynamo and reflector are small but never below a few pixels at 640x480."""
    sizes = []
    for i in range(10):
        _, parts = render_bike(np.random.default_rng([8, i]), 640, 480, (1, 0, 0, 0))
        sizes += [min(parts[n]["box"][2:]) for n in ("bell", "dynamo", "back_reflector")]
    assert min(sizes) >= 5 and np.median(sizes) >= 8, sizes


@pytest.mark.parametrize("kwargs", [dict(num_images=0), dict(seed=-1),
                                    dict(image_size=(10, 10)),
                                    dict(state_probs=(0.5, 0.5, 0.5, 0.5)), dict(style="v3")])
def test_generate_rejects_bad_arguments(tmp_path, kwargs):
    args = dict(num_images=2, seed=1, image_size=(160, 120), show_progress=False)
    args.update(kwargs)
    with pytest.raises(ConfigError):
        generate_synthbikes(str(tmp_path / "out"), **args)
    assert not (tmp_path / "out").exists()


def test_cli_writes_dataset(tool, tmp_path, capsys):
    out = tmp_path / "synth"
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", str(out), "--num-images", "3", "--seed", "5", "--image-size",
                   "160x120", "--state-probs", "0.7,0.1,0.1,0.1", "--no-progress"])
    assert exit_info.value.code == 0
    annotations = json.loads((out / "annotations.json").read_text())
    assert sorted(annotations) == [f"synth_s5_{i:06d}.jpg" for i in range(3)]
    assert sorted(os.listdir(out / "images")) == sorted(annotations)
    printed = capsys.readouterr().out
    assert str(out / "annotations.json") in printed
    for name in STATE_NAMES:
        assert name in printed


@pytest.mark.parametrize("bad", [["--num-images", "0"], ["--num-images", "two"],
                                 ["--image-size", "640by480"], ["--image-size", "20x10"],
                                 ["--state-probs", "0.5,0.5"], ["--state-probs", "0.9,0.9,0,0"],
                                 ["--state-probs", "1.1,-0.1,0,0"], ["--seed", "-3"],
                                 ["--out", "{file}/sub"]])
def test_cli_rejects_bad_arguments_writing_nothing(tool, tmp_path, capsys, bad):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = tmp_path / "synth"
    args = {"--out": str(out), "--num-images": "2", "--seed": "1", "--image-size": "160x120"}
    args[bad[0]] = bad[1].format(file=a_file)
    argv = [x for kv in args.items() for x in kv] + ["--no-progress"]
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_data_package_imports_neither_the_generator_nor_opencv():
    """``bikestate.data`` works without OpenCV; SynthBikes is imported only where it is used."""
    code = ("import sys; sys.modules['cv2'] = None; import bikestate.data; "
            "print(sorted(m for m in sys.modules if m.startswith('bikestate.synth')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": REPO}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
