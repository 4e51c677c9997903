"""tools/serve.py as users run it: a real uvicorn process on 127.0.0.1, a real model (the small
config, random weights, a thresholds.json beside them that the untrained model's detections
clear), real HTTP clients and headless Chromium on the page.

To regenerate the README's screenshot with a trained model:
    BIKESTATE_PAGE_MODEL=output/demo/train BIKESTATE_PAGE_SCREENSHOT=docs/inspection_page.png \
        pytest tests/tools/test_serve.py -k browser
"""
import base64
import concurrent.futures
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from PIL import Image

from bikestate import add_bikestate_config
from bikestate.constants import PART_NAMES
from bikestate.synth import generate_synthbikes
from bikestate.inference.report import CSV_COLUMNS, report_files
from bikestate.verdict import OperatingPoint

from image_builders import corrupt_dds
from tool_helpers import CONFIG, REPO, save_random_weights

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SMALL_TEST_SIZE = {"INPUT.MIN_SIZE_TEST": 128, "INPUT.MAX_SIZE_TEST": 192}
# Detections of the untrained model clear it: the reports have boxes, states and attention.
SCORE_THRESH = 0.01


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tools/serve.py --model MODEL FLAGS`` on a free port, in ``cwd`` with ``TMPDIR`` set
    to ``tmp`` (both empty: the service must not write there); the log goes to ``log_path``."""

    def __init__(self, model, *flags, cwd, tmp, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path, self.cwd, self.tmp = log_path, cwd, tmp
        env = dict(os.environ, BIKESTATE_DEBUG="0", TMPDIR=str(tmp), OMP_NUM_THREADS="1",
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(REPO, "tools", "serve.py"), "--model", str(model),
                 "--port", str(self.port), "--threads", "1", *flags],
                cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, f"the server exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"the server did not start:\n{self.log()}"
            time.sleep(0.3)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def stop(self, timeout=60):
        """SIGTERM, as a service manager stops it; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def start_server(tmp_path_factory, model, *flags):
    cwd, tmp = tmp_path_factory.mktemp("serve_cwd"), tmp_path_factory.mktemp("serve_tmp")
    log_path = tmp_path_factory.mktemp("serve_log") / "server.log"
    return Server(model, *flags, cwd=cwd, tmp=tmp, log_path=log_path)


