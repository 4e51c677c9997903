"""Dataset registrar: registration rules, data-source precedence, conversion caching, SynthBikes
default, and the visualize_data tool. Real SynthBikes, real convert_to_coco, real detectron2
catalogs."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from coco_builders import coco_with_states, write_json

from bikestate.data.cache import CONVERSION_VERSION
from bikestate import add_bikestate_config
from bikestate.constants import PART_NAMES, STATE_IDS, STATE_NAMES
from bikestate.config import DATA_ENV_VARS, apply_data_environment
from bikestate.data import (
    convert_to_coco,
    register_bike_datasets,
    register_bike_instances,
    unregister_bike_dataset,
)
from bikestate.inference.visualizer import _legend_layout
from bikestate.utils.errors import ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIKE_NAMES = ("bike_train", "bike_val", "bike_test")


@pytest.fixture(autouse=True)
def clean_catalog():
    """detectron2's catalogs are process-global: every test starts and ends without bike_*."""
    for name in BIKE_NAMES:
        unregister_bike_dataset(name)
    yield
    for name in BIKE_NAMES + ("test_ds_a", "test_ds_b"):
        unregister_bike_dataset(name)


@pytest.fixture
def cfg(tmp_path):
    c = get_cfg()
    add_bikestate_config(c)
    c.OUTPUT_DIR = str(tmp_path / "output")
    c.BIKESTATE.DATA.SYNTH_CACHE_DIR = str(tmp_path / "cache")
    return c


@pytest.fixture
def delft_copy(synth_small, tmp_path):
    """A private copy of the synth_small annotations and images (tests modify them)."""
    import shutil

    path = tmp_path / "ann.json"
    path.write_bytes(open(synth_small["json"], "rb").read())
    images = shutil.copytree(synth_small["images"], tmp_path / "images")
    return {"json": str(path), "images": str(images)}


def use_files(cfg, train_json, images, val_json=None):
    cfg.BIKESTATE.DATA.TRAIN_JSON = train_json
    cfg.BIKESTATE.DATA.VAL_JSON = val_json or train_json
    cfg.BIKESTATE.DATA.TRAIN_IMAGES = images
    cfg.BIKESTATE.DATA.VAL_IMAGES = images


# ------------------------------------------------------------------------------ register


def test_synth_convert_register_keeps_every_state(synth_small, tmp_path):
    """SynthBikes -> convert_to_coco -> register: each box has the state written in the JSON."""
    coco_path = str(tmp_path / "coco.json")
    convert_to_coco(synth_small["json"], synth_small["images"], coco_path, verbose=False)
    register_bike_instances("test_ds_a", coco_path, synth_small["images"])
    dicts = DatasetCatalog.get("test_ds_a")
    delft = json.load(open(synth_small["json"], encoding="utf-8"))
    assert len(dicts) == len(delft) == 12

    seen_states = set()
    for d in dicts:
        image = delft[os.path.basename(d["file_name"])]
        by_box = {}
        for a in d["annotations"]:
            key = (PART_NAMES[a["category_id"]], tuple(np.round(a["bbox"], 2)))
            by_box[key] = a["state"]
            assert STATE_NAMES[a["state"]] == a["state_name"]
        for part in image["parts"].values():
            b = part["absolute_bounding_box"]
            inside = (b["left"] >= 0 and b["top"] >= 0 and b["left"] + b["width"] <= d["width"]
                      and b["top"] + b["height"] <= d["height"])
            if not inside:
                continue  # clipped by the conversion; its coordinates differ
            key = (part["part_name"], tuple(np.round([b["left"], b["top"], b["width"],
                                                      b["height"]], 2)))
            assert by_box[key] == STATE_IDS[part["object_state"]] == part["object_state_class"]
            seen_states.add(by_box[key])
    assert seen_states == {0, 1, 2, 3}

    meta = MetadataCatalog.get("test_ds_a")
    assert meta.thing_classes == list(PART_NAMES)
    assert meta.state_classes == list(STATE_NAMES)
    assert meta.evaluator_type == "bikestate"
    assert meta.json_file == coco_path and meta.image_root == synth_small["images"]
    assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(len(PART_NAMES))}


def write_coco(path, categories, annotations, images=None, state_categories=True):
    images = images or [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}]
    return str(write_json(coco_with_states(images, annotations, categories, state_categories),
                          path))


