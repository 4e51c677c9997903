"""The HTTP API: ``POST /v1/inspect``, ``POST /v1/inspect/batch``, ``GET /v1/model``,
``GET /healthz``.

Each inspection answers the photo's report exactly as ``tools/predict.py`` writes it in
report.json (``report``: the 22 parts with verdict, confidence, box and state probabilities,
the counts and the ``attention`` list), with the verdict rule that decided it, the request id
and where the time went. Refusals are JSON ``{"error": reason, "request_id": id}`` with a 4xx
status (413 too large, 415 not an image, 400 corrupt or malformed) or 503 with
``Retry-After`` when the inference queue is full; the service keeps serving after each.
"""
import asyncio
import base64
import os
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..constants import STATE_COLORS, STATE_NAMES
from ..inference.report import CONFIDENCE_DEFINITION, report_files
from .archive import save_inspection
from .uploads import UploadError, decode_photo, read_uploads
from .worker import QueueFullError

__all__ = ["router", "model_description"]

router = APIRouter()


def error_response(request, status, reason, headers=None):
    """The JSON answer to a refused request (the reason also goes to the request's log line)."""
    request.state.summary = reason
    return JSONResponse({"error": reason, "request_id": request.state.request_id},
                        status_code=status, headers=headers)


def model_description(backend):
    """``GET /v1/model``: parts, states (with the page's colours), the verdict rule and what
    the backend says about its model (config, weights and their sha256, ...)."""
    point = backend.operating_point
    return {"parts": list(backend.part_names), "states": list(STATE_NAMES),
            "state_colors": {s: "#%02x%02x%02x" % tuple(round(255 * c) for c in rgb)
                             for s, rgb in zip(STATE_NAMES, STATE_COLORS)},
            "score_threshold": point.score_thresh, "verdict_rule": point.describe(),
            "confidence_definition": CONFIDENCE_DEFINITION, **backend.info}


@router.get("/healthz")
async def healthz(request: Request):
    """Liveness and load: ``{"status": "ok", "inspecting": 0 or 1, "queue_waiting": n,
    "queue_size": N}``."""
    worker = request.app.state.service.worker
    return {"status": "ok", "inspecting": int(worker.running()),
            "queue_waiting": worker.waiting(), "queue_size": worker.queue_size}


@router.get("/v1/model")
async def model(request: Request):
    return model_description(request.app.state.service.backend)


@router.post("/v1/inspect")
async def inspect(request: Request, image: bool = False, files: bool = False):
    """One photo (a multipart file field, e.g. ``photo``) -> its report.

    ``?image=1`` adds the annotated picture (``image``: ``{"media_type": "image/jpeg",
    "base64": ...}``); ``?files=1`` adds ``files``: the ``report.json`` and ``report.csv``
    that ``tools/predict.py`` would write for this photo, as texts (the page's downloads).
    """
    service = request.app.state.service
    try:
        uploads = await read_uploads(request, service.settings.max_upload_bytes, max_files=1)
        if not uploads:
            raise UploadError(400, "no photo in the form: send it as a file field, e.g. "
                                   "curl -F photo=@bike.jpg")
    except UploadError as e:
        return error_response(request, e.status, e.reason)
    upload = uploads[0]
    outcome = await _run(request, lambda: _inspect_upload(service.backend, upload, image))
    if isinstance(outcome, JSONResponse):
        return outcome
    result, timing = outcome
    if isinstance(result, UploadError):
        return error_response(request, result.status, result.reason)
    if result.report is None:  # the model or the report failed on this photo
        return error_response(request, 500, result.error)
    body = {"request_id": request.state.request_id, "report": result.report,
            **_rule(service), "timing": timing}
    if image:
        body["image"] = _picture(result)
    if files:
        body["files"] = {os.path.basename(path): text for path, text in report_files(
            [result.report], "", operating_point=service.backend.operating_point,
            extra=_provenance(request)).items()}
    await _archive(request, [(upload, result, None)])
    request.state.summary = _summary(result.report)
    return body


