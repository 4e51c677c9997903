#!/usr/bin/env python
"""Convert DelftBikes annotations (docs/data_formats.md) to COCO JSON with part states.

    tools/convert_to_coco.py --json annotations.json --images images/ --out train_coco.json \
        [--on-invalid error|skip]

Every annotation problem is reported by image and part. With ``--on-invalid error`` (default)
the tool lists them all, exits with status 2 and writes nothing; with ``skip`` it drops the bad
boxes and images, writes the output and ``<out stem>.problems.txt`` next to it. The input file
is never modified and the output appears atomically.
"""
import argparse
import sys


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="DelftBikes annotation JSON (input)")
    parser.add_argument("--images", required=True, help="folder of the images")
    parser.add_argument("--out", required=True, help="COCO JSON to write")
    parser.add_argument("--on-invalid", choices=("error", "skip"), default="error",
                        help="stop on any problem (default) or drop invalid boxes and images")
    parser.add_argument("--categories-from", metavar="COCO_JSON", default=None,
                        help="take the category list from another COCO file (e.g. the train "
                             "file when converting val of a dataset with non-DelftBikes parts)")
    parser.add_argument("--quiet", action="store_true", help="do not print the statistics")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    # Imported after parsing so that --help is instant.
    from bikestate.utils.errors import cli_entry

    @cli_entry
    def run():
        from bikestate.data.coco import convert_to_coco, load_coco_states

        categories = None
        if args.categories_from:
            coco = load_coco_states(args.categories_from)
            categories = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
        convert_to_coco(args.json, args.images, args.out, on_invalid=args.on_invalid,
                        categories=categories, verbose=not args.quiet)
        return 0

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