def test_register_twice_same_args_is_noop_different_args_error(tmp_path):
    cats = [{"id": 1, "name": "saddle"}]
    a = write_coco(tmp_path / "a.json", cats, [])
    b = write_coco(tmp_path / "b.json", cats, [])
    register_bike_instances("test_ds_a", a, str(tmp_path))
    loader = DatasetCatalog["test_ds_a"]
    register_bike_instances("test_ds_a", a, str(tmp_path))
    assert DatasetCatalog["test_ds_a"] is loader
    with pytest.raises(ConfigError, match="test_ds_a.*already registered"):
        register_bike_instances("test_ds_a", b, str(tmp_path))
    with pytest.raises(ConfigError, match="test_ds_a"):
        register_bike_instances("test_ds_a", a, str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="test_ds_a"):
        register_bike_instances("test_ds_a", a, str(tmp_path), metadata={"thing_colors": [1]})
    assert MetadataCatalog.get("test_ds_a").json_file == a
    register_bike_instances("test_ds_a", b, str(tmp_path), replace=True)
    assert MetadataCatalog.get("test_ds_a").json_file == b


def test_register_reads_categories_in_id_order_and_file_state_names(tmp_path):
    """Non-contiguous, unsorted ids: thing_classes agree with load_coco_json's mapping."""
    cats = [{"id": 7, "name": "bell"}, {"id": 3, "name": "saddle"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 2], "area": 4,
             "iscrowd": 0, "state": 1}]
    path = tmp_path / "c.json"
    coco = json.loads(open(write_coco(path, cats, anns)).read())
    coco["state_categories"] = [{"id": 1, "name": "broken"}, {"id": 0, "name": "ok"}]
    path.write_text(json.dumps(coco))
    register_bike_instances("test_ds_a", str(path), str(tmp_path))
    meta = MetadataCatalog.get("test_ds_a")
    assert meta.thing_classes == ["saddle", "bell"]
    assert meta.state_classes == ["ok", "broken"]
    (d,) = DatasetCatalog.get("test_ds_a")
    assert d["annotations"][0]["category_id"] == 1 and d["annotations"][0]["state"] == 1


def test_register_rejects_coco_without_states_and_delftbikes(tmp_path, synth_small):
    cats = [{"id": 1, "name": "saddle"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4,
             "iscrowd": 0}]
    path = write_coco(tmp_path / "nostate.json", cats, anns)
    with pytest.raises(DataError, match="without a valid state") as info:
        register_bike_instances("test_ds_a", path, str(tmp_path))
    assert info.value.details == ["image a.jpg, part saddle: no 'state'"]
    with pytest.raises(DataError, match="not a COCO file"):
        register_bike_instances("test_ds_a", synth_small["json"], synth_small["images"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  oops]}')
    with pytest.raises(DataError, match="line 2 column 3"):
        register_bike_instances("test_ds_a", str(bad), str(tmp_path))
    assert "test_ds_a" not in DatasetCatalog.list()


# ------------------------------------------------------------------------------ environment


def test_precedence_options_over_env_over_dotenv_over_file_over_default(tmp_path, cfg):
    assert cfg.BIKESTATE.DATA.TRAIN_JSON == ""  # embedded default: SynthBikes
    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        "BIKESTATE:\n  DATA:\n    TRAIN_JSON: file_train.json\n    VAL_JSON: file_val.json\n"
        "    TRAIN_IMAGES: file_imgs\n    VAL_IMAGES: file_val_imgs\n")
    cfg.merge_from_file(str(config_file))
    dotenv = tmp_path / ".env"
    dotenv.write_text("TRAIN_JSON=dotenv_train.json\nVAL_JSON=dotenv_val.json\n"
                      "OUTPUT_DIR=dotenv_out\n")
    environ = {"TRAIN_JSON": "env_train.json", "TRAIN_CLEANED": "env_imgs", "VAL_CLEANED": "",
               "PATH": "/usr/bin"}
    cfg.freeze()
    applied = apply_data_environment(cfg, environ=environ, dotenv_path=str(dotenv))
    assert cfg.is_frozen()
    cfg.defrost()
    cfg.merge_from_list(["BIKESTATE.DATA.TRAIN_JSON", "opt_train.json"])
    data = cfg.BIKESTATE.DATA
    assert data.TRAIN_JSON == "opt_train.json"     # options > env
    assert data.TRAIN_IMAGES == "env_imgs"         # env > file
    assert data.VAL_JSON == "dotenv_val.json"      # .env > file
    assert data.VAL_IMAGES == "file_val_imgs"      # empty env value = unset: file stays
    assert cfg.OUTPUT_DIR == "dotenv_out"
    assert applied["BIKESTATE.DATA.TRAIN_JSON"] == ("TRAIN_JSON", "env_train.json")
    assert "BIKESTATE.DATA.VAL_IMAGES" not in applied


