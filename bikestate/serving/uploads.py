"""Reading the photos clients upload: multipart bodies within a size limit, decoded upright.

The body is parsed here, in memory, while it streams in: a request larger than the limit is
refused as soon as it passes it (413), and no upload is ever spooled to a temporary file, so
the service writes nothing to disk unless it is asked to keep what it inspects. Photos are
decoded exactly as ``tools/predict.py`` reads files (:func:`bikestate.inference.read_image`:
EXIF orientation applied, any colour mode as 3 channels, the first frame of an animation).
"""
import dataclasses
import io
from typing import List

from python_multipart.multipart import MultipartParser, parse_options_header

from ..inference import NotAnImageError, UnreadableImageError, read_image

__all__ = ["Upload", "UploadError", "read_uploads", "decode_photo"]


class UploadError(Exception):
    """A request the service refuses: ``status`` (an HTTP 4xx code) and a one-line reason."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclasses.dataclass
class Upload:
    """One file of a multipart form: its form field, its file name as the client named it, the
    content type it claimed and its bytes."""

    field: str
    file_name: str
    content_type: str
    data: bytes


async def read_uploads(request, max_bytes, max_files):
    """The files of a ``multipart/form-data`` request, in order.

    Args:
        request (starlette.requests.Request): the request, body not yet read.
        max_bytes (int): largest body accepted (all files and fields together).
        max_files (int): most files accepted.

    Returns:
        list[Upload]

    Raises:
        UploadError: 413 for a body over ``max_bytes`` (announced by Content-Length or found
        while reading), 400 for a body that is not a multipart form or has too many files.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UploadError(400, "expected a multipart/form-data body with the photo as a file "
                               "field (e.g. curl -F photo=@bike.jpg)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise UploadError(413, f"the upload is {int(declared)} bytes, more than the limit of "
                               f"{max_bytes} bytes (--max-upload-mb)")
    form = _FormCollector(max_files)
    parser = MultipartParser(options[b"boundary"], form.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise UploadError(413, f"the upload is more than the limit of {max_bytes} "
                                       f"bytes (--max-upload-mb)")
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as e:  # noqa: BLE001  python-multipart's errors for a malformed body
        raise UploadError(400, f"malformed multipart body ({type(e).__name__}: "
                               f"{' '.join(str(e).split())})") from e
    return form.uploads


class _FormCollector:
    """python-multipart callbacks that keep each file part's name, type and bytes."""

    def __init__(self, max_files):
        self.max_files = max_files
        self.uploads: List[Upload] = []
        self._headers = {}
        self._name, self._value = b"", b""
        self._data = None

    def callbacks(self):
        return {"on_part_begin": self._part_begin, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end}

    def _part_begin(self):
        self._headers, self._data = {}, bytearray()

    def _header_field(self, data, start, end):
        self._name += data[start:end]

    def _header_value(self, data, start, end):
        self._value += data[start:end]

    def _header_end(self):
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def _part_data(self, data, start, end):
        self._data += data[start:end]

    def _part_end(self):
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"filename" not in options:
            return  # a plain form field: nothing the service reads
        if len(self.uploads) == self.max_files:
            raise UploadError(400, f"too many files: at most {self.max_files} per request")
        self.uploads.append(Upload(
            field=options.get(b"name", b"").decode("utf-8", "replace"),
            file_name=options[b"filename"].decode("utf-8", "replace"),
            content_type=self._headers.get(b"content-type", b"").decode("latin-1"),
            data=bytes(self._data)))


def decode_photo(upload):
    """``(image_bgr, notes)`` of an uploaded photo: uint8 (H, W, 3) upright BGR and what was
    chosen for the user (e.g. the first frame of an animation).

    Raises:
        UploadError: 415 when the file is in no image format (text, PDF, ...), 400 when it is
        empty or an image that cannot be decoded (truncated, corrupt, too many pixels), with
        the reason, naming the file.
    """
    if not upload.data:
        raise UploadError(400, f"{upload.file_name}: the file is empty")
    notes = []
    try:
        image = read_image(io.BytesIO(upload.data), format="BGR", notes=notes,
                           name=upload.file_name)
    except NotAnImageError as e:
        raise UploadError(415, f"{e}; send a JPEG, PNG, WebP, TIFF, BMP or GIF photo") from e
    except UnreadableImageError as e:
        raise UploadError(400, str(e)) from e
    return image, notes
