"""Stratified split: state shares on 2,000 images, exact sizes, determinism, no overlap, and the
command line tool's all-or-nothing output."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bikestate.constants import PART_NAMES, STATE_NAMES
from bikestate.data.split import (iterative_stratification, split_labels, split_sizes,
                                  state_shares, stratified_split)
from bikestate.utils.errors import ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "split_dataset.py")
DELFTBIKES_SHARES = np.array([0.605, 0.06, 0.195, 0.14])  # intact, damaged, absent, occluded


def make_annotations(num_images, seed, concentration=8.0):
    """A DelftBikes-format dict with realistic, clumpy states (no images: the split reads JSON).

    Each bike draws its own state mix from a Dirichlet around the DelftBikes shares, so some
    bikes are wrecks and some are new, as in a depot: a random split then misses the shares by
    one to two points, which is what stratification has to fix. About 10% of parts are
    not annotated at all, so images differ in box count too.
    """
    rng = np.random.default_rng(seed)
    annotations = {}
    for i in range(num_images):
        mix = rng.dirichlet(DELFTBIKES_SHARES * concentration)
        states = np.minimum(np.searchsorted(np.cumsum(mix), rng.random(len(PART_NAMES))), 3)
        annotated = rng.random(len(PART_NAMES)) >= 0.1
        parts = {}
        for name, state, keep in zip(PART_NAMES, states.tolist(), annotated):
            if not keep:
                continue
            parts[name] = {"part_name": name,
                           "absolute_bounding_box": {"left": 1, "top": 2, "width": 3, "height": 4},
                           "object_state": STATE_NAMES[state], "object_state_class": state,
                           "trust": 1.0}
        annotations[f"F{i:05d}.jpg"] = {"image": {"height": 480, "width": 640}, "parts": parts}
    return annotations


def max_share_difference(splits, whole):
    _, target = state_shares(whole)
    return max(abs(state_shares(subset)[1][s] - target[s])
               for subset in splits.values() for s in STATE_NAMES)


@pytest.fixture(scope="module")
def big():
    return make_annotations(2000, seed=0)


def test_state_shares_within_1_5_points_on_2000_images(big):
    splits = stratified_split(big, val_fraction=0.1, test_fraction=0.1, seed=42)
    assert max_share_difference(splits, big) <= 0.015
    assert [len(splits[k]) for k in ("train", "val", "test")] == [1600, 200, 200]


def test_stratified_beats_a_random_split_of_the_same_data():
    """On this data an unstratified split misses by 1.2 to 2 points (so the 1.5-point target is
    not met by chance); the stratified one must be far closer, for other data seeds too."""
    for seed in (1, 3):
        ann = make_annotations(2000, seed=seed)
        names = sorted(ann)
        order = np.random.default_rng(seed).permutation(len(names))
        chunks = {"val": order[:200], "test": order[200:400], "train": order[400:]}
        random_split = {k: {names[i]: ann[names[i]] for i in idx} for k, idx in chunks.items()}
        stratified = stratified_split(ann, 0.1, 0.1, seed=seed)
        assert max_share_difference(stratified, ann) <= 0.015
        assert max_share_difference(stratified, ann) < 0.1 * max_share_difference(random_split,
                                                                                   ann)


def test_split_is_a_deterministic_partition_with_records_unchanged(big):
    first = stratified_split(big, 0.1, 0.1, seed=42)
    again = stratified_split(big, 0.1, 0.1, seed=42)
    assert {k: list(v) for k, v in first.items()} == {k: list(v) for k, v in again.items()}
    other = stratified_split(big, 0.1, 0.1, seed=43)
    assert list(other["val"]) != list(first["val"])

    names = [set(v) for v in first.values()]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert set().union(*names) == set(big)
    for subset in first.values():
        assert list(subset) == [n for n in big if n in subset]  # input order kept
        assert all(subset[n] is big[n] for n in subset)  # records untouched


def test_iterative_stratification_spreads_part_state_pairs_better_than_chance(big):
    _, labels, counts = split_labels(big)
    totals = counts.sum(0)
    common = totals >= 100

    def spread_error(fold):
        # mean over folds and common (part, state) pairs of |share of the pair's boxes in the
        # fold / share of images in the fold - 1|
        errors = []
        for f in range(3):
            image_share = (fold == f).mean()
            pair_share = counts[fold == f].sum(0)[common] / totals[common]
            errors.append(np.abs(pair_share / image_share - 1).mean())
        return float(np.mean(errors))

    fold = iterative_stratification(counts, (0.8, 0.1, 0.1), seed=1)
    rng = np.random.default_rng(0)
    chance = np.mean([spread_error(rng.permutation(fold)) for _ in range(5)])
    assert spread_error(fold) < 0.75 * chance
    # every (part, state) pair with at least 10 boxes reaches every fold
    for f in range(3):
        assert (counts[fold == f].sum(0)[totals >= 10] > 0).all()


def test_fractions_and_sizes():
    ann = make_annotations(25, seed=3)
    assert split_sizes(10, (0.75, 0.15, 0.1)) == [7, 2, 1]  # half up
    splits = stratified_split(ann, val_fraction=0.2, test_fraction=0.0, seed=0)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [20, 5, 0]
    for bad in ((1.0, 0.0), (-0.1, 0.1), (0.6, 0.5), ("0.1", 0.1)):
        with pytest.raises(ConfigError):
            stratified_split(ann, *bad)
    with pytest.raises(DataError) as info:
        stratified_split({"a.jpg": {"parts": {}}, "b.jpg": ["nope"]})
    assert info.value.details == ["b.jpg: record is not an object with a 'parts' object"]


def test_images_without_boxes_and_unreadable_states_are_split_too():
    ann = make_annotations(40, seed=4)
    ann["empty.jpg"] = {"parts": {}}
    ann["F00000.jpg"]["parts"]["bell"] = {"part_name": "bell", "object_state": "weird"}
    splits = stratified_split(ann, 0.25, 0.25, seed=0)
    assert sum(len(v) for v in splits.values()) == 41
    total, shares = state_shares(ann)
    assert "?" in shares and abs(sum(shares.values()) - 1) < 1e-9


def test_split_of_synthbikes_json(synth_small):
    """The generator's own JSON splits like any DelftBikes file."""
    ann = json.load(open(synth_small["json"]))
    splits = stratified_split(ann, 0.25, 0.25, seed=0)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [6, 3, 3]
    assert sorted(n for v in splits.values() for n in v) == sorted(ann)


