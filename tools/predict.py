#!/usr/bin/env python
"""Inspect bikes in photos: find the parts, say what state each is in, draw and report it.

    tools/predict.py --config-file configs/bike_small_cpu.yaml --input photos/ more/*.jpg \
        --output inspection/ [--confidence-threshold 0.5] [--batch-size 2] [--recursive] \
        MODEL.WEIGHTS output/model_best.pth [KEY VALUE ...]
    # the same with a model exported by tools/export_model.py, without detectron2
    tools/predict.py --backend onnxruntime --export export/ --input photos/ \
        --output inspection/

``--backend pytorch`` (default) runs the config's model with detectron2; ``--backend
onnxruntime`` runs the ONNX export in ``--export`` with onnxruntime (it needs neither torch nor
detectron2, except for drawing the pictures: add --no-vis where detectron2 is not installed).
Both give the same detections and reports.

Inputs are image files, folders (their images, not sub-folders unless --recursive) and glob
patterns (quote them; ``**`` descends folders). Files without an image extension are skipped
with a warning. Photos are read upright (EXIF orientation applied), in any size from 1x1 to
Pillow's pixel limit and any aspect ratio, any colour mode as RGB, animated GIF/WebP/PNG as
their first frame and multi-page TIFF as its first page (said in the image's ``notes``), and
resized to the config's test size; boxes are given in the pixels of the upright original photo.

One photo costs only itself: a photo that cannot be decoded, or on which the model, the report
or the drawing fails, is listed under ``errors`` in predictions.json and report.json (one line
naming the file), reported on stderr, and the run goes on.

Writes, each file atomically:
  OUTPUT/vis/<image name>.jpg   the photo with each part's box coloured by its state;
  OUTPUT/predictions.json       every detection (file_name, part, category_id, bbox [x, y, w, h],
                                score, state, state_scores of the four states);
  OUTPUT/report.json, .csv      the inspection report: per image and part a verdict (intact,
                                damaged, absent, occluded, not_found), its confidence and box,
                                and per image the parts that need attention.

Results are never lost: the three files are rewritten with what is done every 30 seconds or
so, and when the run ends, however it ends (finished, Ctrl-C, SIGTERM, an unexpected error),
with exactly the images inspected; their ``status`` says which ("running", "finished",
"interrupted", "stopped by an error"). An output folder used before is reused: its files are
replaced, pictures of photos not in this run stay.

Exit status: 0 every image inspected; 1 some images unreadable or failed (see ``errors``; all
the others are written), or an unexpected error stopped the run (what was done is written);
2 bad input, nothing written (no images found, bad config or option, output folder not
writable, missing weights); 130 / 143 interrupted by Ctrl-C / SIGTERM after writing the results
so far.
"""
import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback

PROGRESS_MIN_IMAGES = 2  # a progress bar for anything longer than a couple of images
CHECKPOINT_SECONDS = 30  # the result files are rewritten at least this often during a run


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. MODEL.WEIGHTS model.pth "
               "MODEL.DEVICE cpu INPUT.MIN_SIZE_TEST 480.",
    )
    parser.add_argument("--backend", choices=("pytorch", "onnxruntime"), default="pytorch",
                        help="pytorch: the config's model (default); onnxruntime: the ONNX "
                             "export in --export")
    parser.add_argument("--config-file", metavar="FILE",
                        help="model config (--backend pytorch)")
    parser.add_argument("--export", metavar="DIR",
                        help="folder written by tools/export_model.py --format onnx "
                             "(--backend onnxruntime)")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image files, folders or glob patterns")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for vis/, predictions.json and report.json/.csv")
    parser.add_argument("--confidence-threshold", type=float, default=None, metavar="T",
                        help="minimum detection score kept, drawn and used by the report "
                             "(default: the score_thresh of thresholds.json beside the weights, "
                             "else the config's TEST.BIKESTATE.VERIFY_SCORE_THRESH; with "
                             "onnxruntime: the one in the export's model.json); to "
                             "compute COCO AP from predictions.json use a low one, e.g. 0.05")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="images per forward pass (more helps on a GPU; default 1)")
    parser.add_argument("--recursive", action="store_true",
                        help="also take images from sub-folders of the given folders")
    parser.add_argument("--no-vis", action="store_true", help="do not draw vis/ pictures")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides")
    return parser


# A config key as given on the command line: MODEL.WEIGHTS, INPUT.MIN_SIZE_TEST, ...
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def split_trailing_opts(args):
    """Move config overrides that ``--input PATH...`` swallowed back into ``args.opts``.

    ``--output out --input a.jpg MODEL.WEIGHTS m.pth`` parses MODEL.WEIGHTS and m.pth as two
    more inputs; silently predicting with random weights would be the result. The first input
    that looks like a config key (and is not a file) starts the overrides.
    """
    for i, item in enumerate(args.input):
        if _CONFIG_KEY.match(item) and not os.path.exists(item):
            args.opts = args.input[i:] + list(args.opts)
            args.input = args.input[:i]
            break
    return args