def test_every_seed_variable_sets_its_key(cfg):
    environ = {var: f"value_of_{var}" for var in DATA_ENV_VARS}
    apply_data_environment(cfg, environ=environ, dotenv_path=None)
    assert cfg.BIKESTATE.DATA.TRAIN_JSON == "value_of_TRAIN_JSON"
    assert cfg.BIKESTATE.DATA.VAL_JSON == "value_of_VAL_JSON"
    assert cfg.BIKESTATE.DATA.TRAIN_IMAGES == "value_of_TRAIN_CLEANED"
    assert cfg.BIKESTATE.DATA.VAL_IMAGES == "value_of_VAL_CLEANED"
    assert cfg.OUTPUT_DIR == "value_of_OUTPUT_DIR"


# ------------------------------------------------------------------------------ sources


def test_delftbikes_input_converted_once_and_again_only_when_changed(cfg, delft_copy):
    use_files(cfg, delft_copy["json"], delft_copy["images"])
    out = register_bike_datasets(cfg)
    train_coco = os.path.join(cfg.OUTPUT_DIR, "train_coco.json")
    assert out["bike_train"] == {"json_file": train_coco, "image_root": delft_copy["images"]}
    assert out["bike_val"]["json_file"] == os.path.join(cfg.OUTPUT_DIR, "val_coco.json")
    assert "bike_test" not in out
    first = os.stat(train_coco).st_mtime_ns

    register_bike_datasets(cfg)  # same input: no reconversion, registration is a no-op
    assert os.stat(train_coco).st_mtime_ns == first

    os.utime(delft_copy["json"], ns=(first + 10**9, first + 10**9))  # touched, same content
    register_bike_datasets(cfg)
    assert os.stat(train_coco).st_mtime_ns == first

    # A real change: one part changes state. Reconverted, and the new state reaches the loader.
    ann = json.load(open(delft_copy["json"], encoding="utf-8"))
    name = sorted(ann)[0]
    part = next(iter(ann[name]["parts"].values()))
    new_state = (part["object_state_class"] + 1) % 4
    part.update(object_state=STATE_NAMES[new_state], object_state_class=new_state)
    with open(delft_copy["json"], "w", encoding="utf-8") as f:
        json.dump(ann, f)
    register_bike_datasets(cfg)
    assert os.stat(train_coco).st_mtime_ns != first
    d = next(d for d in DatasetCatalog.get("bike_train") if d["file_name"].endswith(name))
    b = part["absolute_bounding_box"]
    match = [a for a in d["annotations"] if PART_NAMES[a["category_id"]] == part["part_name"]]
    assert [a["state"] for a in match] == [new_state], (b, match)
    sidecar = json.load(open(os.path.join(cfg.OUTPUT_DIR, "train_coco.source.json")))
    assert sidecar["input_json"] == delft_copy["json"] and len(sidecar["input_sha256"]) == 64

    # Another ON_INVALID mode is another conversion.
    cfg.BIKESTATE.DATA.ON_INVALID = "skip"
    second = os.stat(train_coco).st_mtime_ns
    register_bike_datasets(cfg)
    assert os.stat(train_coco).st_mtime_ns != second

    # A conversion by another version of the converter is redone.
    sidecar_path = os.path.join(cfg.OUTPUT_DIR, "train_coco.source.json")
    sidecar = json.load(open(sidecar_path))
    assert sidecar["conversion_version"] == CONVERSION_VERSION
    sidecar["conversion_version"] = CONVERSION_VERSION - 1
    with open(sidecar_path, "w") as f:
        json.dump(sidecar, f)
    third = os.stat(train_coco).st_mtime_ns
    register_bike_datasets(cfg)
    assert os.stat(train_coco).st_mtime_ns != third

    # An image named by the annotations is replaced (its checks, size included, are stale).
    register_bike_datasets(cfg)
    fourth = os.stat(train_coco).st_mtime_ns
    image = os.path.join(cfg.BIKESTATE.DATA.TRAIN_IMAGES, name)
    Image.open(image).convert("RGB").save(image)  # re-encoded: another size and mtime
    register_bike_datasets(cfg)
    assert os.stat(train_coco).st_mtime_ns != fourth