def write_model_folder(folder, **overrides):
    """A training output folder as users get one: config.yaml, model_final.pth and the
    thresholds.json of its operating point."""
    cfg = add_bikestate_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([x for kv in {"MODEL.DEVICE": "cpu", **overrides}.items() for x in kv])
    (folder / "config.yaml").write_text(cfg.dump())
    save_random_weights(folder / "model_final.pth")
    OperatingPoint(score_thresh=SCORE_THRESH).save(str(folder / "thresholds.json"))
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model_folder(tmp_path_factory.mktemp("train_output"), **SMALL_TEST_SIZE)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A SynthBikes photo at 640x480 (``bike.jpg``), the same bike as a phone stores it
    (sideways with EXIF orientation 6: ``phone.jpg``, 640x480 upright), a truncated JPEG, a text
    file, a tiny photo for the load test and a 1.6 MB PNG."""
    root = tmp_path_factory.mktemp("serve_photos")
    generate_synthbikes(str(root / "synth"), num_images=1, seed=3, image_size=(640, 480),
                        show_progress=False)
    source = root / "synth" / "images" / os.listdir(root / "synth" / "images")[0]
    bike = Image.open(source).convert("RGB")
    bike.save(root / "bike.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show": undoes the rotation below
    bike.transpose(Image.Transpose.ROTATE_90).save(root / "phone.jpg", exif=exif, quality=90)
    data = (root / "bike.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.txt").write_text("not a photo\n")
    (root / "odd.dds").write_bytes(corrupt_dds())  # its decoder fails in its own way
    bike.resize((96, 72)).save(root / "tiny.jpg", quality=85)
    noise = np.random.default_rng(0).integers(0, 256, (700, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "noise.png")  # 1.6 MB: more than a spooled form keeps
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    server = start_server(tmp_path_factory, model_dir, "--queue-size", "32",
                          "--max-upload-mb", "2")
    yield server
    server.stop()


def post_photo(url, path, name=None, params=None, field="photo", timeout=120):
    with open(path, "rb") as f:
        return httpx.post(url + "/v1/inspect", params=params, timeout=timeout,
                          files={field: (name or os.path.basename(path), f.read())})


def run_predict_here(args, monkeypatch):
    """tools/predict.py's main() in this process (its imports are already loaded here), on one
    torch thread as the server; returns its exit status."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import predict
    finally:
        sys.path.remove(os.path.join(REPO, "tools"))
    monkeypatch.setenv("BIKESTATE_DEBUG", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as exit_info:
            predict.main(args)
    finally:
        torch.set_num_threads(threads)
    return exit_info.value.code


def test_inspect_is_the_report_of_predict(server, model_dir, photos, monkeypatch):
    monkeypatch.chdir(photos)  # the reports name the photos as given: bike.jpg, phone.jpg
    status = run_predict_here(
        ["--config-file", str(model_dir / "config.yaml"), "--input", "bike.jpg", "phone.jpg",
         "--output", str(photos / "predicted"), "--no-vis", "MODEL.WEIGHTS",
         str(model_dir / "model_final.pth")], monkeypatch)
    assert status == 0
    with open(photos / "predicted" / "report.json") as f:
        predicted = json.load(f)
    csv_text = (photos / "predicted" / "report.csv").read_text().splitlines()
    for expected in predicted["images"]:
        response = post_photo(server.url, photos / expected["file_name"],
                              params={"files": 1})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["report"] == expected
        assert answer["verdict_rule"] == predicted["verdict_rule"]
        assert answer["score_threshold"] == predicted["score_threshold"] == SCORE_THRESH
        assert answer["request_id"] == response.headers["x-request-id"]
        assert {"queued_ms", "inference_ms", "total_ms"} <= set(answer["timing"])
        # The page's downloads are predict's files for this photo.
        rows = answer["files"]["report.csv"].splitlines()
        assert rows[0] == csv_text[0] and rows[1:] == [
            line for line in csv_text[1:] if line.startswith(expected["file_name"] + ",")]
        assert json.loads(answer["files"]["report.json"])["images"] == [expected]
    bike, phone = predicted["images"]
    assert (bike["height"], bike["width"]) == (480, 640)
    # Stored 480 wide and 640 high, shown upright (as the EXIF says) as the bike photo.
    assert Image.open(photos / "phone.jpg").size == (480, 640)
    assert (phone["height"], phone["width"]) == (480, 640)
    assert [p["part"] for p in bike["parts"]] == list(PART_NAMES)
    assert bike["counts"]["not_found"] < len(PART_NAMES)  # the threshold is cleared: boxes


def test_model_and_health(server, model_dir):
    import hashlib

    model = httpx.get(server.url + "/v1/model").json()
    assert model["parts"] == list(PART_NAMES)
    assert model["states"] == ["intact", "damaged", "absent", "occluded"]
    assert model["config_name"] == f"{model_dir.name}/config.yaml"
    weights = (model_dir / "model_final.pth").read_bytes()
    assert model["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert model["verdict_rule"]["source"] == str(model_dir / "thresholds.json")
    assert model["score_threshold"] == SCORE_THRESH
    health = httpx.get(server.url + "/healthz").json()
    assert health == {"status": "ok", "inspecting": 0, "queue_waiting": 0, "queue_size": 32}


def test_annotated_picture(server, photos):
    answer = post_photo(server.url, photos / "bike.jpg", params={"image": 1}).json()
    assert answer["image"]["media_type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(base64.b64decode(answer["image"]["base64"])))
    assert picture.format == "JPEG"
    # The photo at its size, with the state legend below it.
    assert picture.width == 640 and picture.height > 480


@pytest.mark.parametrize("name, make, status, reason", [
    ("large.jpg", lambda photos: np.random.default_rng(0).bytes(3 * 1024 * 1024), 413,
     "more than the limit of 2097152 bytes"),
    ("notes.txt", lambda photos: (photos / "notes.txt").read_bytes(), 415,
     "notes.txt: cannot read image (not an image file"),
    ("truncated.jpg", lambda photos: (photos / "truncated.jpg").read_bytes(), 400,
     "truncated.jpg: cannot read image"),
    ("empty.jpg", lambda photos: b"", 400, "empty.jpg: the file is empty"),
    ("odd.dds", lambda photos: (photos / "odd.dds").read_bytes(), 400,
     "odd.dds: cannot read image (NotImplementedError"),
])
def test_bad_uploads_are_refused_with_the_reason(server, photos, name, make, status, reason):
    response = httpx.post(server.url + "/v1/inspect", files={"photo": (name, make(photos))},
                          headers={"X-Request-ID": f"bad-{status}"}, timeout=60)
    assert response.status_code == status
    assert reason in response.json()["error"]
    assert response.json()["request_id"] == response.headers["x-request-id"] == f"bad-{status}"
    # The service goes on.
    assert post_photo(server.url, photos / "tiny.jpg").status_code == 200
    assert f"bad-{status} 127.0.0.1 POST /v1/inspect {status}" in server.log()


def test_not_a_form_and_no_photo(server):
    response = httpx.post(server.url + "/v1/inspect", content=b"{}",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "multipart/form-data" in response.json()["error"]
    form = (b'--b0\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            b"--b0--\r\n")
    response = httpx.post(server.url + "/v1/inspect", content=form,
                          headers={"Content-Type": "multipart/form-data; boundary=b0"})
    assert response.status_code == 400 and "no photo in the form" in response.json()["error"]


@pytest.mark.parametrize("method, path, status, reason", [
    ("POST", "/v1/inspect?image=abc", 400, "bad request: query image:"),
    ("GET", "/v1/inspect", 405, "GET is not allowed on /v1/inspect"),
    ("GET", "/v1/nothing", 404, "no such page: /v1/nothing"),
])
def test_refusals_by_the_framework_answer_in_the_services_shape(server, photos, method, path,
                                                                status, reason):
    files = {"photo": ("tiny.jpg", (photos / "tiny.jpg").read_bytes())} if method == "POST" \
        else None
    response = httpx.request(method, server.url + path, files=files, timeout=60,
                             headers={"X-Request-ID": f"refused-{status}"})
    assert response.status_code == status
    assert response.json() == {"error": response.json()["error"],
                               "request_id": f"refused-{status}"}
    assert response.json()["error"].startswith(reason), response.json()
    assert f"refused-{status} 127.0.0.1 {method} {path.split('?')[0]} {status}" in server.log()


def test_batch_answers_each_photo(server, photos):
    files = [("photos", (name, (photos / name).read_bytes()))
             for name in ("bike.jpg", "notes.txt", "phone.jpg", "truncated.jpg", "odd.dds")]
    response = httpx.post(server.url + "/v1/inspect/batch", files=files, timeout=120)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["file_name"], r["status"]) for r in results] == [
        ("bike.jpg", 200), ("notes.txt", 415), ("phone.jpg", 200), ("truncated.jpg", 400),
        ("odd.dds", 400)]
    single = post_photo(server.url, photos / "phone.jpg").json()["report"]
    assert results[2]["report"] == single
    assert "cannot read image" in results[3]["error"]


def test_two_hundred_requests_from_eight_clients(server, photos):
    """Reliability: 200 requests from 8 concurrent clients, half of them corrupt or not
    images: every answer is 200 or the deliberate 4xx (or a deliberate 503), and the server's
    memory does not grow by more than 10 %."""
    uploads = {"tiny.jpg": (photos / "tiny.jpg").read_bytes(),
               "truncated.jpg": (photos / "truncated.jpg").read_bytes(),
               "notes.txt": (photos / "notes.txt").read_bytes()}
    plan = ["truncated.jpg" if i % 4 == 1 else "notes.txt" if i % 4 == 3 else "tiny.jpg"
            for i in range(200)]
    expected = {"tiny.jpg": 200, "truncated.jpg": 400, "notes.txt": 415}
    local = threading.local()

    def send(name):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.url, timeout=120)
        return name, local.client.post("/v1/inspect", files={"photo": (name, uploads[name])}
                                       ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(send, plan[:16]))  # warm-up: first allocations of the model and parser
        before = server.rss_kib()
        answers = list(pool.map(send, plan))
    after = server.rss_kib()
    unexpected = [(name, status) for name, status in answers
                  if status != expected[name] and status != 503]
    assert unexpected == []
    assert sum(status == 200 for _, status in answers) >= 100
    assert after <= 1.10 * before, f"RSS grew from {before} KiB to {after} KiB"


def test_nothing_written_to_disk(server, photos):
    assert post_photo(server.url, photos / "bike.jpg", params={"image": 1}).status_code == 200
    # Uploads above a megabyte are not spooled to temporary files either.
    assert (photos / "noise.png").stat().st_size > 1024 * 1024
    assert post_photo(server.url, photos / "noise.png").status_code == 200
    assert os.listdir(server.cwd) == [] and os.listdir(server.tmp) == []


# ------------------------------------------------------------------ a queue of one, --save-dir


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory, model_dir):
    """One photo in progress and one waiting at most, at a test size that makes an inference
    last long enough for requests to pile up; it keeps what it inspects."""
    save_dir = tmp_path_factory.mktemp("saved")
    server = start_server(tmp_path_factory, model_dir, "--queue-size", "1", "--save-dir",
                          str(save_dir), "INPUT.MIN_SIZE_TEST", "640", "INPUT.MAX_SIZE_TEST",
                          "1066")
    server.save_dir = save_dir
    yield server
    server.stop()


def test_full_queue_answers_503_with_retry_after(slow_server, photos):
    data = (photos / "bike.jpg").read_bytes()

    def send(i):
        return httpx.post(slow_server.url + "/v1/inspect", timeout=300,
                          files={"photo": (f"bike{i}.jpg", data)})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(send, range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1
            assert "the inspection queue is full" in r.json()["error"]
    # What was inspected is kept: the photo as uploaded and predict's report files.
    saved = {r.json()["request_id"]: r for r in responses if r.status_code == 200}
    assert sorted(os.listdir(slow_server.save_dir)) == sorted(saved)
    for request_id, r in saved.items():
        folder = slow_server.save_dir / request_id
        name = r.json()["report"]["file_name"]
        assert sorted(os.listdir(folder)) == sorted([f"00_{name}", "report.csv", "report.json"])
        assert (folder / f"00_{name}").read_bytes() == data
        with open(folder / "report.json") as f:
            assert json.load(f)["images"] == [r.json()["report"]]
        with open(folder / "report.csv") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == CSV_COLUMNS and len(list(reader)) == len(PART_NAMES)


def test_a_request_id_given_twice_never_overwrites_a_saved_request(slow_server, photos):
    """Clients choose their X-Request-ID: the second request with one gets its own folder."""
    for name in ("alice.jpg", "bob.jpg"):
        response = httpx.post(slow_server.url + "/v1/inspect", timeout=300,
                              files={"photo": (name, (photos / "tiny.jpg").read_bytes())},
                              headers={"X-Request-ID": "same-id"})
        assert response.status_code == 200 and response.json()["request_id"] == "same-id"
    for folder, name in (("same-id", "alice.jpg"), ("same-id.2", "bob.jpg")):
        with open(slow_server.save_dir / folder / "report.json") as f:
            assert [r["file_name"] for r in json.load(f)["images"]] == [name]


def test_sigterm_answers_the_request_in_flight(slow_server, photos):
    data = (photos / "bike.jpg").read_bytes()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.post, slow_server.url + "/v1/inspect", timeout=300,
                             files={"photo": ("last.jpg", data)})
        deadline = time.monotonic() + 60
        while httpx.get(slow_server.url + "/healthz").json()["inspecting"] == 0:
            assert time.monotonic() < deadline and not future.done()
            time.sleep(0.01)
        slow_server.proc.send_signal(signal.SIGTERM)
        assert future.result().status_code == 200
    # Ended by the signal it was sent (a shell's 143) after shutting down in order.
    assert slow_server.stop() == -signal.SIGTERM
    log = slow_server.log()
    assert "Shutting down" in log and "INFO: stopped" in log and log.rstrip().endswith(
        f"Finished server process [{slow_server.proc.pid}]")


# ------------------------------------------------------------------ the page, in Chromium


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, server):
    """The module's server, or one on BIKESTATE_PAGE_MODEL (a trained model) when set."""
    model = os.environ.get("BIKESTATE_PAGE_MODEL")
    if not model:
        yield server
        return
    own = start_server(tmp_path_factory, model)
    yield own
    own.stop()


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="no chromium on this machine (make setup installs it, as root)")
def test_page_in_headless_chromium(page_server, photos, tmp_path):
    from playwright.sync_api import sync_playwright

    outside = []
    screenshot = os.environ.get("BIKESTATE_PAGE_SCREENSHOT") or str(tmp_path / "page.png")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900},
                                    accept_downloads=True)
            # No CDN: nothing but the service itself (and the page's own data/blob URLs).
            page.on("request", lambda r: None if r.url.startswith(
                (page_server.url, "data:", "blob:")) else outside.append(r.url))
            page.goto(page_server.url + "/")
            page.wait_for_selector("#model-info:has-text('parts')")
            assert page.locator("#camera").get_attribute("capture") == "environment"
            with page.expect_response(lambda r: "/v1/inspect" in r.url) as inspected:
                page.set_input_files("#file", str(photos / "bike.jpg"))
            answer = inspected.value.json()
            page.wait_for_selector("#parts tbody tr")
            rows = page.locator("#parts tbody tr")
            assert rows.count() == 22
            assert rows.evaluate_all("rs => rs.map(r => [r.dataset.part, r.dataset.verdict])") \
                == [[p["part"], p["verdict"]] for p in answer["report"]["parts"]]
            attention = page.locator("#attention li").evaluate_all(
                "items => items.map(i => [i.dataset.part, i.dataset.verdict])")
            assert attention == [[a["part"], a["verdict"]] for a in answer["report"]["attention"]]
            assert attention, "a random model leaves parts not found: the list is not empty"
            # The attention list comes before the table.
            assert page.locator("#attention").evaluate(
                "a => Boolean(a.compareDocumentPosition(document.querySelector('#parts')) & 4)")
            assert page.locator("#picture").evaluate("img => img.naturalWidth") == 640
            with page.expect_download() as download:
                page.click("#download-csv")
            with open(download.value.path(), encoding="utf-8") as f:
                downloaded = f.read()
            expected = report_files([answer["report"]], "")["report.csv"]
            assert downloaded == expected
            assert download.value.suggested_filename == "bike.report.csv"
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    assert outside == []
    with open(screenshot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def onnx_server(tmp_path_factory, model_dir):
    """The same model exported to ONNX (tools/export_model.py) and served from the export."""
    export = tmp_path_factory.mktemp("onnx_export") / "export"
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "export_model.py"), "--config-file",
         str(model_dir / "config.yaml"), "--format", "onnx", "--output", str(export),
         "MODEL.WEIGHTS", str(model_dir / "model_final.pth")],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1", BIKESTATE_DEBUG="0"))
    assert out.returncode == 0, out.stderr
    server = start_server(tmp_path_factory, export)
    yield server, export
    server.stop()


def test_an_onnx_export_is_served_with_the_report_of_predict(onnx_server, photos, monkeypatch):
    server, export = onnx_server
    monkeypatch.chdir(photos)
    status = run_predict_here(["--backend", "onnxruntime", "--export", str(export), "--input",
                               "bike.jpg", "--output", str(photos / "predicted_onnx"),
                               "--no-vis"], monkeypatch)
    assert status == 0
    with open(photos / "predicted_onnx" / "report.json") as f:
        expected = json.load(f)["images"][0]
    response = post_photo(server.url, photos / "bike.jpg")
    assert response.status_code == 200, response.text
    assert response.json()["report"] == expected
    assert expected["counts"]["not_found"] < len(PART_NAMES)
    model = httpx.get(server.url + "/v1/model").json()
    assert model["backend"] == "onnxruntime"
    assert model["parts"] == list(PART_NAMES)
    assert model["score_threshold"] == SCORE_THRESH  # the export carries thresholds.json's rule