@router.post("/v1/inspect/batch")
async def inspect_batch(request: Request, image: bool = False):
    """Several photos (file fields, e.g. ``photos``) -> ``results``: per photo, in order, its
    ``status`` (200, or the 4xx of a photo that cannot be decoded) and ``report`` or
    ``error``. One bad photo costs only itself; the batch is one job of the queue."""
    service = request.app.state.service
    settings = service.settings
    try:
        uploads = await read_uploads(request, settings.max_upload_bytes,
                                     max_files=settings.max_batch_images)
        if not uploads:
            raise UploadError(400, "no photos in the form: send them as file fields, e.g. "
                                   "curl -F photos=@a.jpg -F photos=@b.jpg")
    except UploadError as e:
        return error_response(request, e.status, e.reason)
    outcome = await _run(request, lambda: [_inspect_upload(service.backend, upload, image)
                                           for upload in uploads])
    if isinstance(outcome, JSONResponse):
        return outcome
    results, timing = outcome
    items, kept = [], []
    for upload, result in zip(uploads, results):
        if isinstance(result, UploadError):
            items.append({"file_name": upload.file_name, "status": result.status,
                          "error": result.reason})
            kept.append((upload, None, result.reason))
            continue
        kept.append((upload, result, None))
        if result.report is None:
            items.append({"file_name": upload.file_name, "status": 500, "error": result.error})
            continue
        item = {"file_name": upload.file_name, "status": 200, "report": result.report}
        if image:
            item["image"] = _picture(result)
        items.append(item)
    await _archive(request, kept)
    request.state.summary = (f"{len(uploads)} photos, "
                             f"{sum(i['status'] == 200 for i in items)} inspected")
    return {"request_id": request.state.request_id, "results": items, **_rule(service),
            "timing": timing}


def _inspect_upload(backend, upload, draw):
    """The inspection result of an uploaded photo, or the :class:`UploadError` saying why it
    cannot be decoded.

    Runs in the inference worker's job: photos are decoded inside the slot the queue gave the
    request, so the queue also bounds how many photos are held decoded at once (a 9400 x 9400
    PNG of one colour uploads in 280 KB and decodes to 265 MB), and a request that finds the
    queue full is refused before any decoding."""
    try:
        photo, notes = decode_photo(upload)
    except UploadError as e:
        return e
    return backend.inspect(photo, upload.file_name, draw=draw, notes=notes)


async def _run(request, job):
    """Run ``job`` on the inference worker: ``(its value, timing)``, or the 503 response of a
    full queue."""
    service = request.app.state.service
    started = time.perf_counter()
    try:
        future = service.worker.submit(job)
    except QueueFullError as e:
        return error_response(request, 503, str(e),
                              headers={"Retry-After": str(e.retry_after)})
    value = await asyncio.wrap_future(future)
    timing = {key: round(ms, 1) for key, ms in future.timing.items()}
    timing["total_ms"] = round(1000 * (time.perf_counter() - request.state.started), 1)
    timing["waited_and_ran_ms"] = round(1000 * (time.perf_counter() - started), 1)
    return value, timing


def _rule(service):
    """The verdict rule as report.json states it."""
    point = service.backend.operating_point
    return {"score_threshold": point.score_thresh, "verdict_rule": point.describe(),
            "confidence_definition": CONFIDENCE_DEFINITION}


def _picture(result):
    if result.picture is None:
        return {"media_type": None, "base64": None, "error": result.error}
    return {"media_type": "image/jpeg", "base64": base64.b64encode(result.picture).decode()}


def _summary(report):
    counts = report["counts"]
    return (f"{report['file_name']} {report['width']}x{report['height']}: "
            f"{counts['damaged']} damaged, {counts['absent']} absent, "
            f"{counts['not_found']} not found")


async def _archive(request, items):
    service = request.app.state.service
    if service.settings.save_dir is None:
        return
    await run_in_threadpool(save_inspection, service.settings.save_dir,
                            request.state.request_id, items, service.backend.operating_point,
                            _provenance(request))


def _provenance(request):
    """Top-level entries of a report.json the service writes: the request and the model."""
    info = request.app.state.service.backend.info
    return {"request_id": request.state.request_id, "config_file": info.get("config_file"),
            "weights": info.get("weights"), "weights_sha256": info.get("weights_sha256")}
