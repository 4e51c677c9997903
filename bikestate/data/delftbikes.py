"""Reader and validator of the DelftBikes annotation format.

The format (docs/data_formats.md) is a JSON object keyed by image file name::

    {"F01.jpg": {"image": {"height": 480, "width": 640, "channels": 3},      (may be missing)
                 "parts": {"saddle": {"part_name": "saddle",
                                      "absolute_bounding_box": {"left": 10, "top": 20,
                                                                "width": 30, "height": 40},
                                      "object_state": "intact", "object_state_class": 0,
                                      "trust": 0.93}, ...}}}

Real annotations are crowd-sourced and noisy, so every record is checked and every problem is
reported by image and part (:class:`Problem`) instead of failing on the first one: a user fixing
a file of 10,000 images wants the whole list at once. Boxes partly outside the image are a
normal artefact of the annotation tool and are clipped (and counted), not reported.
"""
import dataclasses
import json
import os
from typing import List, Optional

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..constants import STATE_IDS, STATE_NAMES
from ..utils.errors import ConfigError, DataError
from ..utils.io import is_json_number

__all__ = [
    "Problem",
    "DelftBikesDataset",
    "load_delftbikes",
    "read_annotation_json",
    "parse_part_state",
    "ON_INVALID_CHOICES",
]

ON_INVALID_CHOICES = ("error", "skip")