def setup_cfg(args):
    """The frozen config (file + overrides, a usable device) and the verdict rule's operating
    point (thresholds.json beside the weights, else the default; ``--confidence-threshold``
    overrides its score threshold)."""
    from bikestate.inference import predictor_config

    return predictor_config(args.config_file, args.opts, score_thresh=args.confidence_threshold)


def build_predictor(args):
    """The predictor of ``--backend``, its verdict rule, and what the result files say about
    the model."""
    from bikestate.utils.errors import ConfigError

    if args.backend == "onnxruntime":
        if args.export is None:
            raise ConfigError("--backend onnxruntime needs --export DIR (a folder written by "
                              "tools/export_model.py)")
        if args.config_file or args.opts:
            raise ConfigError("--config-file and config overrides apply to --backend pytorch; "
                              "an export carries its config (give --export only)")
        if args.confidence_threshold is not None and not 0.0 <= args.confidence_threshold <= 1:
            raise ConfigError(f"the confidence threshold must be in [0, 1], got "
                              f"{args.confidence_threshold}")
        from bikestate.deploy import ModelInfo, OnnxBikeStatePredictor

        info = ModelInfo.load(args.export)
        threshold = args.confidence_threshold
        predictor = OnnxBikeStatePredictor(
            args.export, threshold if threshold is not None
            else info.operating_point.score_thresh)
        return predictor, predictor.operating_point, {
            "backend": args.backend, "export": args.export,
            "weights": info.data.get("exported_from", {}).get("weights")}
    if args.config_file is None:
        raise ConfigError("--backend pytorch needs --config-file FILE")
    if args.export is not None:
        raise ConfigError("--export applies to --backend onnxruntime")
    from bikestate.inference import BikeStatePredictor

    cfg, point = setup_cfg(args)
    predictor = BikeStatePredictor(cfg, operating_point=point)
    return predictor, point, {"backend": args.backend, "config_file": args.config_file,
                              "weights": cfg.MODEL.WEIGHTS}


def prepare_output(out_dir):
    """Create ``out_dir`` and ``out_dir/vis`` or fail with one line if it is not writable."""
    from bikestate.utils.errors import BikeStateError

    try:
        os.makedirs(os.path.join(out_dir, "vis"), exist_ok=True)
    except OSError as e:
        raise BikeStateError(f"cannot create output folder {out_dir} "
                             f"({e.strerror or e})") from e
    for folder in (out_dir, os.path.join(out_dir, "vis")):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BikeStateError(f"output folder {folder} is not writable")


def vis_names(image_paths):
    """``vis/`` file name of each image: its stem + .jpg, disambiguated when stems collide.

    ``a/bike.jpg`` and ``b/bike.png`` would both be ``bike.jpg``; the second becomes
    ``bike_png.jpg`` (then ``bike_png_2.jpg``...), so no picture overwrites another.
    """
    names, used = {}, set()
    for path in image_paths:
        stem, ext = os.path.splitext(os.path.basename(path))
        candidate = f"{stem}.jpg"
        if candidate in used:
            candidate = f"{stem}_{ext.lstrip('.').lower()}.jpg"
            n = 2
            while candidate in used:
                candidate = f"{stem}_{ext.lstrip('.').lower()}_{n}.jpg"
                n += 1
        used.add(candidate)
        names[path] = candidate
    return names


def main(argv=None):
    args = split_trailing_opts(get_parser().parse_args(argv))
    logging.basicConfig(level=logging.WARNING, format="predict.py: %(levelname)s: %(message)s")

    # Imported after parsing so that --help is instant.
    from bikestate.utils.errors import cli_entry

    @cli_entry
    def run():
        return predict(args)

    run()


class Stop(BaseException):
    """SIGINT or SIGTERM, raised in the main thread: stop, after writing what is done."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Within ``with``, the first SIGINT or SIGTERM raises :class:`Stop`; later ones are ignored.

    Inside :meth:`hold` the signal waits until its end, so that an image's picture and its
    entry in the results are kept together or not at all. After :meth:`ignore` (the run is
    ending, the results are being written) signals change nothing: a second Ctrl-C does not
    cut the final write short.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.pending = None  # a signal that came while held
        self.holding = False
        self.ignoring = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        if self.holding or self.ignoring:
            self.pending = self.pending or signum
        else:
            self._stop(signum)

    def _stop(self, signum):
        self.ignoring = True  # one Stop is enough
        raise Stop(signum)

    def ignore(self):
        self.ignoring = True

    @contextlib.contextmanager
    def hold(self):
        """Hold signals back; at the end, raise :class:`Stop` for one that came meanwhile."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending and not self.ignoring:
            self._stop(self.pending)


