"""The deployment runtime as users run it: tools/predict.py --backend onnxruntime and
bikestate.deploy in a process where torch and detectron2 cannot be imported, tools/export_model.py,
and bad input."""
import json
import re
import os
import shutil
import subprocess
import sys
import textwrap

import onnx
import pytest
from deploy_helpers import REPO, SCORE_THRESH, SMALL_CONFIG, assert_same_report, run_tool

from bikestate.deploy import FORMAT_VERSION, ModelInfo
from bikestate.utils.errors import ExportError


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if ": error: " in line]


def test_the_blocker_blocks(no_torch_env):
    result = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True,
                            text=True, env=dict(os.environ, **no_torch_env))
    assert result.returncode != 0 and "blocked by the test" in result.stderr


def test_predict_backends_give_the_same_reports(tmp_path, onnx_export, photos,
                                               small_cfg_opts, no_torch_env):
    """report.csv of --backend onnxruntime, run where torch and detectron2 cannot be imported,
    is the one of --backend pytorch: the same rows and verdicts, every number equal or one unit
    of its rounding apart, and at most 1 % of them apart (on the AMD EPYC hosts none; on an
    Intel Xeon host one state probability of 628 numbers, 0.2582 against 0.2581)."""
    pytorch = run_tool("predict.py", "--config-file", SMALL_CONFIG, "--input", str(photos),
                       "--output", str(tmp_path / "pytorch"), "--no-vis",
                       "--confidence-threshold", SCORE_THRESH, *small_cfg_opts)
    assert pytorch.returncode == 0, pytorch.stderr
    onnx_run = run_tool("predict.py", "--backend", "onnxruntime", "--export", onnx_export[0],
                        "--input", str(photos), "--output", str(tmp_path / "onnx"), "--no-vis",
                        "--confidence-threshold", SCORE_THRESH, env=no_torch_env)
    assert onnx_run.returncode == 0, onnx_run.stderr
    numbers, off_by_one = assert_same_report(tmp_path / "pytorch" / "report.csv",
                                             tmp_path / "onnx" / "report.csv", 6 * 22)
    assert numbers > 6 * 22 and off_by_one <= 0.01 * numbers, (numbers, off_by_one)
    found = [json.loads((tmp_path / run / "predictions.json").read_text())["detections"]
             for run in ("pytorch", "onnx")]
    assert len(found[0]) == len(found[1]) > 0
    reports = json.loads((tmp_path / "onnx" / "report.json").read_text())
    assert reports["backend"] == "onnxruntime" and reports["status"] == "finished"