def test_coco_input_used_directly(cfg, synth_small, tmp_path):
    coco_path = str(tmp_path / "given_coco.json")
    convert_to_coco(synth_small["json"], synth_small["images"], coco_path, verbose=False)
    use_files(cfg, coco_path, synth_small["images"])
    cfg.BIKESTATE.DATA.TEST_JSON = coco_path
    cfg.BIKESTATE.DATA.TEST_IMAGES = synth_small["images"]
    out = register_bike_datasets(cfg)
    assert set(out) == set(BIKE_NAMES)
    assert all(v["json_file"] == coco_path for v in out.values())
    assert not os.path.exists(os.path.join(cfg.OUTPUT_DIR, "train_coco.json"))
    assert len(DatasetCatalog.get("bike_test")) == 12


def test_missing_inputs_name_the_file_and_the_key(cfg, tmp_path, synth_small):
    use_files(cfg, str(tmp_path / "nope.json"), synth_small["images"])
    with pytest.raises(ConfigError, match=r"nope\.json.*BIKESTATE\.DATA\.TRAIN_JSON.*env TRAIN_JSON"):
        register_bike_datasets(cfg)
    use_files(cfg, synth_small["json"], str(tmp_path / "no_images"))
    with pytest.raises(ConfigError, match=r"no_images.*TRAIN_IMAGES.*env TRAIN_CLEANED"):
        register_bike_datasets(cfg)
    use_files(cfg, synth_small["json"], synth_small["images"])
    cfg.BIKESTATE.DATA.VAL_IMAGES = ""
    with pytest.raises(ConfigError, match=r"VAL_IMAGES \(env VAL_CLEANED\) is empty"):
        register_bike_datasets(cfg)
    cfg.BIKESTATE.DATA.VAL_JSON = ""
    with pytest.raises(ConfigError, match="VAL_JSON.*give both"):
        register_bike_datasets(cfg)
    assert not set(BIKE_NAMES) & set(DatasetCatalog.list())


def synth_default(cfg):
    data = cfg.BIKESTATE.DATA
    data.SYNTH_NUM_TRAIN, data.SYNTH_NUM_VAL, data.SYNTH_NUM_TEST = 3, 2, 2
    data.SYNTH_IMAGE_SIZE = [160, 120]


def test_synth_default_generated_once_into_cache_and_reused(cfg):
    synth_default(cfg)
    out = register_bike_datasets(cfg)
    assert set(out) == set(BIKE_NAMES)
    cache = cfg.BIKESTATE.DATA.SYNTH_CACHE_DIR
    folders = sorted(os.listdir(cache))
    assert len(folders) == 3 and not [f for f in folders if f.startswith(".")]
    assert [len(DatasetCatalog.get(n)) for n in BIKE_NAMES] == [3, 2, 2]
    for name, v in out.items():
        assert v["json_file"].startswith(cache)
        assert MetadataCatalog.get(name).thing_classes == list(PART_NAMES)
    first_pixels = [np.asarray(Image.open(DatasetCatalog.get(n)[0]["file_name"]))
                    for n in BIKE_NAMES]
    stamps = {n: os.stat(v["json_file"]).st_mtime_ns for n, v in out.items()}

    again = register_bike_datasets(cfg)  # reused: nothing regenerated
    assert again == out
    assert {n: os.stat(v["json_file"]).st_mtime_ns for n, v in again.items()} == stamps

    # Other sizes are another folder: configs never mix their images.
    for name in BIKE_NAMES:
        unregister_bike_dataset(name)
    cfg.BIKESTATE.DATA.SYNTH_NUM_TRAIN = 4
    bigger = register_bike_datasets(cfg)
    assert bigger["bike_train"]["json_file"] != out["bike_train"]["json_file"]
    assert bigger["bike_val"] == out["bike_val"]
    assert len(os.listdir(cache)) == 4
    assert len(DatasetCatalog.get("bike_train")) == 4
    # Each split has its own seed: their images differ.
    assert not np.array_equal(first_pixels[0], first_pixels[1])
    assert not np.array_equal(first_pixels[1], first_pixels[2])

    # Another source replaces the whole registration only when asked to.
    cfg.BIKESTATE.DATA.SYNTH_NUM_TEST = 0
    cfg.BIKESTATE.DATA.SYNTH_SEEDS = [4, 5, 6]
    with pytest.raises(ConfigError, match="bike_train.*already registered"):
        register_bike_datasets(cfg)
    replaced = register_bike_datasets(cfg, replace=True)
    assert set(replaced) == {"bike_train", "bike_val"}
    assert "bike_test" not in DatasetCatalog.list()


