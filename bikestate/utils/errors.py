"""User-facing errors and the command-line convention for reporting them.

Every command-line tool answers bad input with one line naming the file and the problem and a
non-zero exit status; the Python traceback is shown only with ``--debug`` or
``BIKESTATE_DEBUG=1``.
"""
import functools
import os
import sys


class BikeStateError(Exception):
    """An error caused by the user's input or settings; its message is shown as one line."""

    exit_code = 2

    def __init__(self, message, details=()):
        super().__init__(message)
        # Further lines (e.g. every validation problem), printed after the one-line message.
        self.details = list(details)


class DataError(BikeStateError):
    """Invalid dataset files: annotations, images, splits."""


class ConfigError(BikeStateError):
    """Invalid configuration or command-line options."""


class WeightsError(BikeStateError):
    """A weights file that cannot or must not be loaded."""


class ExportError(BikeStateError):
    """An exported model (see :mod:`bikestate.deploy`) that cannot be written, read or run."""


class ExportMismatchError(ExportError):
    """An export whose answers differ from the model's: a failure of the export, not of the
    user's input."""

    exit_code = 1


def debug_enabled(argv=None):
    argv = sys.argv if argv is None else argv
    return "--debug" in argv or os.environ.get("BIKESTATE_DEBUG", "") not in ("", "0")


def cli_entry(main):
    """Decorate a tool's ``main``: user errors become one line on stderr and exit status 2.

    Unexpected exceptions also become one line (exit 1) unless debugging is on, because a
    traceback tells a bike shop nothing; ``--debug`` / ``BIKESTATE_DEBUG=1`` shows it.
    """
    tool = os.path.basename(sys.argv[0] or main.__module__)

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            code = main(*args, **kwargs)
        except KeyboardInterrupt:
            print(f"{tool}: interrupted", file=sys.stderr)
            sys.exit(130)
        except BikeStateError as e:
            if debug_enabled():
                raise
            print(f"{tool}: error: {_one_line(e)}", file=sys.stderr)
            for line in e.details:
                print(f"  {line}", file=sys.stderr)
            sys.exit(e.exit_code)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            if debug_enabled():
                raise
            print(f"{tool}: error: {type(e).__name__}: {_one_line(e)} "
                  f"(run with --debug for the traceback)", file=sys.stderr)
            sys.exit(1)
        sys.exit(code or 0)

    return wrapper


def _one_line(exc):
    return " ".join(str(exc).split())
