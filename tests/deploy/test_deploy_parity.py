"""An export gives the answers of the PyTorch model: small and R50-FPN models, ONNX and
TorchScript, traced on one image and run on photos of other shapes."""
import os
import warnings

import numpy as np
import pytest
import torch
from deploy_helpers import (
    PHOTOS,
    R50_CONFIG,
    SMALL_CONFIG,
    assert_same_detections,
    assert_same_report,
    make_cfg,
    run_tool,
    settle_frozen_batchnorm,
    settling_pictures,
)
from detectron2.export import TracingAdapter

from bikestate.deploy import OnnxBikeStatePredictor, TorchScriptBikeStatePredictor
from bikestate.deploy.exporter import _ExportableModel, export_model, graph_input, sample_image
from bikestate.inference import BikeStatePredictor, Detections, read_image


@pytest.fixture(scope="module")
def small_cfg(small_cfg_opts):
    return make_cfg(SMALL_CONFIG, small_cfg_opts)


@pytest.fixture(scope="module")
def pytorch_predictor(small_cfg):
    return BikeStatePredictor(small_cfg)


@pytest.fixture(scope="module")
def images(photos):
    return {name: read_image(str(photos / name)) for name in PHOTOS}


def _eager(predictor, image):
    return Detections.from_instances(predictor(image))


def test_onnx_export_matches_pytorch_on_every_photo_shape(onnx_export, pytorch_predictor,
                                                          images):
    """Traced on a 4:3 SynthBikes picture, run on landscape, portrait, large, gray, rotated and
    transparent photos; the number of detections differs from photo to photo."""
    folder, tool = onnx_export
    assert "Checked on a" in tool.stdout  # the tool ran the graph against PyTorch itself
    predictor = OnnxBikeStatePredictor(folder)
    counts = {}
    for name, image in images.items():
        assert image.shape[:2] == PHOTOS[name]
        exported, eager = predictor(image), _eager(pytorch_predictor, image)
        assert_same_detections(exported, eager)
        counts[name] = len(eager)
    assert min(counts.values()) > 0, counts
    assert len(set(counts.values())) > 1, f"every photo has as many detections: {counts}"


def test_boxes_are_mapped_to_original_pixels_outside_the_graph(onnx_export, images):
    """The graph answers in the pixels of the resized image; the predictor maps its boxes onto
    the large photo (5x the test size)."""
    predictor = OnnxBikeStatePredictor(onnx_export[0])
    image = images["large.jpg"]
    resized = graph_input(make_cfg(SMALL_CONFIG, ["INPUT.MIN_SIZE_TEST", "128",
                                                  "INPUT.MAX_SIZE_TEST", "192"]), image)
    assert tuple(resized.shape) == (3, 128, 171)
    raw_boxes = predictor.session.run(["boxes"], {"image": resized.numpy()})[0]
    detections = predictor(image)
    assert len(raw_boxes) == len(detections) > 0
    assert raw_boxes[:, 2].max() <= 171 and raw_boxes[:, 3].max() <= 128
    scale = np.array([1000 / 171, 750 / 128] * 2, dtype=np.float32)
    np.testing.assert_allclose(detections.boxes, np.minimum(raw_boxes * scale,
                                                            [1000, 750, 1000, 750]), atol=1e-3)
    assert detections.boxes[:, 2].max() > 171


def test_torchscript_export_matches_pytorch(tmp_path, small_cfg, pytorch_predictor, images):
    export_model(small_cfg, str(tmp_path), "torchscript", model=pytorch_predictor.model)
    predictor = TorchScriptBikeStatePredictor(str(tmp_path))
    for name in ("portrait.png", "large.jpg", "gray.png"):
        assert_same_detections(predictor(images[name]), _eager(pytorch_predictor, images[name]))