def test_synth_training_state_shares_change_the_training_split_only(cfg):
    """SYNTH_TRAIN_STATE_PROBS: the training split is drawn with those shares into its own
    folder; val keeps DelftBikes' shares (scores stay comparable); bad shares: one line."""
    synth_default(cfg)
    cfg.BIKESTATE.DATA.SYNTH_NUM_TEST = 0
    plain = register_bike_datasets(cfg)
    for name in ("bike_train", "bike_val"):
        unregister_bike_dataset(name)
    cfg.BIKESTATE.DATA.SYNTH_TRAIN_STATE_PROBS = [0.0, 1.0, 0.0, 0.0]  # every part damaged
    damaged = register_bike_datasets(cfg)
    assert damaged["bike_val"] == plain["bike_val"]
    assert damaged["bike_train"]["json_file"] != plain["bike_train"]["json_file"]
    assert "states0-100-0-0" in damaged["bike_train"]["json_file"]
    states = [a["state"] for d in DatasetCatalog.get("bike_train") for a in d["annotations"]]
    assert len(states) == 3 * len(PART_NAMES) and set(states) == {STATE_IDS["damaged"]}
    val_states = {a["state"] for d in DatasetCatalog.get("bike_val") for a in d["annotations"]}
    assert STATE_IDS["intact"] in val_states
    for name in ("bike_train", "bike_val"):
        unregister_bike_dataset(name)
    for bad in ([0.5, 0.5], ["x", 0.2, 0.2, 0.1]):
        cfg.BIKESTATE.DATA.SYNTH_TRAIN_STATE_PROBS = bad
        with pytest.raises(ConfigError, match="SYNTH_TRAIN_STATE_PROBS: state probabilities"):
            register_bike_datasets(cfg)


def test_synth_generation_killed_midway_is_redone(cfg, monkeypatch):
    synth_default(cfg)
    cfg.BIKESTATE.DATA.SYNTH_NUM_TEST = 0
    import bikestate.data.coco as coco

    real = coco.convert_to_coco

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # what a user's Ctrl-C looks like in the middle of generation

    monkeypatch.setattr(coco, "convert_to_coco", crash)
    with pytest.raises(KeyboardInterrupt):
        register_bike_datasets(cfg)
    cache = cfg.BIKESTATE.DATA.SYNTH_CACHE_DIR
    assert os.listdir(cache) == []  # no half-made folder, no temporary left
    monkeypatch.setattr(coco, "convert_to_coco", real)
    out = register_bike_datasets(cfg)
    assert set(out) == {"bike_train", "bike_val"}
    assert len(DatasetCatalog.get("bike_train")) == 3


# ------------------------------------------------------------------------------ visualize_data


def test_visualize_data_draws_synth_ground_truth(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import visualize_data
    finally:
        sys.path.pop(0)
    monkeypatch.chdir(tmp_path)  # no .env here
    for var in DATA_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    out_dir = tmp_path / "vis"
    argv = ["--dataset", "bike_val", "--output", str(out_dir), "--num", "2",
            "BIKESTATE.DATA.SYNTH_CACHE_DIR", str(tmp_path / "cache"),
            "BIKESTATE.DATA.SYNTH_NUM_TRAIN", "2", "BIKESTATE.DATA.SYNTH_NUM_VAL", "3",
            "BIKESTATE.DATA.SYNTH_NUM_TEST", "0", "BIKESTATE.DATA.SYNTH_IMAGE_SIZE", "[160, 120]",
            "OUTPUT_DIR", str(tmp_path / "output")]
    with pytest.raises(SystemExit) as info:
        visualize_data.main(argv)
    assert info.value.code == 0, capsys.readouterr().err
    files = sorted(os.listdir(out_dir))
    assert len(files) == 2 and all(f.endswith(".jpg") for f in files)
    drawn = np.asarray(Image.open(out_dir / files[0])).astype(float)
    (cached,) = [f for f in os.listdir(tmp_path / "cache") if f.startswith("val_")]
    original = Image.open(tmp_path / "cache" / cached / "images" / files[0])
    assert original.size == (160, 120)
    # Enlarged to a longest side of 1280 (--min-size's default) for legible labels, with the
    # legend strip of the pictures of predictions below.
    _, _, row_h, _ = _legend_layout(960, 1280)
    assert drawn.shape == (960 + row_h, 1280, 3)
    original = np.asarray(original.resize((1280, 960), Image.NEAREST))
    assert np.abs(drawn[:960] - original).mean() > 5  # boxes and labels were drawn on it

    with pytest.raises(SystemExit) as info:
        visualize_data.main(["--dataset", "bike_nope"] + argv[2:])
    assert info.value.code == 2
    assert "unknown dataset 'bike_nope'" in capsys.readouterr().err