def _load_tool():
    spec = importlib.util.spec_from_file_location("split_dataset_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_cli_writes_three_files_and_prints_shares(tmp_path):
    ann = make_annotations(300, seed=5)
    src = tmp_path / "ann.json"
    src.write_text(json.dumps(ann))
    before = src.read_bytes()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, TOOL, "--json", str(src), "--out", str(tmp_path / "s"),
                           "--val-fraction", "0.1", "--test-fraction", "0.1", "--seed", "42"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "s")) == ["test.json", "train.json", "val.json"]
    parts = {k: json.load(open(tmp_path / "s" / f"{k}.json")) for k in ("train", "val", "test")}
    assert [len(parts[k]) for k in ("train", "val", "test")] == [240, 30, 30]
    assert {**parts["train"], **parts["val"], **parts["test"]} == ann
    assert src.read_bytes() == before
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in rows[0].split("|")[1:-1]] == [
        "split", "images", "boxes", "% intact", "% damaged", "% absent", "% occluded"]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["train", "val", "test", "all"]
    assert "largest state-share difference from the whole" in proc.stdout


@pytest.mark.parametrize("case", ["truncated_json", "wrong_shape", "too_few_images",
                                  "bad_fraction", "output_is_input", "empty_input"])
def test_cli_bad_input_writes_nothing(tmp_path, case, capsys):
    tool = _load_tool()
    src = tmp_path / "ann.json"
    src.write_text(json.dumps(make_annotations(30, seed=6)))
    out = tmp_path / "splits"
    args = ["--json", str(src), "--out", str(out)]
    if case == "truncated_json":
        src.write_text(src.read_text()[:-3])
        expected = f"{src}: unparsable JSON at line 1"
    elif case == "wrong_shape":
        src.write_text(json.dumps([{"F1.jpg": {"parts": {}}}]))
        expected = f"{src}: expected a JSON object keyed by image file name, found a JSON array"
    elif case == "too_few_images":
        src.write_text(json.dumps(make_annotations(4, seed=6)))
        expected = "4 images are too few for a val fraction of 0.1: the val split would be empty"
    elif case == "bad_fraction":
        args += ["--val-fraction", "0.5", "--test-fraction", "0.5"]
        expected = "val fraction 0.5 + test fraction 0.5 leave no images for training"
    elif case == "output_is_input":
        src = tmp_path / "train.json"
        src.write_text(json.dumps(make_annotations(30, seed=6)))
        args = ["--json", str(src), "--out", str(tmp_path)]
        expected = f"{src}: the output would overwrite the input annotations"
    else:
        src.write_text("{}")
        expected = f"{src}: no images in annotations"
    before = {p: open(os.path.join(tmp_path, p), "rb").read() for p in os.listdir(tmp_path)}
    with pytest.raises(SystemExit) as info:
        tool.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    after = {p: open(os.path.join(tmp_path, p), "rb").read()
             for p in os.listdir(tmp_path) if os.path.isfile(os.path.join(tmp_path, p))}
    assert after == before and not out.exists()


def test_all_or_nothing_when_one_file_fails(tmp_path):
    """A failure while writing the third file leaves none of the three, and no temp file."""
    tool = _load_tool()
    (tmp_path / "train.json").write_text('"old"')
    with pytest.raises(TypeError):
        tool.write_all_or_nothing({"train.json": {"a": 1}, "val.json": {"b": 2},
                                   "test.json": {"c": {1, 2}}}, str(tmp_path))  # a set: no JSON
    assert os.listdir(tmp_path) == ["train.json"]
    assert (tmp_path / "train.json").read_text() == '"old"'  # the old file is untouched
