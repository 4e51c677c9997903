#!/usr/bin/env python
"""Generate a SynthBikes dataset: procedural bike pictures in the DelftBikes annotation format.

    tools/make_synthetic.py --out DIR --num-images N --seed S [--image-size 640x480] \
        [--state-probs 0.6,0.06,0.2,0.14] [--style v1|v2]
    tools/make_synthetic.py --gallery docs/synthbikes_v2.png --style v2 [--seed 0]

Writes ``DIR/images/synth_s{S}_{i:06d}.jpg`` (``synth_v2_s...`` for ``--style v2``) and
``DIR/annotations.json`` (written last, atomically).
The same seed gives byte-identical annotations and identical pixels; different seeds give
different file names, so several seeds can share one folder. ``--state-probs`` are the shares
of intact, damaged, absent and occluded parts. ``--style v1`` draws flat side-view city bikes
(the pictures of earlier releases), ``v2`` photo-like pictures.

``--gallery PNG`` draws 24 samples (``--num-images`` to change it) with their ground-truth
boxes coloured by state into one picture instead of writing a dataset.
"""
import argparse
import os
import sys


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="output folder (created if needed)")
    parser.add_argument("--num-images", help="number of images, > 0 (gallery: 24)")
    parser.add_argument("--seed", help="non-negative integer seed (gallery: 0)")
    parser.add_argument("--image-size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--state-probs", default=None,
                        help="shares of intact,damaged,absent,occluded parts, 4 numbers summing "
                             "to 1 (default: the DelftBikes shares 0.6,0.06,0.2,0.14)")
    parser.add_argument("--style", default="v1", choices=("v1", "v2"),
                        help="v1: flat side-view drawings (default); v2: photo-like pictures")
    parser.add_argument("--gallery", metavar="PNG",
                        help="draw samples with their ground truth into this PNG instead")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def parse_options(args):
    """Check every option before anything is written; return (num, seed, size, probs)."""
    from bikestate.synth import check_state_probs
    from bikestate.utils.errors import ConfigError

    def positive_int(text, what, minimum):
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise ConfigError(f"{what} must be >= {minimum}, got {value}")
        return value

    if args.gallery is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("out", "num_images", "seed")
                   if getattr(args, k) is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)} required (or --gallery PNG)")
    elif args.out is not None:
        raise ConfigError("--gallery draws a picture, --out writes a dataset: give one of them")
    num = positive_int(args.num_images or "24", "--num-images", 1)
    seed = positive_int(args.seed or "0", "--seed", 0)
    parts = args.image_size.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--image-size must look like 640x480, got {args.image_size!r}")
    size = (int(parts[0]), int(parts[1]))
    if size[0] < 64 or size[1] < 48:
        raise ConfigError(f"--image-size must be at least 64x48, got {args.image_size!r}")
    probs = None
    if args.state_probs is not None:
        fields = [f for f in args.state_probs.replace(" ", "").split(",")]
        if len(fields) != 4:
            raise ConfigError(f"--state-probs needs 4 numbers (intact,damaged,absent,occluded), "
                              f"got {args.state_probs!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise ConfigError(f"--state-probs needs 4 numbers, got {args.state_probs!r}") from None
        probs = check_state_probs(values)
    if args.gallery is None:
        check_writable(args.out)
    else:
        if not args.gallery.lower().endswith(".png"):
            raise ConfigError(f"--gallery {args.gallery}: must be a .png file")
        check_writable(os.path.dirname(args.gallery) or ".", "--gallery")
    return num, seed, size, probs


def check_writable(out_dir, flag="--out"):
    """Fail early, with nothing written, when ``out_dir`` cannot be created or written to."""
    from bikestate.utils.errors import ConfigError

    path = os.path.abspath(out_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {out_dir}: exists and is not a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{flag} {out_dir}: cannot create it, {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out_dir}: {existing} is not writable")


def write_gallery(args, num, seed, size, probs):
    import io

    from PIL import Image

    import bikestate  # noqa: F401  first: quiets library deprecation notices
    from bikestate.synth.gallery import draw_gallery
    from bikestate.utils.io import atomic_write_bytes

    sheet = draw_gallery(args.style, seed, num=num, image_size=size, state_probs=probs,
                         show_progress=not args.no_progress)
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG", optimize=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.gallery)), exist_ok=True)
    atomic_write_bytes(buffer.getvalue(), args.gallery)
    print(f"wrote a gallery of {num} SynthBikes {args.style} samples (seed {seed}) to "
          f"{args.gallery}")


def main(argv=None):
    args = get_parser().parse_args(argv)
    # Imported after parsing so that --help is instant.
    from bikestate.utils.errors import cli_entry

    @cli_entry
    def run():
        import json

        from bikestate.constants import STATE_NAMES
        from bikestate.synth import DEFAULT_STATE_PROBS, generate_synthbikes

        num, seed, size, probs = parse_options(args)
        if args.gallery is not None:
            write_gallery(args, num, seed, size, probs or DEFAULT_STATE_PROBS)
            return 0
        json_path = generate_synthbikes(args.out, num, seed, image_size=size, state_probs=probs,
                                        show_progress=not args.no_progress, style=args.style)
        with open(json_path, encoding="utf-8") as f:
            annotations = json.load(f)
        counts = [0] * len(STATE_NAMES)
        for record in annotations.values():
            for part in record["parts"].values():
                counts[part["object_state_class"]] += 1
        total = sum(counts)
        print(f"wrote {len(annotations)} images ({size[0]}x{size[1]}) to "
              f"{os.path.join(args.out, 'images')}")
        print(f"wrote annotations to {json_path}")
        print(f"{'state':<10}{'parts':>8}{'share':>8}")
        for name, count in zip(STATE_NAMES, counts):
            print(f"{name:<10}{count:>8}{count / total:>8.1%}")
        return 0

    run()


if __name__ == "__main__":
    main(sys.argv[1:])