def test_roi_heads_trace_without_python_branches(small_cfg, pytorch_predictor):
    """A trace records no Python value of bikestate's ROI heads: the number of detections and
    the finite-rows branch of the kept indices stay out of the graph."""
    example = graph_input(small_cfg, sample_image(small_cfg))
    adapter = TracingAdapter(_ExportableModel(pytorch_predictor.model), (example,)).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.jit.trace(adapter, (example,), check_trace=False)
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
            if issubclass(w.category, torch.jit.TracerWarning)
            and os.path.join("bikestate", "modeling") in w.filename]
    assert not ours, "\n".join(ours)
    # The check is real: detectron2's own branches do warn.
    assert any(issubclass(w.category, torch.jit.TracerWarning) for w in caught)


R50_SCORE_THRESH = "0.15"
R50_OPTS = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", R50_SCORE_THRESH]


@pytest.fixture(scope="module")
def r50_export(tmp_path_factory):
    """configs/bike_r50_fpn.yaml, random initialisation (seeded, BatchNorm statistics settled
    on 16 SynthBikes pictures), small test size: ``(PyTorch predictor, its checkpoint, ONNX
    export folder traced on a 4:3 picture)``."""
    folder = tmp_path_factory.mktemp("r50")
    torch.manual_seed(0)
    cfg = make_cfg(R50_CONFIG, R50_OPTS + ["MODEL.WEIGHTS", ""])
    pytorch_predictor = BikeStatePredictor(cfg)
    assert settle_frozen_batchnorm(pytorch_predictor.model, settling_pictures(cfg)) == 53
    weights = str(folder / "model.pth")
    torch.save({"model": pytorch_predictor.model.state_dict()}, weights)
    export_model(cfg, str(folder / "onnx"), "onnx", example_bgr=sample_image(cfg),
                 model=pytorch_predictor.model)
    return pytorch_predictor, weights, str(folder / "onnx")


def test_r50_fpn_exports_match_pytorch(tmp_path, r50_export, images):
    """ONNX on every photo shape (landscape, portrait, large, gray, rotated, transparent),
    TorchScript on three."""
    pytorch_predictor, _, folder = r50_export
    predictor = OnnxBikeStatePredictor(folder)
    counts = {}
    for name, image in images.items():
        eager = _eager(pytorch_predictor, image)
        assert_same_detections(predictor(image), eager)
        counts[name] = len(eager)
    assert min(counts.values()) > 0, counts
    assert len(set(counts.values())) > 1, f"every photo has as many detections: {counts}"
    export_model(pytorch_predictor.cfg, str(tmp_path), "torchscript",
                 example_bgr=sample_image(pytorch_predictor.cfg), model=pytorch_predictor.model)
    predictor = TorchScriptBikeStatePredictor(str(tmp_path))
    for name in ("landscape.jpg", "large.jpg", "gray.png"):
        assert_same_detections(predictor(images[name]), _eager(pytorch_predictor, images[name]))


def test_r50_fpn_predict_backends_give_the_same_report(tmp_path, r50_export, photos):
    """report.csv of tools/predict.py --backend onnxruntime and --backend pytorch: the same
    rows and verdicts, every number equal or one unit of its rounding apart (0.0001, boxes
    0.01 px).

    The R50's float32 sums differ between the two runtimes by up to ~5e-5 in a probability
    (boxes by ~1e-3 px), and a value that close to a rounding boundary rounds to the
    neighbouring digit (2 of the 476 numbers on an AMD EPYC host, two box heights 0.01 px
    apart).
    """
    _, weights, folder = r50_export
    runs = {"pytorch": ["--config-file", R50_CONFIG, *R50_OPTS, "MODEL.WEIGHTS", weights],
            "onnxruntime": ["--backend", "onnxruntime", "--export", folder]}
    for backend, args in runs.items():
        result = run_tool("predict.py", "--input", str(photos), "--output",
                          str(tmp_path / backend), "--no-vis", "--confidence-threshold",
                          R50_SCORE_THRESH, *args)
        assert result.returncode == 0, result.stderr
    numbers, _ = assert_same_report(tmp_path / "pytorch" / "report.csv",
                                    tmp_path / "onnxruntime" / "report.csv", 6 * 22)
    assert numbers > 6 * 22, "no part was found"


