#!/usr/bin/env python
"""Export a trained bikestate model to ONNX or TorchScript, for runtimes without detectron2.

    tools/export_model.py --config-file configs/bike_small_cpu.yaml --format onnx \
        --output export/ [--opset 17] [--sample-image bike.jpg] [--no-check] \
        MODEL.WEIGHTS output/model_best.pth [KEY VALUE ...]

Writes into OUTPUT the whole model (parts, boxes, scores, states and state probabilities) as
model.onnx (``--format onnx``) or model.ts (``--format torchscript``), traced on one image and
valid for any image size, and model.json beside it: part and state names, the input format,
pixel mean and std, the test resize, the score threshold the graph applies
(that of the thresholds.json beside the weights, else MODEL.ROI_HEADS.SCORE_THRESH_TEST; a
SCORE_THRESH_TEST given on the command line wins) and the verdict rule (the thresholds.json beside the
weights when there is one). The graph is traced on --sample-image (default: a SynthBikes
picture) and checked on a picture of another shape against the PyTorch model before it is
written (--no-check skips that).

Run an export with ``tools/predict.py --backend onnxruntime --export OUTPUT`` or, in Python,
``bikestate.deploy.OnnxBikeStatePredictor(OUTPUT)`` (onnxruntime only: no torch, no
detectron2).

Exit status: 0 exported (and checked); 2 bad input (config, weights, options, image, output
folder); 1 the export failed or disagrees with the model. Nothing is written unless it
succeeds; an earlier export in OUTPUT is replaced only then.
"""
import argparse
import logging
import os
import sys


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. MODEL.WEIGHTS model.pth "
               "MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.05.",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                        help="graph format (default: onnx)")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for the graph and model.json")
    parser.add_argument("--opset", type=int, default=None, metavar="N",
                        help="ONNX opset, at least 16 (default: 17)")
    parser.add_argument("--sample-image", default=None, metavar="FILE",
                        help="image to trace the model on (default: a SynthBikes picture)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip running the export against the PyTorch model")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides")
    return parser


def export(args):
    import bikestate  # noqa: F401  before detectron2: registers the model parts
    from bikestate.config import get_user_config
    from bikestate.deploy.exporter import (
        DEFAULT_OPSET,
        build_export_model,
        export_model,
        sample_image,
    )
    from bikestate.inference.images import read_image
    from bikestate.utils.errors import ConfigError, DataError

    if len(args.opts) % 2:
        raise ConfigError(f"config overrides come in KEY VALUE pairs; got {' '.join(args.opts)}")
    if args.opset is not None and args.format != "onnx":
        raise ConfigError("--opset applies to --format onnx only")
    cfg = get_user_config(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cpu"
    if "MODEL.ROI_HEADS.SCORE_THRESH_TEST" not in args.opts[::2]:
        # The graph keeps what tools/predict.py's model keeps: the boxes the evaluation saw
        # (the config's threshold), or more when the thresholds.json beside the weights has a
        # lower score threshold; the verdict rule applies that threshold after the graph.
        from bikestate.verdict import load_operating_point

        point = load_operating_point(cfg.TEST.BIKESTATE.THRESHOLDS_FILE, cfg.MODEL.WEIGHTS,
                                     default_score_thresh=cfg.TEST.BIKESTATE.VERIFY_SCORE_THRESH)
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
                                                    point.score_thresh)
    cfg.freeze()
    example = None
    if args.sample_image:
        try:
            example = read_image(args.sample_image, format="BGR")
        except OSError as e:
            raise DataError(str(e)) from e

    from tqdm import tqdm

    steps = ["building the model", f"tracing to {args.format}, checking against PyTorch"
             if not args.no_check else f"tracing to {args.format}"]
    bar = tqdm(total=len(steps), desc="export", unit="step", file=sys.stderr,
               bar_format="{desc}: {n}/{total} steps |{bar}|{postfix}")
    try:
        bar.set_postfix_str(steps[0])
        model = build_export_model(cfg)
        bar.update(1)
        bar.set_postfix_str(steps[1])
        # Checked on another shape than the tracing example: the graph must not depend on it.
        image = None if args.no_check else sample_image(cfg, seed=1, portrait=True)
        info = export_model(cfg, args.output, args.format,
                            opset=args.opset if args.opset is not None else DEFAULT_OPSET,
                            example_bgr=example, config_file=args.config_file, model=model,
                            check_bgr=image)
        bar.update(1)
    finally:
        bar.close()
    print(f"Wrote {os.path.join(args.output, info['graph'])} and "
          f"{os.path.join(args.output, 'model.json')} "
          f"({os.path.getsize(os.path.join(args.output, info['graph'])) / 2 ** 20:.1f} MiB)")
    if info["check"]:
        result = info["check"]
        print(f"Checked on a {image.shape[1]}x{image.shape[0]} image against PyTorch: "
              f"{result['detections']} detections, boxes within {result['max_box_diff']:.2g} "
              f"px, probabilities within {result['max_prob_diff']:.2g}")
    return 0


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING,
                        format="export_model.py: %(levelname)s: %(message)s")

    # Imported after parsing so that --help is instant.
    from bikestate.utils.errors import cli_entry

    @cli_entry
    def run():
        return export(args)

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
