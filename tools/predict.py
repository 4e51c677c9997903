#!/usr/bin/env python
"""Inspect bikes in photos: find the parts, say what state each is in, draw and report it.

    tools/predict.py --config-file configs/bike_small_cpu.yaml --input photos/ more/*.jpg \
        --output inspection/ [--confidence-threshold 0.5] [--batch-size 2] [--recursive] \
        MODEL.WEIGHTS output/model_best.pth [KEY VALUE ...]

Inputs are image files, folders (their images, not sub-folders unless --recursive) and glob
patterns (quote them; ``**`` descends folders). Files without an image extension are skipped
with a warning; an image that cannot be decoded is listed under ``errors`` in predictions.json
and report.json, reported on stderr, and the run goes on. Photos are read upright (EXIF
orientation applied), grayscale and RGBA ones as RGB, and resized to the config's test size;
boxes are given in the pixels of the upright original photo.

Writes, each file atomically:
  OUTPUT/vis/<image name>.jpg   the photo with each part's box coloured by its state;
  OUTPUT/predictions.json       every detection (file_name, part, category_id, bbox [x, y, w, h],
                                score, state, state_scores of the four states);
  OUTPUT/report.json, .csv      the inspection report: per image and part a verdict (intact,
                                damaged, absent, occluded, not_found), its confidence and box,
                                and per image the parts that need attention.

An output folder used before is reused: its files are replaced, pictures of photos not in
this run stay. Exit status: 0 when the run finished (even if some images were unreadable), 2 for bad input
(no images found, bad config or option, output folder not writable, missing weights).
"""
import argparse
import logging
import os
import re
import sys

PROGRESS_MIN_IMAGES = 2  # a progress bar for anything longer than a couple of images


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. MODEL.WEIGHTS model.pth "
               "MODEL.DEVICE cpu INPUT.MIN_SIZE_TEST 480.",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image files, folders or glob patterns")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for vis/, predictions.json and report.json/.csv")
    parser.add_argument("--confidence-threshold", type=float, default=None, metavar="T",
                        help="minimum detection score kept, drawn and used by the report "
                             "(default: the score_thresh of thresholds.json beside the weights, "
                             "else the config's TEST.BIKESTATE.VERIFY_SCORE_THRESH); to "
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
    from detectron2.config import get_cfg

    from bikestate.config import add_bikestate_config, merge_config_file
    from bikestate.utils.errors import ConfigError
    from bikestate.verdict import load_operating_point

    if len(args.opts) % 2:
        raise ConfigError(f"config overrides come in KEY VALUE pairs; got {' '.join(args.opts)}")
    cfg = get_cfg()
    add_bikestate_config(cfg)
    merge_config_file(cfg, args.config_file)
    try:
        cfg.merge_from_list(args.opts)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise ConfigError(f"{args.config_file}: {' '.join(str(e).split())}") from e
    if args.confidence_threshold is not None and not 0.0 <= args.confidence_threshold <= 1.0:
        raise ConfigError(f"the confidence threshold must be in [0, 1], got "
                          f"{args.confidence_threshold}")
    point = load_operating_point(cfg.TEST.BIKESTATE.THRESHOLDS_FILE, cfg.MODEL.WEIGHTS,
                                 default_score_thresh=cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH,
                                 score_thresh=args.confidence_threshold)
    # The detector itself drops boxes below the threshold, as detectron2's demo does.
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = point.score_thresh
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = point.score_thresh
    import torch

    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("predict").warning(
            "MODEL.DEVICE is %s but there is no CUDA GPU: running on the CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg, point


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


def predict(args):
    import cv2
    from tqdm import tqdm

    import bikestate  # noqa: F401  registers the model parts
    from bikestate.inference import (
        IMAGE_EXTENSIONS,
        BikeStatePredictor,
        UnreadableImageError,
        build_report,
        draw_predictions,
        find_images,
        instances_to_records,
        read_image,
        write_reports,
    )
    from bikestate.utils.errors import ConfigError, DataError
    from bikestate.utils.io import atomic_write_bytes, atomic_write_json

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")

    def warn(message):
        tqdm.write(f"predict.py: warning: {message}", file=sys.stderr)

    images, skipped, missing = find_images(args.input, recursive=args.recursive)
    for path in missing:
        warn(f"{path}: no such file, folder or matching file")
    for path in skipped:
        warn(f"{path}: skipped, not an image ({', '.join(IMAGE_EXTENSIONS)})")
    if not images:
        raise DataError(f"no images found in {' '.join(args.input)}")

    cfg, point = setup_cfg(args)
    threshold = point.score_thresh
    # Model and weights before the output folder: a bad weights file leaves nothing behind.
    predictor = BikeStatePredictor(cfg, operating_point=point)
    prepare_output(args.output)
    names = vis_names(images)

    detections, reports, errors, image_infos = [], [], [], []
    bar = tqdm(total=len(images), unit="img", desc="predict", file=sys.stderr,
               disable=len(images) < PROGRESS_MIN_IMAGES)
    for start in range(0, len(images), args.batch_size):
        batch = []
        for path in images[start:start + args.batch_size]:
            try:
                batch.append((path, read_image(path, format="BGR")))
            except UnreadableImageError as e:
                errors.append({"file_name": path, "error": str(e)})
                tqdm.write(f"predict.py: error: {e} (skipped)", file=sys.stderr)
                bar.update(1)
        if not batch:
            continue
        outputs = predictor.predict_batch([image for _, image in batch],
                                          batch_size=args.batch_size)
        for (path, image_bgr), instances in zip(batch, outputs):
            detections.extend(instances_to_records(path, instances, predictor.part_names))
            reports.append(build_report(path, instances, predictor.part_names, point))
            info = {"file_name": path, "height": image_bgr.shape[0],
                    "width": image_bgr.shape[1], "num_detections": len(instances)}
            if not args.no_vis:
                picture = draw_predictions(image_bgr[:, :, ::-1], instances,
                                           predictor.part_names, score_thresh=threshold)
                ok, encoded = cv2.imencode(".jpg", picture[:, :, ::-1],
                                           [cv2.IMWRITE_JPEG_QUALITY, 92])
                if not ok:
                    raise OSError(f"cannot encode the picture of {path} as JPEG")
                info["vis"] = os.path.join("vis", names[path])
                atomic_write_bytes(encoded.tobytes(), os.path.join(args.output, info["vis"]))
            image_infos.append(info)
            bar.update(1)
    bar.close()

    run_info = {"config_file": args.config_file, "weights": cfg.MODEL.WEIGHTS,
                "part_names": list(predictor.part_names)}
    atomic_write_json({**run_info, "score_threshold": threshold, "images": image_infos,
                       "detections": detections, "errors": errors},
                      os.path.join(args.output, "predictions.json"), indent=1)
    write_reports(reports, args.output, errors=errors, operating_point=point, extra=run_info)

    attention = sum(bool(r["attention"]) for r in reports)
    print(f"Inspected {len(reports)} image(s): {attention} with damaged or absent parts"
          + (f", {len(errors)} unreadable (see errors in report.json)" if errors else "") + ".")
    if not args.no_vis:
        print(f"Pictures:    {os.path.join(args.output, 'vis')}")
    print(f"Report:      {os.path.join(args.output, 'report.csv')} (and report.json)")
    print(f"Detections:  {os.path.join(args.output, 'predictions.json')}")
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])
