"""SynthBikes v2 (photo-like): DelftBikes format, determinism, state shares, mounts of absent
parts, occlusion and the border, the gallery."""
import json
import os

import cv2
import numpy as np
import pytest

import bikestate.synth.accessories
import bikestate.synth.appearance
import bikestate.synth.parts
from bikestate.constants import PART_NAMES, STATE_IDS
from bikestate.data.delftbikes import load_delftbikes
from bikestate.synth import (
    DEFAULT_STATE_PROBS,
    MIN_OCCLUDED_COVERAGE,
    generate_synthbikes,
    render_bike,
)
from bikestate.synth import render
from bikestate.synth.render import MIN_INSIDE_ANY, MIN_INSIDE_VISIBLE

SIZE = (192, 144)
ABSENT, OCCLUDED = STATE_IDS["absent"], STATE_IDS["occluded"]


@pytest.fixture(scope="module")
def synth_v2(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_v2")
    json_path = generate_synthbikes(str(root), num_images=10, seed=4, image_size=SIZE,
                                    show_progress=False, style="v2")
    return {"root": str(root), "json": json_path, "images": os.path.join(str(root), "images")}


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_v2_is_valid_delftbikes_with_all_parts(synth_v2):
    annotations = json.loads(_read(synth_v2["json"]))
    assert sorted(annotations) == [f"synth_v2_s4_{i:06d}.jpg" for i in range(10)]
    for record in annotations.values():
        assert list(record["parts"]) == list(PART_NAMES)
    # The project's own validator: every box inside its image, sizes as declared, states valid.
    dataset = load_delftbikes(synth_v2["json"], synth_v2["images"], on_invalid="error")
    assert len(dataset.images) == 10 and not dataset.problems
    assert all(len(r["parts"]) == len(PART_NAMES) for r in dataset.images)
    assert dataset.clipped == 0  # the generator clips its own boxes


def test_v2_same_seed_same_bytes_other_style_other_pictures(synth_v2, tmp_path):
    again = generate_synthbikes(str(tmp_path / "again"), num_images=3, seed=4, image_size=SIZE,
                                show_progress=False, style="v2")
    first = json.loads(_read(synth_v2["json"]))
    assert json.loads(_read(again)) == {k: first[k] for k in sorted(first)[:3]}
    for name in sorted(first)[:3]:
        assert _read(os.path.join(str(tmp_path / "again"), "images", name)) == \
            _read(os.path.join(synth_v2["images"], name))
    v1 = generate_synthbikes(str(tmp_path / "v1"), num_images=1, seed=4, image_size=SIZE,
                             show_progress=False)
    v1_name, = json.loads(_read(v1))
    a = cv2.imread(os.path.join(str(tmp_path / "v1"), "images", v1_name))
    b = cv2.imread(os.path.join(synth_v2["images"], sorted(first)[0]))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10


def _shares(probs, n, seed):
    counts = np.zeros(4)
    for i in range(n):
        _, parts = render_bike(np.random.default_rng([seed, i]), 160, 120, probs, style="v2")
        counts += np.bincount([p["state"] for p in parts.values()], minlength=4)
    return counts / counts.sum()


@pytest.mark.parametrize("probs,n,tolerance", [(DEFAULT_STATE_PROBS, 80, 0.035),
                                               ((0.3, 0.3, 0.1, 0.3), 40, 0.06)])
def test_v2_state_shares_as_configured(probs, n, tolerance):
    shares = _shares(probs, n, seed=11)
    assert np.all(np.abs(shares - np.array(probs)) < tolerance), shares


def test_v2_every_absent_part_leaves_its_mount(monkeypatch):
    """With every part absent, the picture differs from the same picture drawn without mounts
    inside each part's mount box, and the mount differs from the background there."""
    checked = set()
    for i in range(3):
        rng = np.random.default_rng([5, i])
        img, parts, details = render_bike(rng, 320, 240, (0, 0, 1, 0), style="v2",
                                          return_details=True)
        with monkeypatch.context() as m:
            m.setattr(bikestate.synth.parts, "build_mounts", lambda layout, anchors, names: {})
            bare, _, _ = render_bike(np.random.default_rng([5, i]), 320, 240, (0, 0, 1, 0),
                                     style="v2", return_details=True)
        assert all(p["state"] == ABSENT for p in parts.values())
        assert set(details["mounts"]) == set(PART_NAMES)
        for name, (x0, y0, x1, y1) in details["mounts"].items():
            x0, y0 = int(np.floor(x0)), int(np.floor(y0))
            x1, y1 = int(np.ceil(x1)), int(np.ceil(y1))
            if (x1 - x0) * (y1 - y0) < 4:  # cut off by the picture's border
                continue
            drawn = np.abs(img[y0:y1, x0:x1].astype(int) - bare[y0:y1, x0:x1]).max(2) > 20
            # Same scene, same noise: any pixel that differs is the mount's.
            assert drawn.sum() >= 4, (i, name, drawn.sum())
            background = details["background"][y0:y1, x0:x1].astype(int)
            # Visible against the scene too (dark brackets on a dim wall are faint, not gone).
            contrast = np.abs(img[y0:y1, x0:x1].astype(int) - background).max(2)[drawn]
            assert contrast.mean() > 12, (i, name, contrast)
            checked.add(name)
    assert checked == set(PART_NAMES)


def test_v2_occluded_parts_are_covered_or_cut_and_visible_ones_are_not():
    occluded = cut = 0
    for i in range(24):  # a fifth of the bikes are cut by the border
        _, parts, details = render_bike(np.random.default_rng([3, i]), 200, 150,
                                        (0.6, 0.1, 0.1, 0.2), style="v2", return_details=True)
        occ, inside = details["occlusion"], details["inside"]
        assert np.all(inside >= MIN_INSIDE_ANY - 1e-6), inside
        for k, (name, p) in enumerate(parts.items()):
            left, top, w, h = p["box"]
            x0, y0 = int(round(left)), int(round(top))
            x1, y1 = max(int(round(left + w)), x0 + 1), max(int(round(top + h)), y0 + 1)
            cover = occ[y0:y1, x0:x1].mean()
            if p["state"] == OCCLUDED:
                occluded += 1
                cut += inside[k] < MIN_INSIDE_VISIBLE
                assert cover >= MIN_OCCLUDED_COVERAGE - 0.02 or inside[k] < MIN_INSIDE_VISIBLE, \
                    (i, name, cover, inside[k])
            elif p["state"] != ABSENT:
                assert cover < MIN_OCCLUDED_COVERAGE + 0.02, (i, name, cover)
                assert inside[k] >= MIN_INSIDE_VISIBLE, (i, name, inside[k])
    assert occluded > 10 and cut >= 1


def test_v2_viewpoints_and_bike_types_vary():
    """Yawed views make wheels narrower than tall; bikes face both ways."""
    aspects, facing_left = [], 0
    for i in range(16):
        _, parts = render_bike(np.random.default_rng([21, i]), 320, 240, (1, 0, 0, 0),
                               style="v2")
        front, back = parts["front_wheel"]["box"], parts["back_wheel"]["box"]
        aspects += [front[2] / front[3], back[2] / back[3]]
        facing_left += front[0] + front[2] / 2 < back[0] + back[2] / 2
    assert min(aspects) < 0.9 and max(aspects) > 0.97, aspects
    assert 2 <= facing_left <= 14


def test_cli_gallery_draws_samples_with_their_boxes(tool, tmp_path, capsys):
    out = tmp_path / "docs" / "gallery.png"
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--gallery", str(out), "--style", "v2", "--num-images", "3", "--seed", "2",
                   "--image-size", "160x120", "--no-progress"])
    assert exit_info.value.code == 0
    assert str(out) in capsys.readouterr().out
    sheet = cv2.imread(str(out))[..., ::-1]
    assert sheet.shape == (240 + 36, 6 * 320, 3)  # one row of 6 tiles and the legend
    tiles = [sheet[:240, c * 320:(c + 1) * 320] for c in range(6)]
    assert all(t.std() > 10 for t in tiles[:3]) and all((t == 255).all() for t in tiles[3:])
    # The boxes: pixels of the state colours that the bare sample does not have.
    image, parts = render_bike(np.random.default_rng([2, 0]), 160, 120, style="v2")
    green = np.all(np.abs(tiles[0].astype(int) - (46, 189, 74)) < 30, axis=2).sum()
    bare = cv2.resize(image, (320, 240))
    assert green > np.all(np.abs(bare.astype(int) - (46, 189, 74)) < 30, axis=2).sum() + 50


