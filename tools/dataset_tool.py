"""Command-line pieces of the tools that run a model on a registered dataset (calibrate.py,
analyze_errors.py). Not a tool itself; imported from the tools' own folder.

It imports nothing of bikestate before the arguments are parsed, so that ``--help`` and argparse
errors are instant (importing bikestate imports detectron2 and torch).
"""
import argparse
import logging

__all__ = ["dataset_tool_parser", "run_dataset_tool"]


def dataset_tool_parser(doc, dataset_help):
    """The options such a tool shares; the tool adds its own.

    Args:
        doc (str): the tool's docstring; its first paragraph is the description, the rest the
            help text after the options.
        dataset_help (str): what ``--dataset`` is for in this tool.
    Returns:
        argparse.ArgumentParser: with ``--config-file``, ``--dataset``, ``--debug`` and the
        trailing ``KEY VALUE`` config overrides (``opts``).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument("--dataset", default=None, help=dataset_help)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                        help="config overrides, e.g. MODEL.WEIGHTS model_best.pth")
    return parser


def run_dataset_tool(tool, args, name):
    """Run ``tool(args)`` as a command and exit: library warnings logged as ``name: WARNING:``,
    bad input as one line and exit status 2 (:func:`bikestate.utils.errors.cli_entry`)."""
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(levelname)s: %(message)s")
    from bikestate.utils.errors import cli_entry

    cli_entry(tool)(args)
