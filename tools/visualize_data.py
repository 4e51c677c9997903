#!/usr/bin/env python
"""Draw the ground truth of a bike dataset: every part box labelled "part · state".

    tools/visualize_data.py [--config-file configs/bike_small_cpu.yaml] --dataset bike_train \
        --output DIR [--num N] [--source annotation|dataloader] [--min-size PX] [--max-size PX] \
        [KEY VALUE ...]

The pictures are drawn as ``tools/predict.py`` draws predictions
(:func:`bikestate.inference.visualizer.draw_ground_truth`): boxes coloured by state (green
intact, red damaged, orange absent, blue occluded), damaged and absent parts on top, labels
placed so as not to cover each other, the legend in a strip below the photo. Each photo is
drawn with its longest side between ``--min-size`` (smaller photos are enlarged pixel for pixel:
at 640x480 the labels of 22 parts cover each other) and ``--max-size``. The data comes from the
same place training takes it from: config file, then environment / ``.env`` (TRAIN_JSON,
VAL_JSON, ...), then the trailing ``KEY VALUE`` config options; with nothing set, SynthBikes.
``--source dataloader`` shows the images after the training augmentations (crop, resize, flip,
colour jitter) instead of the files as annotated. One ``DIR/<image name>.jpg`` per image, each
written atomically.
"""
import argparse
import os
import sys


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="config file (default: the built-in defaults, i.e. SynthBikes)")
    parser.add_argument("--dataset", default="bike_train",
                        help="registered dataset: bike_train, bike_val or bike_test")
    parser.add_argument("--output", required=True, help="folder for the drawn images")
    parser.add_argument("--num", type=int, default=20,
                        help="number of images to draw, in dataset order (0: all)")
    parser.add_argument("--min-size", type=int, default=1280, metavar="PX",
                        help="longest side of a drawing at least: smaller images are enlarged "
                             "pixel for pixel, so that the labels of 22 parts find room "
                             "(default: 1280)")
    parser.add_argument("--max-size", type=int, default=None, metavar="PX",
                        help="longest side of a drawing at most: larger images are shrunk "
                             "(default: as the pictures of tools/predict.py, 1600)")
    parser.add_argument("--source", choices=("annotation", "dataloader"), default="annotation",
                        help="draw the files as annotated, or after the training augmentations")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config options as KEY VALUE pairs, applied last")
    return parser


def setup_cfg(args):
    """Config in the users' precedence: options > env / .env > config file > defaults."""
    from bikestate.config import get_user_config

    cfg = get_user_config(args.config_file, args.opts)
    cfg.freeze()
    return cfg


def main(argv=None):
    args = get_parser().parse_args(argv)
    from bikestate.utils.errors import cli_entry

    @cli_entry
    def run():
        import io

        import numpy as np
        from PIL import Image
        from tqdm import tqdm

        from detectron2.data import DatasetCatalog, MetadataCatalog
        from detectron2.data import detection_utils as utils
        from detectron2.structures import BoxMode

        from bikestate.data import BikeStateDatasetMapper, register_bike_datasets
        from bikestate.inference.visualizer import DEFAULT_MAX_SIZE, draw_ground_truth
        from bikestate.utils.errors import ConfigError, DataError
        from bikestate.utils.images import UnreadableImageError, read_image
        from bikestate.utils.io import atomic_write_bytes

        max_size = DEFAULT_MAX_SIZE if args.max_size is None else args.max_size
        if not 1 <= args.min_size <= max_size:
            raise ConfigError(f"--min-size {args.min_size} and --max-size {max_size}: the "
                              "sizes must be positive with --min-size not above --max-size")
        cfg = setup_cfg(args)
        registered = register_bike_datasets(cfg)
        if args.dataset not in DatasetCatalog.list():
            raise ConfigError(f"unknown dataset '{args.dataset}'; registered: "
                              + ", ".join(sorted(registered)))
        metadata = MetadataCatalog.get(args.dataset)
        dicts = DatasetCatalog.get(args.dataset)
        if args.num > 0:
            dicts = dicts[: args.num]
        mapper = BikeStateDatasetMapper(cfg, is_train=True) if args.source == "dataloader" \
            else None
        existing = os.path.abspath(args.output)  # fail before drawing if it cannot be made
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ConfigError(f"--output {args.output}: cannot create it, {existing} is not a "
                              "folder")

        for d in tqdm(dicts, desc=f"drawing {args.dataset}", unit="img"):
            try:
                if mapper is None:
                    image = read_image(d["file_name"], format="RGB")
                else:
                    out = mapper(d)
            except UnreadableImageError as e:  # its message names the file
                raise DataError(f"{e} in dataset {args.dataset} ({metadata.json_file})") from e
            if mapper is None:
                annos = d.get("annotations", [])
                boxes = np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                                  for a in annos], dtype=np.float32).reshape(-1, 4)
                classes = [a["category_id"] for a in annos]
                states = [a["state"] for a in annos]
            else:
                image = utils.convert_image_to_rgb(out["image"].permute(1, 2, 0).numpy(),
                                                   cfg.INPUT.FORMAT)
                inst = out["instances"]
                boxes = inst.gt_boxes.tensor.numpy()
                classes, states = inst.gt_classes.tolist(), inst.gt_states.tolist()
            drawing = draw_ground_truth(image, boxes, classes, states, metadata.thing_classes,
                                        min_size=args.min_size, max_size=max_size)
            buffer = io.BytesIO()
            Image.fromarray(drawing).save(buffer, format="JPEG", quality=92)
            stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
            try:  # created with the first picture: a run that draws nothing leaves nothing
                os.makedirs(args.output, exist_ok=True)
                atomic_write_bytes(buffer.getvalue(), os.path.join(args.output, stem + ".jpg"))
            except OSError as e:
                raise ConfigError(f"--output {args.output}: cannot write the drawings "
                                  f"({e.strerror or e})") from e
        print(f"{len(dicts)} images drawn into {args.output}")
        return 0

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
