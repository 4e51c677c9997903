"""Inspecting many photos so that one bad photo costs only itself.

:func:`inspect_images` reads, predicts, reports and draws photo after photo and yields one
:class:`ImageResult` per photo, in input order, as soon as its batch is done. Whatever goes
wrong with one photo (a file that does not decode, an unexpected failure of the model, the
report or the drawing on that photo) is caught and becomes one line in that photo's result;
the other photos go on. A batch whose forward pass fails is run again photo by photo, so only
the photo that fails is lost. Errors of the run itself (:class:`BikeStateError`, e.g. a model
without a state head) and interrupts (``KeyboardInterrupt``) still propagate: they concern
every photo.

The caller decides what to keep and when to write it (``tools/predict.py`` writes what was
inspected even when the run is interrupted).
"""
import dataclasses
from typing import List, Optional

import cv2
import numpy as np

from ..utils.errors import BikeStateError
from ..verdict import as_operating_point
from .detections import as_detections
from .export import instances_to_records
from .images import UnreadableImageError, read_image
from .report import build_report

JPEG_QUALITY = 92
_STAGE_NAMES = {"read": "reading", "predict": "the model", "report": "the report",
                "draw": "drawing the picture"}


@dataclasses.dataclass
class ImageResult:
    """What became of one photo.

    Attributes:
        file_name (str): the photo, as given.
        height, width (int or None): upright size, when the photo was read.
        detections (list[dict]): predictions.json records (see :mod:`.export`).
        report (dict or None): :func:`build_report` of the photo, with ``notes`` added when
            there are any; None when the photo has no answer (``error``).
        picture (bytes or None): JPEG of the drawn predictions, when asked for and drawn.
        notes (list[str]): choices made for the user, e.g. the first frame of a GIF.
        error (str or None): one line naming the file: why the photo has no report, or why
            its picture was not drawn (then ``report`` is there).
        stage (str or None): where ``error`` happened: ``read`` (the file does not decode),
            ``predict``, ``report`` or ``draw``.
        exception (BaseException or None): the exception behind ``error``, for tracebacks.
    """

    file_name: str
    height: Optional[int] = None
    width: Optional[int] = None
    detections: List[dict] = dataclasses.field(default_factory=list)
    report: Optional[dict] = None
    picture: Optional[bytes] = None
    notes: List[str] = dataclasses.field(default_factory=list)
    error: Optional[str] = None
    stage: Optional[str] = None
    exception: Optional[BaseException] = dataclasses.field(default=None, repr=False)

    def fail(self, stage, exception):
        """Record ``exception`` as this photo's one-line error at ``stage``."""
        self.stage, self.exception = stage, exception
        if isinstance(exception, UnreadableImageError):
            self.error = str(exception)  # already one line naming the file
            return
        reason = " ".join(str(exception).split())
        self.error = (f"{self.file_name}: {_STAGE_NAMES[stage]} failed "
                      f"({type(exception).__name__}{': ' + reason if reason else ''})")
        if stage == "draw":
            self.error += "; its report is kept"