def predict(args):
    from tqdm import tqdm

    import bikestate  # noqa: F401  first: quiets library deprecation notices
    from bikestate.inference import IMAGE_EXTENSIONS, find_images, inspect_images
    from bikestate.inference.report import report_files
    from bikestate.utils.errors import ConfigError, DataError
    from bikestate.utils.io import atomic_write_bytes, atomic_write_texts

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")

    def warn(message, level="warning"):
        tqdm.write(f"predict.py: {level}: {message}", file=sys.stderr)

    images, skipped, missing = find_images(args.input, recursive=args.recursive)
    for path in missing:
        warn(f"{path}: no such file, folder or matching file")
    for path in skipped:
        warn(f"{path}: skipped, not an image ({', '.join(IMAGE_EXTENSIONS)})")
    if not images:
        raise DataError(f"no images found in {' '.join(args.input)}")

    if not args.no_vis:
        try:
            import bikestate.inference.visualizer  # noqa: F401  detectron2 draws the pictures
        except ImportError as e:
            raise ConfigError(f"drawing the pictures needs detectron2 ({e}); add --no-vis") from e
    # Model and weights before the output folder: a bad weights file leaves nothing behind.
    predictor, point, run_info = build_predictor(args)
    threshold = point.score_thresh
    prepare_output(args.output)
    names = vis_names(images)

    detections, reports, errors, image_infos = [], [], [], []
    run_info.update({"part_names": list(predictor.part_names), "images_found": len(images)})

    def write_results(status):
        """predictions.json, report.json and report.csv, renamed into place together."""
        info = {**run_info, "status": status}
        predictions = {**info, "score_threshold": threshold, "images": image_infos,
                       "detections": detections, "errors": errors}
        atomic_write_texts({
            os.path.join(args.output, "predictions.json"): json.dumps(predictions, indent=1),
            **report_files(reports, args.output, errors=errors, operating_point=point,
                           extra=info)})

    def keep(result):
        """Add one image's result to the files' content (and write its picture)."""
        if result.error:
            errors.append({"file_name": result.file_name, "stage": result.stage,
                           "error": result.error})
            warn(result.error + (" (skipped)" if result.report is None else ""), "error")
            if args.debug and result.exception is not None:
                traceback.print_exception(result.exception, file=sys.stderr)
        for note in result.notes:
            warn(f"{result.file_name}: {note}")
        if result.report is None:
            return
        info = {"file_name": result.file_name, "height": result.height, "width": result.width,
                "num_detections": len(result.detections)}
        if result.notes:
            info["notes"] = result.notes
        if result.picture is not None:
            info["vis"] = os.path.join("vis", names[result.file_name])
            atomic_write_bytes(result.picture, os.path.join(args.output, info["vis"]))
        detections.extend(result.detections)
        reports.append(result.report)
        image_infos.append(info)

    bar = tqdm(total=len(images), unit="img", desc="predict", file=sys.stderr,
               disable=len(images) < PROGRESS_MIN_IMAGES)
    status = "stopped by an error"  # what the files say if an exception ends the loop
    done, last_write = 0, time.monotonic()
    with StopSignals() as signals:
        try:
            for result in inspect_images(predictor, images, operating_point=point,
                                         batch_size=args.batch_size, draw=not args.no_vis):
                with signals.hold():
                    keep(result)
                done += 1
                bar.update(1)
                if time.monotonic() - last_write > CHECKPOINT_SECONDS:
                    with signals.hold():
                        write_results("running")
                    last_write = time.monotonic()
            status, code = "finished", 1 if errors else 0
        except Stop as stop:
            status, code = "interrupted", 128 + stop.signum
            warn(f"interrupted by {stop} after {done} of {len(images)} images; writing the "
                 f"results so far", "error")
        finally:
            bar.close()
            signals.ignore()
            if done or status != "stopped by an error":  # an error on the first batch, e.g.
                write_results(status)  # a model without a state head, leaves no result files

    attention = sum(bool(r["attention"]) for r in reports)
    unreadable = sum(e["stage"] == "read" for e in errors)
    failed = len(errors) - unreadable
    print(f"Inspected {len(reports)} image(s): {attention} with damaged or absent parts"
          + (f", {unreadable} unreadable" if unreadable else "")
          + (f", {failed} failed" if failed else "")
          + (" (see errors in report.json)" if errors else "") + ".")
    if not args.no_vis:
        print(f"Pictures:    {os.path.join(args.output, 'vis')}")
    print(f"Report:      {os.path.join(args.output, 'report.csv')} (and report.json)")
    print(f"Detections:  {os.path.join(args.output, 'predictions.json')}")
    return code


if __name__ == "__main__":
    main(sys.argv[1:])
