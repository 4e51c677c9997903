"""The inspection service: a web page and an HTTP API where a photo goes in and the 22-part
report comes out (``tools/serve.py``).

- :func:`create_app` (:mod:`.app`): the FastAPI application, with request ids and one log line
  per request; :class:`ServiceSettings` its behaviour (queue, upload limit, threads, save dir).
- :mod:`.backend`: what photos are inspected with: an object with one method,
  ``inspect(image_bgr, file_name, draw) -> ImageResult``; :func:`load_predictor_backend` builds
  the PyTorch one from a training folder or a config + weights.
- :class:`InferenceWorker` (:mod:`.worker`): one inference thread fed by a bounded queue (a full
  queue is a 503 with Retry-After).
- :mod:`.uploads`: multipart photos read in memory within the size limit and decoded upright.
- :mod:`.api` the JSON routes, :mod:`.page` the page at ``/``, :mod:`.archive` ``--save-dir``.

Needs the ``serve`` extra (``pip install -e '.[serve]'``: FastAPI, uvicorn, python-multipart).
"""
from .app import InspectionService, ServiceSettings, create_app
from .backend import PredictorBackend, load_predictor_backend, resolve_model
from .worker import InferenceWorker, QueueFullError

__all__ = [
    "InferenceWorker",
    "InspectionService",
    "PredictorBackend",
    "QueueFullError",
    "ServiceSettings",
    "create_app",
    "load_predictor_backend",
    "resolve_model",
]
