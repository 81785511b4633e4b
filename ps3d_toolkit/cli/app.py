"""The ``ps3d`` parser tree, the error contract and what the user sees of the library's messages.

Each subcommand is a module of :mod:`ps3d_toolkit.cli` with an ``add_parser(subparsers)``
function that adds its parser and sets ``run`` to a function taking the parsed
arguments and returning an exit code. :data:`SUBCOMMANDS` lists them in the
order ``ps3d --help`` shows them. A subcommand whose module is slow to import
(torch) is listed through :func:`deferred_subcommand`, so that ``ps3d --help``
and the other commands stay fast.

Errors a user can cause (a missing or unreadable file, a bad spacing, an
unknown format or method) end with exit code 2 and one line on stderr,
``ps3d: error: ...``; ``PS3D_DEBUG=1`` shows the traceback instead. Warnings
are one line, ``ps3d: warning: ...``. The library's log messages (logger
``ps3d_toolkit``) are shown on stderr as ``ps3d: message``: INFO and above by
default, DEBUG too with ``--verbose``, warnings only with ``--quiet``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings

from ps3d_toolkit import __version__
from ps3d_toolkit.cli import convert, demo, evaluate, export, measure, report, segment
from ps3d_toolkit.cli.args import CLIError

__all__ = ["PROG", "SUBCOMMANDS", "build_parser", "deferred_subcommand", "main"]

PROG = "ps3d"
EXIT_USAGE = 2
LIBRARY_LOGGER = "ps3d_toolkit"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error.

    Options are matched by their whole name: an abbreviation would let an old
    option name (``--inference-diameter``) pass for a new one.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(message) -> str:
    return " ".join(str(message).split())


def deferred_subcommand(name: str, help: str, builder: str):
    """A subcommand whose parser is built only when it runs.

    Parameters
    ----------
    name : str
        The subcommand, e.g. ``"train"``.
    help : str
        Its one-line help in ``ps3d --help``.
    builder : str
        ``"module:function"``; the function takes a subparsers object, adds the
        ``name`` parser to it and sets ``run`` (or ``func``) on it. The module is
        imported only when ``ps3d NAME ...`` is run.

    Returns
    -------
    callable
        An ``add_parser(subparsers)`` function for :data:`SUBCOMMANDS`.
    """

    def add_parser(subparsers):
        # no options of its own: every argument, --help included, goes to the real parser
        parser = subparsers.add_parser(name, help=help, add_help=False, prefix_chars="\0")
        parser.add_argument("arguments", nargs="*")
        parser.set_defaults(run=lambda args: _run_deferred(name, builder, args.arguments))

    add_parser.__name__ = f"add_{name}_parser"
    return add_parser


#: The subcommands' ``add_parser`` functions, in the order ``ps3d --help`` lists them.
SUBCOMMANDS: list = [
    demo.add_parser, segment.add_parser, measure.add_parser, evaluate.add_parser, report.add_parser,
    convert.add_parser,
    deferred_subcommand("train", "train or fine-tune the border-core U-Net ('ps3d train --help')",
                        "ps3d_toolkit.cli.train:add_parser"),
    export.add_parser,
]


def _run_deferred(name: str, builder: str, arguments) -> int:
    module, function = builder.split(":")
    parser = _Parser(prog=PROG)
    getattr(importlib.import_module(module), function)(
        parser.add_subparsers(required=True, parser_class=_Parser))
    try:
        args = parser.parse_args([name, *arguments])
    except SystemExit as stop:  # --help or a usage error
        return stop.code if isinstance(stop.code, int) else 0
    return _dispatch(args)


class _LogFormatter(logging.Formatter):
    def format(self, record):
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{PROG}: {level}{_one_line(record.getMessage())}"


@contextlib.contextmanager
def _library_messages(args):
    """Show the library's log messages on stderr while a command runs, as ``--quiet``/``--verbose`` say."""
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    if getattr(args, "quiet", False):
        level = logging.WARNING
    logger = logging.getLogger(LIBRARY_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    handler.setLevel(level)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, previous) if previous else level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _dispatch(args) -> int:
    run = getattr(args, "run", None) or getattr(args, "func")
    with _library_messages(args):
        code = run(args)
    return 0 if code is None else int(code)


def build_parser() -> argparse.ArgumentParser:
    """The ``ps3d`` argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Find and measure individual particles in 3D micro-CT scans of mineral samples.\n"
            "Run 'ps3d demo' to try it on the bundled sample, 'ps3d COMMAND --help' for details."
        ),
        epilog="Set PS3D_DEBUG=1 to see a traceback when a command fails.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True,
                                       parser_class=_Parser)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    """Run the ``ps3d`` command line; return its exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 on a usage or input error (one line on stderr), 130
        when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else 0
    debug = os.environ.get("PS3D_DEBUG", "").strip() not in ("", "0")
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            return _dispatch(args)
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except (CLIError, ValueError, TypeError, OSError) as error:
            # FileNotFoundError and PermissionError are OSErrors
            if debug:
                raise
            print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE
