"""The page at ``/``: upload or take a photo, see the annotated picture, what needs attention
and the 22 parts, download the report.

Plain HTML, CSS and JavaScript in ``static/``, served by the application itself (no external
CDN: the page works on a shop's network without internet). The page talks to the API only
(``GET /v1/model``, ``POST /v1/inspect?image=1&files=1``).
"""
import os

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["router", "static_files", "STATIC_DIR"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index():
    return FileResponse(os.path.join(STATIC_DIR, "index.html"), media_type="text/html")


def static_files():
    """The page's scripts and style sheet, to mount at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)
