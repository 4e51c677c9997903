"""Keeping what the service inspected, when asked to (``--save-dir``): nothing otherwise.

Each request that inspected photos gets a folder ``SAVE_DIR/<request id>/`` with the photos
as uploaded, their pictures when drawn, and ``report.json`` / ``report.csv`` in the format of
``tools/predict.py`` (:func:`bikestate.inference.report.report_files`). Every file is written
atomically, so a folder never holds half a photo or half a report.
"""
import os
import re

from ..inference.report import report_files
from ..utils.io import atomic_write_bytes, atomic_write_texts

__all__ = ["save_inspection"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name, index):
    """``<index>_<name>`` with every character outside ``[A-Za-z0-9._-]`` replaced: a client's
    file name never chooses a path."""
    base = _UNSAFE.sub("_", os.path.basename(name.replace("\\", "/"))).strip("._") or "photo"
    return f"{index:02d}_{base[:80]}"


def _new_folder(path):
    """Create ``path``, or ``path.2``, ``path.3``, ... if taken; return the one created."""
    candidate, number = path, 1
    while True:
        try:
            os.makedirs(candidate)
            return candidate
        except FileExistsError:
            number += 1
            candidate = f"{path}.{number}"


def save_inspection(save_dir, request_id, items, operating_point, extra):
    """Write one request's photos, pictures and report into ``save_dir/request_id/`` (or
    ``request_id.2``, ``.3``, ... when a request with that id was saved before: clients choose
    their ids, and one client's request must not overwrite another's).

    Args:
        save_dir (str): existing folder.
        request_id (str): the request's id (letters, digits, ``-``, ``_``, ``.`` only).
        items (list[(Upload, ImageResult or None, str or None)]): each photo as uploaded, its
            result (None when it could not be decoded) and the reason it has no report.
        operating_point (OperatingPoint): the verdict rule, recorded in report.json.
        extra (dict): further top-level entries of report.json (request id, model).

    Returns:
        str: the request's folder.
    """
    folder = _new_folder(os.path.join(save_dir, request_id))
    reports, errors = [], []
    for index, (upload, result, error) in enumerate(items):
        name = safe_file_name(upload.file_name, index)
        atomic_write_bytes(upload.data, os.path.join(folder, name))
        if result is not None and result.picture is not None:
            atomic_write_bytes(result.picture,
                               os.path.join(folder, os.path.splitext(name)[0] + ".vis.jpg"))
        if result is not None and result.report is not None:
            reports.append(result.report)
        if error or (result is not None and result.error):
            errors.append({"file_name": upload.file_name, "saved_as": name,
                           "error": error or result.error})
    atomic_write_texts(report_files(reports, folder, errors=errors,
                                    operating_point=operating_point, extra=extra))
    return folder