# EXIF orientations (5..8) under which the displayed image is the stored one turned by 90 degrees.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def upright_box(box, orientation, stored_width, stored_height):
    """A box on the stored pixels of an image, on the upright view instead: the view its EXIF
    ``orientation`` (1..8) gives, as ``PIL.ImageOps.exif_transpose`` and so training, evaluation
    and inference read it.

    Args:
        box (Sequence[float]): [x, y, w, h] in the stored image (``stored_width`` x
            ``stored_height``).
    Returns:
        list[float]: [x, y, w, h] in the upright image (stored_height x stored_width wide and
        high for orientations 5..8).
    """
    x, y, w, h = box
    W, H = stored_width, stored_height
    x2, y2 = x + w, y + h
    if orientation == 2:  # mirrored left-right
        return [W - x2, y, w, h]
    if orientation == 3:  # turned 180 degrees
        return [W - x2, H - y2, w, h]
    if orientation == 4:  # mirrored top-bottom
        return [x, H - y2, w, h]
    if orientation == 5:  # transposed: stored (x, y) shows at (y, x)
        return [y, x, h, w]
    if orientation == 6:  # shown turned 90 degrees clockwise: (x, y) at (H - y, x)
        return [H - y2, x, h, w]
    if orientation == 7:  # transversed: (x, y) at (H - y, W - x)
        return [H - y2, W - x2, h, w]
    if orientation == 8:  # shown turned 90 degrees counter-clockwise: (x, y) at (y, W - x)
        return [y, W - x2, h, w]
    return [x, y, w, h]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One invalid thing in an annotation file, located by image and (when it applies) part."""

    image: str
    part: Optional[str]
    message: str

    def __str__(self):
        where = self.image if self.part is None else f"{self.image} / {self.part}"
        return f"{where}: {self.message}"


@dataclasses.dataclass
class DelftBikesDataset:
    """Validated records of a DelftBikes annotation file.

    Attributes:
        images: one dict per kept image, sorted by file name::

            {"file_name": str, "height": int, "width": int,
             "parts": [{"part_name": str, "bbox": [x, y, w, h] (clipped to the image),
                        "state": int, "state_name": str, "trust": float | None}, ...]}

        problems: every problem found, in file order.
        clipped: boxes partly outside their image that were clipped to it.
        dropped_boxes: boxes left out because they were invalid (``on_invalid="skip"``), not
            counting the boxes of dropped images.
        dropped_images: images left out because their record or file was invalid.
        exif_transposed: kept images whose EXIF orientation turns them by 90 degrees when
            displayed. Every image's size and boxes here are those of the upright view (EXIF
            orientation applied, as detectron2 and bikestate read images): boxes annotated on
            the stored pixels are turned or mirrored with them.
    """

    json_path: str
    images_dir: str
    images: List[dict] = dataclasses.field(default_factory=list)
    problems: List[Problem] = dataclasses.field(default_factory=list)
    clipped: int = 0
    dropped_boxes: int = 0
    dropped_images: int = 0
    exif_transposed: int = 0

    @property
    def num_boxes(self):
        return sum(len(r["parts"]) for r in self.images)


def read_annotation_json(json_path):
    """Read a DelftBikes annotation file and check its top-level shape.

    Returns:
        dict: file name -> record, in file order.

    Raises:
        DataError: the file is missing or unreadable, is not JSON (the message gives line and
            column), is not a JSON object, or names an image twice (the same key twice, or two
            keys for one file such as ``a.jpg`` and ``./a.jpg``) or a part or field twice in one
            record (JSON keeps only the last of repeated keys, so a record would vanish
            silently; a split would put one photo in two splits). These stop everything,
            whatever ``on_invalid`` says, because no record can be trusted.
    """
    if not os.path.isfile(json_path):
        raise DataError(f"{json_path}: annotation file not found")
    try:
        with open(json_path, "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8-sig")  # tolerate a BOM written by Windows editors
    except UnicodeDecodeError as e:
        raise DataError(f"{json_path}: not UTF-8 text (byte {e.start}): not a JSON annotation file")
    except OSError as e:
        raise DataError(f"{json_path}: cannot read the annotation file: {e.strerror or e}")
    try:
        data = json.loads(text, object_pairs_hook=_KeysObject.from_pairs)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{json_path}: unparsable JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        )
    if not isinstance(data, dict):
        raise DataError(
            f"{json_path}: expected a JSON object keyed by image file name, "
            f"found a JSON {_json_type(data)}"
        )
    repeated = _repeated_keys(data)
    if repeated:
        raise DataError(f"{json_path}: {len(repeated)} repeated key"
                        f"{'s' if len(repeated) != 1 else ''}: JSON keeps only the last of them",
                        details=repeated)
    return data


class _KeysObject(dict):
    """A parsed JSON object that remembers the keys it was given more than once."""

    repeated = ()

    @classmethod
    def from_pairs(cls, pairs):
        obj = cls(pairs)
        if len(obj) < len(pairs):
            seen = set()
            obj.repeated = tuple(k for k, _ in pairs if k in seen or seen.add(k))
        return obj


def _repeated_keys(data):
    """Lines naming each image, part and field given twice in an annotation file."""
    lines = [f"{name}: the image has {1 + data.repeated.count(name)} records"
             for name in dict.fromkeys(data.repeated)]
    by_file = {}
    for name in data:
        by_file.setdefault(os.path.normpath(name), []).append(name)
    lines += [f"{' and '.join(names)}: keys of one image file"
              for names in by_file.values() if len(names) > 1]
    for name, record in data.items():
        if not isinstance(record, dict):
            continue
        lines += [f"{name}: field {key!r} given twice" for key in dict.fromkeys(
            getattr(record, "repeated", ()))]
        parts = record.get("parts")
        if isinstance(parts, dict):
            lines += [f"{name}, part {key}: given twice" for key in dict.fromkeys(
                getattr(parts, "repeated", ()))]
            for key, part in parts.items():
                lines += [f"{name}, part {key}: field {field!r} given twice"
                          for field in dict.fromkeys(getattr(part, "repeated", ()))]
    return lines


def parse_part_state(part):
    """Read the state of one part annotation.

    Args:
        part (dict): a DelftBikes part record.

    Returns:
        tuple: ``(state_id, None)`` when the state is valid, ``(None, message)`` otherwise.
        ``object_state`` (the name) is authoritative; ``object_state_class`` must agree with it
        when both are present; either one alone is enough.
    """
    name = part.get("object_state")
    cls = part.get("object_state_class")
    expected = ", ".join(STATE_NAMES)
    if name is None and cls is None:
        return None, "missing state (neither object_state nor object_state_class)"
    state_from_name = None
    if name is not None:
        if not isinstance(name, str) or name not in STATE_IDS:
            return None, f"unknown state {name!r} (expected one of {expected})"
        state_from_name = STATE_IDS[name]
    if cls is not None:
        if not _is_integral(cls) or not 0 <= int(cls) < len(STATE_NAMES):
            return None, (f"object_state_class {cls!r} is not a state id "
                          f"(0..{len(STATE_NAMES) - 1})")
        cls = int(cls)
        if state_from_name is not None and cls != state_from_name:
            return None, (f"object_state_class {cls} ({STATE_NAMES[cls]}) disagrees with "
                          f"object_state {name!r} ({state_from_name})")
        return cls, None
    return state_from_name, None


def load_delftbikes(json_path, images_dir, on_invalid="error", show_progress=False):
    """Read and validate a DelftBikes annotation file against its images.

    Args:
        json_path (str): the annotation JSON.
        images_dir (str): folder the record keys (file names, possibly with sub-folders) are
            relative to.
        on_invalid (str): "error" raises if anything is invalid; "skip" drops the invalid boxes
            and images and keeps the rest. Either way every problem is in ``.problems``.
        show_progress (bool): show a progress bar while the image headers are checked.

    Returns:
        DelftBikesDataset

    Raises:
        DataError: file-level problems (see :func:`read_annotation_json`), a missing images
            folder, or with ``on_invalid="error"`` any problem:
            ``"<json_path>: N problems in annotations"`` with one detail line per problem.
    """
    if on_invalid not in ON_INVALID_CHOICES:
        raise ConfigError(f"on_invalid must be one of {ON_INVALID_CHOICES}, got {on_invalid!r}")
    data = read_annotation_json(json_path)
    if not os.path.isdir(images_dir):
        raise DataError(f"{images_dir}: images folder not found (annotations: {json_path})")

    dataset = DelftBikesDataset(json_path=json_path, images_dir=images_dir)
    kept = []
    for file_name, record in tqdm(data.items(), total=len(data), desc="validating annotations",
                                  unit="img", disable=None if show_progress else True):
        image_problems = []
        result = _validate_record(file_name, record, images_dir, image_problems)
        dataset.problems.extend(image_problems)
        if result is None:
            dataset.dropped_images += 1
            continue
        out, clipped, dropped, transposed = result
        dataset.clipped += clipped
        dataset.dropped_boxes += dropped
        dataset.exif_transposed += int(transposed)
        kept.append(out)

    if dataset.problems and on_invalid == "error":
        n = len(dataset.problems)
        raise DataError(f"{json_path}: {n} problem{'s' if n != 1 else ''} in annotations",
                        details=[str(p) for p in dataset.problems])
    # Sorted by file name so that ids derived from this order do not depend on the file order.
    dataset.images = sorted(kept, key=lambda r: r["file_name"])
    return dataset


# ------------------------------------------------------------------------------------ internals


def _validate_record(file_name, record, images_dir, problems):
    """Validate one image record; append problems; return None when the image must be dropped.

    Returns:
        tuple: (record dict, clipped boxes, dropped boxes, EXIF-transposed flag) or None.
    """
    if not file_name:
        problems.append(Problem("<empty file name>", None, "record has an empty file name"))
        return None
    if not isinstance(record, dict):
        problems.append(Problem(file_name, None, f"record is a JSON {_json_type(record)}, "
                                                 "expected an object with 'parts'"))
        return None
    if "parts" not in record:
        problems.append(Problem(file_name, None, "record has no 'parts'"))
        return None
    parts = record["parts"]
    if isinstance(parts, dict):
        part_items = list(parts.items())
    elif isinstance(parts, list):
        # Tolerated: a list of part records, each naming itself with part_name.
        part_items = [(None, p) for p in parts]
    else:
        problems.append(Problem(file_name, None,
                                f"'parts' is a JSON {_json_type(parts)}, expected an object"))
        return None

    size = _check_image(file_name, record.get("image"), images_dir, problems)
    if size is None:
        return None
    height, width, orientation, on_stored_pixels = size

    out_parts, clipped, dropped = [], 0, 0
    for index, (key, part) in enumerate(part_items):
        part_out, was_clipped = _validate_part(file_name, index, key, part, height, width,
                                               problems)
        if part_out is None:
            dropped += 1
            continue
        clipped += int(was_clipped)
        if on_stored_pixels:
            part_out["bbox"] = upright_box(part_out["bbox"], orientation, width, height)
        out_parts.append(part_out)
    transposed = orientation in _TRANSPOSING_ORIENTATIONS
    if transposed and on_stored_pixels:
        height, width = width, height
    out = {"file_name": file_name, "height": height, "width": width, "parts": out_parts}
    return out, clipped, dropped, transposed


def _check_image(file_name, declared, images_dir, problems):
    """Check the image file and its declared size.

    Returns:
        (height, width, orientation, on_stored_pixels) or None: the size the boxes refer to,
        the EXIF orientation (1..8), and whether the boxes refer to the stored pixels (a
        declared size equal to the stored one, or none) rather than to the upright view (a
        declared size equal to the view an orientation 5..8 turns by 90 degrees).
    """
    path = os.path.join(images_dir, file_name)
    if not os.path.isfile(path):
        problems.append(Problem(file_name, None, f"image file not found: {path}"))
        return None
    try:
        # Image.open reads the header only: the size is the stored (raw) size, before any EXIF
        # orientation; boxes refer to it unless the declared size says otherwise.
        with Image.open(path) as img:
            width, height = img.size
            fmt = img.format
            try:
                orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
            except Exception:  # a broken EXIF block does not make the pixels unreadable
                orientation = 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        problems.append(Problem(file_name, None, f"unreadable image {path}: {_one_line(e)}"))
        return None
    if width <= 0 or height <= 0:
        problems.append(Problem(file_name, None, f"image {path} has zero size ({width}x{height})"))
        return None
    truncation = _truncation(path, fmt)
    if truncation:
        problems.append(Problem(file_name, None, f"unreadable image {path}: {truncation}"))
        return None
    transposed = orientation in _TRANSPOSING_ORIENTATIONS

    if declared is not None:
        if not isinstance(declared, dict):
            problems.append(Problem(file_name, None, f"'image' is a JSON {_json_type(declared)}, "
                                                     "expected an object with height and width"))
            return None
        bad = [k for k in ("height", "width") if k in declared and not _is_integral(declared[k])]
        if bad:
            problems.append(Problem(file_name, None, "declared image " + ", ".join(
                f"{k} {declared[k]!r}" for k in bad) + " is not a whole number"))
            return None
        d_h, d_w = declared.get("height", height), declared.get("width", width)
        if transposed and (int(d_h), int(d_w)) == (width, height) != (height, width):
            # Annotated on the upright view: the boxes are already in it.
            return width, height, orientation, False
        if (int(d_h), int(d_w)) != (height, width):
            problems.append(Problem(
                file_name, None,
                f"declared size {int(d_w)}x{int(d_h)} (width x height) differs from the file's "
                f"{width}x{height}"))
            return None
    return height, width, orientation, True


def _truncation(path, fmt):
    """A cheap check that the file was written to its end; returns a message or "".

    Decoding every image would take minutes on a real dataset; a JPEG or PNG cut short misses
    its end marker, which is read from the last bytes only. JPEG files may carry a few bytes
    after the end marker (camera trailers), so the marker is searched near the end.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail[-32:]:
        return "truncated PNG (no IEND chunk)"
    return ""


