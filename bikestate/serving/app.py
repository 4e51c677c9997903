"""The application factory: :func:`create_app` puts the backend, the worker, the API and the
page together into one FastAPI application.

Every request gets an id (the client's ``X-Request-ID`` when it is a short token, else a new
one), returned in the ``X-Request-ID`` header and in JSON answers, and one log line when it
ends: id, method, path, status, milliseconds and what was found. The worker thread starts with
the application and stops after the last request has been answered (uvicorn's graceful
shutdown waits for requests in flight).
"""
import contextlib
import dataclasses
import logging
import re
import time
import uuid
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import error_response
from .api import router as api_router
from .page import router as page_router
from .page import static_files
from .worker import InferenceWorker

__all__ = ["ServiceSettings", "InspectionService", "create_app"]

logger = logging.getLogger("bikestate.serving")

# A client's X-Request-ID is reused only when it is this tame (it ends up in logs and paths).
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """How the service behaves (the flags of ``tools/serve.py``).

    Attributes:
        queue_size (int): photos (or batches) that may wait for the model; more are refused
            with 503 and ``Retry-After``.
        max_upload_bytes (int): largest request body; larger ones are refused with 413.
        max_batch_images (int): most photos in one ``/v1/inspect/batch`` request.
        threads (int or None): ``torch.set_num_threads`` for inference; None leaves torch's.
        save_dir (str or None): keep each request's photos and report there; None: nothing is
            written to disk.
    """

    queue_size: int = 8
    max_upload_bytes: int = 20 * 1024 * 1024
    max_batch_images: int = 16
    threads: Optional[int] = None
    save_dir: Optional[str] = None


@dataclasses.dataclass
class InspectionService:
    """What the routes share: the backend, its worker and the settings."""

    backend: object
    worker: InferenceWorker
    settings: ServiceSettings


def create_app(backend, settings=None):
    """The inspection service as an ASGI application (serve it with uvicorn).

    Args:
        backend: what photos are inspected with, see :mod:`bikestate.serving.backend`.
        settings (ServiceSettings or None): defaults if None.

    Returns:
        fastapi.FastAPI: ``app.state.service`` is the :class:`InspectionService`.
    """
    settings = settings or ServiceSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if settings.threads:
            import torch

            torch.set_num_threads(settings.threads)
        worker = app.state.service.worker.start()
        logger.info("ready: %s, queue of %d, %s thread(s)",
                    backend.info.get("config_name", "model"), settings.queue_size,
                    settings.threads or "default")
        try:
            yield
        finally:
            worker.stop()
            logger.info("stopped")

    app = FastAPI(title="bikestate inspection service", lifespan=lifespan,
                  summary="A photo of a bike in, the state of its 22 parts out.")
    app.state.service = InspectionService(backend, InferenceWorker(settings.queue_size),
                                          settings)
    app.middleware("http")(_request_id_and_log_line)
    # Refusals by FastAPI itself (a bad query parameter, an unknown path or method) answer in
    # the service's shape too: {"error": one line, "request_id"}.
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(api_router)
    app.include_router(page_router)
    app.mount("/static", static_files(), name="static")
    return app


async def _invalid_request(request: Request, exc: RequestValidationError):
    problems = [f"{' '.join(str(part) for part in error.get('loc', ()))}: "
                f"{error.get('msg', 'invalid')}" for error in exc.errors()]
    return error_response(request, 400, "bad request: " + "; ".join(problems))


async def _http_error(request: Request, exc: StarletteHTTPException):
    reason = {404: f"no such page: {request.url.path}",
              405: f"{request.method} is not allowed on {request.url.path}"}.get(
        exc.status_code, str(exc.detail))
    return error_response(request, exc.status_code, reason, headers=exc.headers)


async def _request_id_and_log_line(request: Request, call_next):
    given = request.headers.get("x-request-id", "")
    request.state.request_id = given if _CLIENT_REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
    request.state.started = time.perf_counter()
    request.state.summary = ""
    try:
        response = await call_next(request)
    except Exception as e:  # noqa: BLE001  answered 500 with the reason, and the service goes on
        logger.exception("%s unexpected error", request.state.request_id)
        reason = f"internal error ({type(e).__name__}: {' '.join(str(e).split())})"
        request.state.summary = reason
        response = JSONResponse({"error": reason, "request_id": request.state.request_id},
                                status_code=500)
    response.headers["X-Request-ID"] = request.state.request_id
    client = request.client.host if request.client else "-"
    logger.info("%s %s %s %s %d %.0fms%s", request.state.request_id, client, request.method,
                request.url.path, response.status_code,
                1000 * (time.perf_counter() - request.state.started),
                f" {request.state.summary}" if request.state.summary else "")
    return response
