#!/usr/bin/env python
"""Split a DelftBikes annotation file into train / val / test, stratified on part states.

    tools/split_dataset.py --json annotations.json --out DIR \
        [--val-fraction 0.1] [--test-fraction 0.1] [--seed 42]

Writes DIR/train.json, DIR/val.json and DIR/test.json in the input format (records unchanged)
and prints each split's state shares. The three files appear together or not at all; the input
is never modified.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="DelftBikes annotation JSON (input)")
    parser.add_argument("--out", required=True, help="folder for train.json, val.json, test.json")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of images in val")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="share of images in test (0: no test images, test.json is {})")
    parser.add_argument("--seed", type=int, default=42, help="the same seed gives the same split")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def write_all_or_nothing(objects, folder):
    """Write ``{file name: JSON object}`` into ``folder``: all files appear, or none of them.

    Each file is written to a temporary sibling first; only when all are complete are they
    renamed into place. If a rename fails, the files already renamed are removed again.
    """
    staged, placed = {}, []
    # mkstemp creates files readable by the owner only; give them the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    try:
        for name, obj in objects.items():
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            staged[name] = tmp
            os.chmod(tmp, 0o666 & ~umask)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(obj, f)
                f.flush()
                os.fsync(f.fileno())
        for name, tmp in staged.items():
            target = os.path.join(folder, name)
            os.replace(tmp, target)
            placed.append(target)
    except BaseException:
        for path in list(staged.values()) + placed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        raise


def main(argv=None):
    args = get_parser().parse_args(argv)
    from bikestate.utils.errors import cli_entry

    @cli_entry
    def run():
        from tabulate import tabulate

        from bikestate.data.delftbikes import read_annotation_json
        from bikestate.data.split import SPLIT_NAMES, state_shares, stratified_split
        from bikestate.utils.errors import ConfigError, DataError

        annotations = read_annotation_json(args.json)
        if not annotations:
            raise DataError(f"{args.json}: no images in annotations")
        outputs = {f"{name}.json": os.path.join(args.out, f"{name}.json") for name in SPLIT_NAMES}
        for path in outputs.values():
            if os.path.exists(path) and os.path.samefile(path, args.json):
                raise ConfigError(f"{path}: the output would overwrite the input annotations")
        try:
            splits = stratified_split(annotations, args.val_fraction, args.test_fraction,
                                      args.seed)
        except DataError as e:
            raise DataError(f"{args.json}: {e}", details=e.details)
        for name, fraction in (("val", args.val_fraction), ("test", args.test_fraction)):
            if fraction > 0 and not splits[name]:
                raise DataError(f"{args.json}: {len(annotations)} images are too few for a "
                                f"{name} fraction of {fraction}: the {name} split would be empty")

        try:
            os.makedirs(args.out, exist_ok=True)
            write_all_or_nothing({f"{n}.json": splits[n] for n in SPLIT_NAMES}, args.out)
        except OSError as e:
            raise ConfigError(f"{args.out}: cannot write the splits: {e.strerror or e}")

        _, whole = state_shares(annotations)
        rows = []
        for name, subset in list(splits.items()) + [("all", annotations)]:
            boxes, shares = state_shares(subset)
            rows.append([name, len(subset), boxes]
                        + [f"{100 * shares.get(s, 0.0):.2f}" for s in whole])
        print(tabulate(rows, headers=["split", "images", "boxes"] + [f"% {s}" for s in whole],
                       tablefmt="github"))
        worst = max(abs(state_shares(s)[1][k] - whole[k]) for s in splits.values() if s
                    for k in whole)
        print(f"largest state-share difference from the whole: {100 * worst:.2f} points")
        print(f"wrote {', '.join(outputs.values())}")
        return 0

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