def _validate_part(file_name, index, key, part, height, width, problems):
    """Validate one part; append problems; return (part dict or None, clipped flag)."""
    label = key if key else f"part #{index}"
    if not isinstance(part, dict):
        problems.append(Problem(file_name, label, f"part is a JSON {_json_type(part)}, "
                                                  "expected an object"))
        return None, False
    name = part.get("part_name", key)
    if not isinstance(name, str) or not name:
        problems.append(Problem(file_name, label, "part has no name (part_name)"))
        return None, False
    if key is not None and name != key:
        problems.append(Problem(file_name, label,
                                f"part_name {name!r} differs from its key {key!r}"))
        return None, False
    label = name
    ok = True

    state, message = parse_part_state(part)
    if message:
        problems.append(Problem(file_name, label, message))
        ok = False

    trust = part.get("trust")
    if trust is not None and not is_json_number(trust):
        problems.append(Problem(file_name, label, f"trust {trust!r} is not a number"))
        ok = False

    bbox, clipped = _validate_box(file_name, label, part.get("absolute_bounding_box"),
                                  height, width, problems)
    if bbox is None or not ok:
        return None, False
    return {"part_name": name, "bbox": bbox, "state": state, "state_name": STATE_NAMES[state],
            "trust": None if trust is None else float(trust)}, clipped