def test_cli_style_v2_writes_v2_pictures_and_rejects_bad_gallery(tool, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", str(tmp_path / "ds"), "--num-images", "2", "--seed", "1",
                   "--image-size", "160x120", "--style", "v2", "--no-progress"])
    assert exit_info.value.code == 0
    assert sorted(os.listdir(tmp_path / "ds" / "images")) == \
        ["synth_v2_s1_000000.jpg", "synth_v2_s1_000001.jpg"]
    for bad in (["--gallery", str(tmp_path / "g.jpg")], ["--num-images", "2"],
                ["--gallery", str(tmp_path / "g.png"), "--out", str(tmp_path / "o")]):
        with pytest.raises(SystemExit) as exit_info:
            tool.main(bad + ["--no-progress"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["ds"]


def test_v2_pose_shares_as_configured():
    rng = np.random.default_rng(0)
    poses = [render._sample_pose(rng)[0] for _ in range(4000)]
    for pose, share in render.POSE_SHARES.items():
        assert abs(poses.count(pose) / len(poses) - share) < 0.012, (pose, poses.count(pose))


def _centre(box):
    left, top, w, h = box
    return np.array([left + w / 2, top + h / 2])


@pytest.mark.parametrize("pose,angle", [("upside_down", 180.0), ("lying", 60.0)])
def test_v2_turned_bikes_keep_valid_boxes(monkeypatch, pose, angle):
    """Upside-down bikes have the saddle and bar below the wheels; a lying bike turned by 60
    degrees shows its wheels along a slanted line (foreshortened by the downward camera)."""
    monkeypatch.setattr(render, "_sample_pose", lambda rng: (pose, angle))
    for i in range(6):
        img, parts, details = render_bike(np.random.default_rng([8, i]), 320, 240, (1, 0, 0, 0),
                                          style="v2", return_details=True)
        assert details["pose"] == (pose, angle)
        assert np.all(details["inside"] >= MIN_INSIDE_ANY - 1e-6)
        for name, p in parts.items():
            left, top, w, h = p["box"]
            assert w > 0 and h > 0 and left >= 0 and top >= 0, (i, name, p["box"])
            assert left + w <= 320 + 1e-6 and top + h <= 240 + 1e-6, (i, name, p["box"])
        wheels = _centre(parts["back_wheel"]["box"]) - _centre(parts["front_wheel"]["box"])
        slant = np.degrees(np.arctan2(abs(wheels[1]), abs(wheels[0])))
        if pose == "upside_down":
            assert slant < 20, (i, slant)
            for top_part in ("saddle", "steer"):
                below = _centre(parts[top_part]["box"])[1]
                assert below > _centre(parts["front_wheel"]["box"])[1], (i, top_part)
                assert below > _centre(parts["back_wheel"]["box"])[1], (i, top_part)
        else:
            assert 25 < slant < 75, (i, slant)


def test_v2_bag_over_the_saddle_occludes_it(monkeypatch):
    """A bag pulled over a saddle covers it as an occluder does: the saddle counts as occluded
    (cover measured on the accessory's own pixels); without bags the same saddles are intact."""
    def saddles(share):
        monkeypatch.setattr(bikestate.synth.accessories, "SADDLE_COVER_SHARE", share)
        out = []
        for i in range(8):
            _, parts, details = render_bike(np.random.default_rng([6, i]), 320, 240,
                                            (1, 0, 0, 0), style="v2", return_details=True)
            k = list(PART_NAMES).index("saddle")
            out.append((parts["saddle"]["state"], details["inside"][k] >= MIN_INSIDE_VISIBLE))
        return out

    covered, bare = saddles(1.0), saddles(0.0)
    assert all(state == OCCLUDED for state, _ in covered), covered
    assert all(state == STATE_IDS["intact"] for state, inside in bare if inside), bare


def _wheel_spacing(shares, monkeypatch):
    """Median over 16 pictures of the distance between the wheels' box centres over the wheels'
    mean box size (sqrt of width x height): the wheelbase in wheel diameters, whatever the
    scale, yaw or pose."""
    monkeypatch.setattr(bikestate.synth.appearance, "_TYPE_SHARES", shares)
    spacing = []
    for i in range(16):
        _, parts = render_bike(np.random.default_rng([8, i]), 320, 240, (1, 0, 0, 0),
                               style="v2")
        front, back = parts["front_wheel"]["box"], parts["back_wheel"]["box"]
        size = (np.sqrt(front[2] * front[3]) + np.sqrt(back[2] * back[3])) / 2
        spacing.append(np.linalg.norm(_centre(front) - _centre(back)) / size)
    return float(np.median(spacing))


def test_v2_longtail_bikes_are_long_and_carry_their_load(monkeypatch):
    """Longtail cargo bikes (same seeds, only the type changed) put their wheels about 1.3x as
    far apart as city bikes; their deck's load (running boards, side bags, benches, child seats)
    is drawn over the bike, so it counts as occlusion like any accessory."""
    city = _wheel_spacing((1.0, 0.0, 0.0, 0.0, 0.0), monkeypatch)
    longtail = _wheel_spacing((0.0, 0.0, 0.0, 0.0, 1.0), monkeypatch)
    assert 1.3 < city < 1.75 and longtail > 1.18 * city, (city, longtail)
    intact = {name: STATE_IDS["intact"] for name in PART_NAMES}
    bikes = [bikestate.synth.parts.Bike(np.random.default_rng([9, i]), dict(intact),
                                        (128, 128, 128), style="v2") for i in range(12)]
    assert all(bike.layout.kind == "longtail" and bike.layout.has_rack for bike in bikes)
    assert sum(len(bike.accessories) > 0 for bike in bikes) >= 9, \
        [len(bike.accessories) for bike in bikes]