def encode_jpeg(image_rgb, quality=JPEG_QUALITY):
    """JPEG bytes of a uint8 RGB image."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a {image_rgb.shape[1]}x{image_rgb.shape[0]} picture "
                         f"as JPEG")
    return encoded.tobytes()


def draw_verdicts(image_rgb, report, **kwargs):
    """:func:`.visualizer.draw_verdicts`, imported on first use: detectron2 draws the
    pictures, and a run without them (the ONNX runtime where detectron2 is not installed) does
    not need it."""
    from .visualizer import draw_verdicts as draw

    return draw(image_rgb, report, **kwargs)


def inspect_images(predictor, paths, *, operating_point, batch_size=1, draw=True):
    """Inspect photos one batch at a time; yield an :class:`ImageResult` per photo, in order.

    Args:
        predictor (BikeStatePredictor or ExportedBikeStatePredictor): the model; anything
            with ``part_names`` and ``predict_batch(images, batch_size)`` returning
            ``Instances`` or :class:`~.detections.Detections`.
        paths (Sequence[str]): image files.
        operating_point (OperatingPoint or float): the verdict rule of the reports (a float is
            the score threshold of the default rule); detections below its score threshold
            speak for no part and are left out of predictions.json records.
        batch_size (int): photos per forward pass.
        draw (bool): draw each photo's verdicts (:func:`draw_verdicts`) as JPEG bytes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        results, images = [], []
        for path in paths[start:start + batch_size]:
            result = ImageResult(path)
            results.append(result)
            try:
                images.append(read_image(path, format="BGR", notes=result.notes))
            except Exception as e:  # noqa: BLE001  one photo's failure costs only itself
                result.fail("read", e)
                images.append(None)
            else:
                result.height, result.width = images[-1].shape[:2]
        readable = [i for i, image in enumerate(images) if image is not None]
        outputs = _predict_each(predictor, [images[i] for i in readable])
        for i, output in zip(readable, outputs):
            if isinstance(output, Exception):
                results[i].fail("predict", output)
            else:
                _report_and_draw(results[i], images[i], output, predictor.part_names,
                                 operating_point, draw)
        yield from results


def inspect_image(predictor, image_bgr, file_name, *, operating_point, draw=True, notes=()):
    """Inspect one photo already in memory, as :func:`inspect_images` inspects a file.

    Args:
        predictor (BikeStatePredictor): the model (or any object with its ``predict_batch``
            and ``part_names``).
        image_bgr (np.ndarray): uint8 (H, W, 3) upright photo, BGR (see :func:`read_image`).
        file_name (str): the photo's name in the report and in messages.
        operating_point (OperatingPoint or float): the verdict rule of the report.
        draw (bool): draw the predictions as JPEG bytes (``picture``).
        notes (Sequence[str]): what reading the photo chose for the user (first frame, ...);
            they appear in the report as in :func:`inspect_images`.

    Returns:
        ImageResult: with ``report`` (and ``picture``), or the one-line ``error`` of the stage
        that failed (``predict``, ``report``, ``draw``). :class:`BikeStateError` propagates.
    """
    result = ImageResult(file_name, height=int(image_bgr.shape[0]),
                         width=int(image_bgr.shape[1]), notes=list(notes))
    output, = _predict_each(predictor, [image_bgr])
    if isinstance(output, Exception):
        result.fail("predict", output)
    else:
        _report_and_draw(result, image_bgr, output, predictor.part_names, operating_point, draw)
    return result


def _predict_each(predictor, images):
    """Instances per image, or the exception that image raised; one forward pass if possible."""
    if not images:
        return []
    try:
        return predictor.predict_batch(images, batch_size=len(images))
    except BikeStateError:
        raise
    except Exception as e:  # noqa: BLE001
        if len(images) == 1:
            return [e]
    # Which photo of the batch fails: each alone.
    return [outputs[0] for outputs in (_predict_each(predictor, [image]) for image in images)]


def _report_and_draw(result, image_bgr, instances, part_names, operating_point, draw):
    operating_point = as_operating_point(operating_point)
    try:
        detections = as_detections(instances)
        # predictions.json keeps what the score threshold keeps; the report's rule sees every
        # detection, as the evaluator does (the vote counts boxes below the threshold too).
        kept = detections[detections.scores >= operating_point.score_thresh]
        result.detections = instances_to_records(result.file_name, kept, part_names)
        result.report = build_report(result.file_name, detections, part_names, operating_point)
    except Exception as e:  # noqa: BLE001
        result.detections, result.report = [], None
        result.fail("report", e)
        return
    if result.notes:
        result.report["notes"] = list(result.notes)
    if draw:
        try:
            result.picture = encode_jpeg(draw_verdicts(image_bgr[:, :, ::-1], result.report))
        except Exception as e:  # noqa: BLE001
            result.fail("draw", e)