def test_onnx_predictor_api_without_torch(onnx_export, photos, no_torch_env):
    """OnnxBikeStatePredictor(export)(BGR image) -> Detections -> the records and the report,
    with neither torch nor detectron2 imported."""
    script = textwrap.dedent(f"""
        import json, sys
        from bikestate.deploy import OnnxBikeStatePredictor
        from bikestate.inference.export import instances_to_records
        from bikestate.inference.images import read_image
        from bikestate.inference.report import build_report

        predictor = OnnxBikeStatePredictor({onnx_export[0]!r})
        image = read_image({str(photos / "phone.jpg")!r})
        detections = predictor(image)
        report = build_report("phone.jpg", detections, predictor.part_names,
                              predictor.operating_point)
        records = instances_to_records("phone.jpg", detections, predictor.part_names)
        assert not any(m.split(".")[0] in ("torch", "detectron2") for m in sys.modules)
        print(json.dumps({{"size": list(detections.image_size), "records": len(records),
                          "parts": len(report["parts"])}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=dict(os.environ, **no_torch_env), cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["size"] == [320, 240]  # EXIF-rotated to portrait
    assert answer["records"] > 0 and answer["parts"] == 22


def test_export_tool_writes_a_half_pixel_roialign_graph_and_model_json(onnx_export):
    """Opset 17 by default, whose RoiAlign is detectron2's aligned one (an opset below 16 is
    refused: tests/test_bad_input.py, export-opset-without-aligned-roialign)."""
    folder, tool = onnx_export
    info = ModelInfo.load(folder)
    assert info.format == "onnx" and len(info.part_names) == 22
    assert (info.min_size_test, info.max_size_test) == (128, 192)
    assert info.detection_score_thresh == float(SCORE_THRESH)
    assert info.data["onnx_opset"] >= 16
    graph = onnx.load(os.path.join(folder, "model.onnx"))
    modes = [attr.s.decode() for node in graph.graph.node if node.op_type == "RoiAlign"
             for attr in node.attribute if attr.name == "coordinate_transformation_mode"]
    assert modes and set(modes) == {"half_pixel"}  # detectron2's aligned ROIAlign
    assert [o.name for o in graph.graph.output] == list(info.data["outputs"])


def _broken_exports(root, export):
    """name -> (folder, what its error line must name)."""
    cases = {"missing": (root / "missing", "no such export folder")}
    corrupt = root / "corrupt"
    shutil.copytree(export, corrupt)
    (corrupt / "model.onnx").write_bytes(b"not a graph")
    cases["corrupt graph"] = (corrupt, "onnxruntime cannot load the graph")
    other_version = root / "other_version"
    shutil.copytree(export, other_version)
    data = json.loads((other_version / "model.json").read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (other_version / "model.json").write_text(json.dumps(data))
    cases["other version"] = (other_version, f"format_version {FORMAT_VERSION + 1}")
    bad_json = root / "bad_json"
    shutil.copytree(export, bad_json)
    (bad_json / "model.json").write_text("{")
    cases["corrupt model.json"] = (bad_json, "not valid JSON")
    no_json = root / "no_json"
    shutil.copytree(export, no_json)
    (no_json / "model.json").unlink()
    cases["no model.json"] = (no_json, "is not an export folder")
    for name, change, reason in (
            ("infinite size", lambda d: d["input"].update(min_size_test=float("inf")),
             "not a valid model.json (cannot convert float infinity"),
            ("boolean version", lambda d: d.update(format_version=True),
             "format_version True is not supported"),
            ("no score threshold", lambda d: d.update(detection_score_thresh=float("nan")),
             "detection_score_thresh nan in [0, 1]")):
        folder = root / name.replace(" ", "_")
        shutil.copytree(export, folder)
        data = json.loads((folder / "model.json").read_text())
        change(data)
        (folder / "model.json").write_text(json.dumps(data))  # Infinity, NaN: Python's JSON
        cases[name] = (folder, reason)
    return cases


def test_bad_exports_are_one_line_and_exit_2(tmp_path, onnx_export, photos, no_torch_env):
    for name, (folder, reason) in _broken_exports(tmp_path, onnx_export[0]).items():
        with pytest.raises(ExportError, match=re.escape(reason)):
            if name == "corrupt graph":
                from bikestate.deploy import OnnxBikeStatePredictor

                OnnxBikeStatePredictor(str(folder))
            else:
                ModelInfo.load(str(folder))
        if name in ("missing", "corrupt graph", "other version"):  # and as users see it
            out = tmp_path / f"out_{name.replace(' ', '_')}"
            result = run_tool("predict.py", "--backend", "onnxruntime", "--export", str(folder),
                              "--input", str(photos / "landscape.jpg"), "--output", str(out),
                              "--no-vis", env=no_torch_env)
            assert result.returncode == 2, (name, result.stderr)
            lines = _error_lines(result)
            assert len(lines) == 1 and str(folder) in lines[0] and reason in lines[0], lines
            assert not out.exists()


def test_unreadable_photo_is_one_line_and_the_others_are_inspected(tmp_path, onnx_export,
                                                                    photos, no_torch_env):
    data = (photos / "landscape.jpg").read_bytes()
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(data[: len(data) // 2])
    result = run_tool("predict.py", "--backend", "onnxruntime", "--export", onnx_export[0],
                      "--input", str(broken), str(photos / "portrait.png"), "--output",
                      str(tmp_path / "out"), "--no-vis", env=no_torch_env)
    assert result.returncode == 1, result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1 and str(broken) in lines[0], result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [image["file_name"] for image in report["images"]] == [str(photos / "portrait.png")]
    assert report["errors"][0]["file_name"] == str(broken)


def test_backend_options_are_checked(tmp_path, onnx_export, no_torch_env):
    cases = [
        (["--backend", "onnxruntime", "--no-vis"], "needs --export DIR"),
        (["--backend", "onnxruntime", "--export", onnx_export[0], "--config-file",
          SMALL_CONFIG, "--no-vis"], "apply to --backend pytorch"),
        (["--backend", "onnxruntime", "--export", onnx_export[0], "--confidence-threshold",
          "0.01", "--no-vis"], "keeps detections scoring above 0.058 only"),
        (["--backend", "onnxruntime", "--export", onnx_export[0]], "add --no-vis"),
    ]
    photo = os.path.join(REPO, "docs", "failure_analysis.png")
    for args, reason in cases:
        result = run_tool("predict.py", *args, "--input", photo, "--output",
                          str(tmp_path / "out"), env=no_torch_env)
        assert result.returncode == 2, (args, result.stderr)
        lines = _error_lines(result)
        assert len(lines) == 1 and reason in lines[0], (args, result.stderr)
    assert not (tmp_path / "out").exists()



def test_an_export_without_thresholds_json_takes_the_default_rules_threshold(
        tmp_path, small_cfg_opts):
    """No thresholds.json beside the weights: the verdict rule is the default one at
    TEST.BIKESTATE.VERIFY_SCORE_THRESH, as for tools/predict.py; a lower one than the
    detector's lowers the graph's threshold too, so the export runs at its own rule."""
    out = tmp_path / "export"
    pairs = list(zip(small_cfg_opts[::2], small_cfg_opts[1::2]))
    opts = [x for key, value in pairs if key != "MODEL.ROI_HEADS.SCORE_THRESH_TEST"
            for x in (key, value)]  # the config's 0.05, not the tests' explicit one
    result = run_tool("export_model.py", "--config-file", SMALL_CONFIG, "--format", "onnx",
                      "--output", str(out), "--no-check", *opts,
                      "TEST.BIKESTATE.VERIFY_SCORE_THRESH", "0.03")
    assert result.returncode == 0, result.stderr
    info = ModelInfo.load(str(out))
    assert info.detection_score_thresh == info.operating_point.score_thresh == 0.03