def _validate_box(file_name, label, box, height, width, problems):
    """Check a DelftBikes box and clip it to the image: return ([x, y, w, h] or None, clipped)."""
    if box is None:
        problems.append(Problem(file_name, label, "missing absolute_bounding_box"))
        return None, False
    if not isinstance(box, dict):
        problems.append(Problem(file_name, label, f"absolute_bounding_box is a JSON "
                                                  f"{_json_type(box)}, expected an object"))
        return None, False
    keys = ("left", "top", "width", "height")
    missing = [k for k in keys if k not in box]
    if missing:
        problems.append(Problem(file_name, label,
                                "box lacks " + ", ".join(missing)))
        return None, False
    bad = [f"{k} {box[k]!r}" for k in keys if not is_json_number(box[k])]
    if bad:
        problems.append(Problem(file_name, label, "non-numeric box value: " + ", ".join(bad)))
        return None, False
    left, top, w, h = (box[k] for k in keys)
    negative = [f"{k} {box[k]}" for k in ("width", "height") if box[k] < 0]
    if negative:
        problems.append(Problem(file_name, label, "negative box " + ", ".join(negative)))
        return None, False
    zero = [f"{k} 0" for k in ("width", "height") if box[k] == 0]
    if zero:
        problems.append(Problem(file_name, label, "zero-size box (" + ", ".join(zero) + ")"))
        return None, False
    x1, y1 = max(left, 0), max(top, 0)
    x2, y2 = min(left + w, width), min(top + h, height)
    if x2 <= x1 or y2 <= y1:
        problems.append(Problem(
            file_name, label,
            f"box wholly outside the {width}x{height} image "
            f"(left {left}, top {top}, width {w}, height {h})"))
        return None, False
    clipped = (x1, y1, x2, y2) != (left, top, left + w, top + h)
    if not clipped:
        return [left, top, w, h], False
    return [x1, y1, x2 - x1, y2 - y1], True


def _is_integral(v):
    return is_json_number(v) and float(v).is_integer()


def _json_type(v):
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "boolean"
    if v is None:
        return "null"
    return "number"


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__
