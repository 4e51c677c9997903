#!/usr/bin/env python
"""Serve the bike inspection: a web page and an HTTP API where a photo goes in and the
22-part report comes out.

    tools/serve.py --model output/demo/train [--host 127.0.0.1] [--port 8000] [--threads N] \
        [--queue-size 8] [--max-upload-mb 20] [--max-batch-images 16] [--save-dir DIR] \
        [KEY VALUE ...]
    tools/serve.py --model model_best.pth --config-file configs/bike_small_cpu.yaml

--model is a training output folder (its config.yaml and model_best.pth, else model_final.pth),
a weights file with --config-file, or an export folder of tools/export_model.py (run with
onnxruntime or TorchScript). The verdicts follow the thresholds.json beside the weights when
there is one, as tools/predict.py's do (an export carries its own). The model is loaded once; photos are
inspected one at a time in a worker thread (--threads for torch), and at most --queue-size wait:
more are answered 503 with Retry-After.

Open http://HOST:PORT/ in a browser (on a phone: take the photo from the page), or use the API:

    curl -F photo=@bike.jpg http://127.0.0.1:8000/v1/inspect            # the report, JSON
    curl -F photo=@bike.jpg 'http://127.0.0.1:8000/v1/inspect?image=1'  # + annotated picture
    curl -F photos=@a.jpg -F photos=@b.jpg http://127.0.0.1:8000/v1/inspect/batch
    curl http://127.0.0.1:8000/v1/model    # parts, states, config, weights sha256, thresholds
    curl http://127.0.0.1:8000/healthz

One log line per request on stderr (request id, client, method, path, status, time, what was
found). Nothing is written to disk unless --save-dir is given (then each request's photos,
pictures and report.json / report.csv go to DIR/<request id>/). Ctrl-C or SIGTERM stops it
gracefully: no new connections, requests in flight are answered (up to 30 s), then the worker
stops; the process then ends by that signal (exit status 130 / 143 in a shell). Exit status
otherwise: 2 bad input (nothing served, nothing written), 1 the server could not run.
"""
import argparse
import logging
import math
import os
import socket
import sys

# Requests in flight get this long to be answered after Ctrl-C / SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 30


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trailing KEY VALUE pairs override the config, e.g. MODEL.DEVICE cuda "
               "INPUT.MIN_SIZE_TEST 480.")
    parser.add_argument("--model", required=True, metavar="DIR_OR_WEIGHTS",
                        help="training output folder (config.yaml + model_best.pth or "
                             "model_final.pth), a weights file (with --config-file), or an "
                             "export folder of tools/export_model.py (model.json)")
    parser.add_argument("--config-file", default=None, metavar="FILE",
                        help="the model's config (default: config.yaml of the --model folder)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; "
                             "0.0.0.0 for the whole network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads of the inference (default: torch's choice)")
    parser.add_argument("--queue-size", type=int, default=8, metavar="N",
                        help="photos (or batches) that may wait for the model; more are "
                             "answered 503 (default 8)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                        help="largest request body in MiB; larger ones are answered 413 "
                             "(default 20)")
    parser.add_argument("--max-batch-images", type=int, default=16, metavar="N",
                        help="most photos in one /v1/inspect/batch request (default 16)")
    parser.add_argument("--save-dir", default=None, metavar="DIR",
                        help="keep each request's photos and report in DIR/<request id>/ "
                             "(default: nothing is written to disk)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides")
    return parser


def check_args(args):
    """One-line :class:`ConfigError` for options that cannot work, before the model loads."""
    from bikestate.utils.errors import ConfigError

    for flag, value in (("--threads", args.threads), ("--queue-size", args.queue_size),
                        ("--max-batch-images", args.max_batch_images)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb * 1024 * 1024 >= 1):
        raise ConfigError(f"--max-upload-mb must be a positive number of at least one byte "
                          f"(1e-6), got {args.max_upload_mb}")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    if args.save_dir is not None:
        try:
            os.makedirs(args.save_dir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create --save-dir {args.save_dir} "
                              f"({e.strerror or e})") from e
        if not os.access(args.save_dir, os.W_OK | os.X_OK):
            raise ConfigError(f"--save-dir {args.save_dir} is not writable")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {args.host}:{args.port} "
                              f"({e.strerror or e})") from e


def serve(args):
    import bikestate  # noqa: F401  first: quiets library deprecation notices
    import uvicorn

    from bikestate.serving import (
        ServiceSettings,
        create_app,
        load_predictor_backend,
        resolve_model,
    )

    resolve_model(args.model, args.config_file)  # a missing file is said before anything else
    check_args(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # also for loading; the worker sets it again
    logging.getLogger("bikestate.serving").info("loading %s", args.model)
    backend = load_predictor_backend(args.model, args.config_file, args.opts,
                                     threads=args.threads)
    settings = ServiceSettings(queue_size=args.queue_size,
                               max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                               max_batch_images=args.max_batch_images, threads=args.threads,
                               save_dir=args.save_dir)
    app = create_app(backend, settings)
    server = uvicorn.Server(uvicorn.Config(
        app, host=args.host, port=args.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS))
    server.run()
    return 0 if server.started else 1


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, datefmt="%Y-%m-%dT%H:%M:%S",
                        format="%(asctime)s serve.py %(levelname)s: %(message)s")
    # Imported after parsing so that --help is instant.
    from bikestate.utils.errors import cli_entry

    cli_entry(serve)(args)


if __name__ == "__main__":
    main(sys.argv[1:])