def test_onnx_detections_draw_the_pytorch_picture(onnx_export, pytorch_predictor, images):
    """The pictures of vis/ are drawn from either runtime's detections alike."""
    from bikestate.inference import draw_predictions

    predictor = OnnxBikeStatePredictor(onnx_export[0])
    image = images["portrait.png"]
    pictures = [draw_predictions(image[:, :, ::-1], detections, predictor.part_names,
                                 score_thresh=0.06)
                for detections in (predictor(image), pytorch_predictor(image))]
    assert pictures[0].shape == pictures[1].shape
    differing = (pictures[0] != pictures[1]).any(axis=2).mean()
    assert differing < 1e-3, f"{differing:.2%} of the pixels differ"


def test_conv_state_head_on_image_pixels_exports(tmp_path, small_cfg_opts, images):
    """The state head that pools each detection's enlarged box from the input pixels
    (``ConvStateHead``, IN_FEATURES ["image"], BOX_CONTEXT) traces and matches too."""
    torch.manual_seed(1)
    cfg = make_cfg(SMALL_CONFIG, small_cfg_opts + [
        "MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05",
        "MODEL.ROI_STATE_HEAD.NAME", "ConvStateHead", "MODEL.ROI_STATE_HEAD.IN_FEATURES",
        '["image"]', "MODEL.ROI_STATE_HEAD.BOX_CONTEXT", "1.5"])
    pytorch_predictor = BikeStatePredictor(cfg)
    export_model(cfg, str(tmp_path), "onnx", model=pytorch_predictor.model)
    predictor = OnnxBikeStatePredictor(str(tmp_path))
    for name in ("portrait.png", "large.jpg"):
        eager = _eager(pytorch_predictor, images[name])
        assert len(eager) > 0
        assert_same_detections(predictor(images[name]), eager)


def test_a_photo_without_any_detection_gets_an_empty_answer_from_either_export(
        tmp_path, small_cfg_opts):
    """A photo where the model finds no part is answered with 0 detections by both runtimes,
    as by PyTorch (the state head's GroupNorm must not meet 0 rows in the graph). The detector
    threshold sits just above the best score on a blank photo, below the tracing picture's."""
    blank = np.full((240, 320, 3), 255, np.uint8)
    keep_all = make_cfg(SMALL_CONFIG, small_cfg_opts + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    top = float(BikeStatePredictor(keep_all)(blank).scores.max())
    cfg = make_cfg(SMALL_CONFIG, small_cfg_opts + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST",
                                                   str(top + 1e-4)])
    pytorch = BikeStatePredictor(cfg)
    assert len(pytorch(blank)) == 0
    assert len(pytorch(sample_image(cfg))) > 0  # the trace carries detections
    for fmt, runtime in (("onnx", OnnxBikeStatePredictor),
                         ("torchscript", TorchScriptBikeStatePredictor)):
        export_model(cfg, str(tmp_path / fmt), fmt, model=pytorch.model)
        empty = runtime(str(tmp_path / fmt))(blank)
        assert len(empty) == 0 and empty.state_scores.shape == (0, 4), fmt


def test_exporting_again_into_a_folder_leaves_only_the_new_export(tmp_path, small_cfg):
    model = BikeStatePredictor(small_cfg).model
    export_model(small_cfg, str(tmp_path), "onnx", model=model)
    export_model(small_cfg, str(tmp_path), "torchscript", model=model)
    assert sorted(os.listdir(tmp_path)) == ["model.json", "model.ts"]
    TorchScriptBikeStatePredictor(str(tmp_path))  # loads: model.json names model.ts
