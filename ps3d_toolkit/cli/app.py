"""The ``ps3d`` parser tree, the error contract and what the user sees of the library's messages.

Each subcommand is a module of :mod:`ps3d_toolkit.cli`, named after it: its
docstring is the help (first line) and description (the rest), ``EXAMPLES``
holds command lines for the epilog, one a line, ``add_arguments(parser)`` adds its arguments
and ``run(args)`` runs it and returns the exit code.
:data:`SUBCOMMANDS` lists them in the order ``ps3d --help`` shows them. The
modules import the heavy libraries (torch, MONAI) inside ``run``, so that
``ps3d --help`` and the parser stay fast.

Errors a user can cause (a missing or unreadable file, a bad spacing, an
unknown format or method: a :class:`~ps3d_toolkit.core.errors.Ps3dError`, or an
``OSError`` from the file system) end with exit code 2 and one line on stderr,
``ps3d: error: ...``; anything else is a bug in the toolkit: exit code 1 and a
line asking for a report. ``PS3D_DEBUG=1`` shows the traceback instead. When
the reader of the output goes away (``ps3d evaluate ... | head -1``) the command
stops quietly with code 141, as a program ended by SIGPIPE does. A
library message that names a keyword argument a flag stands for
(``force=True``, ``non_finite='mask'``, ...) names the flag instead. Warnings
are one line, ``ps3d: warning: ...``. The library's log messages (logger
``ps3d_toolkit``) are shown on stderr as ``ps3d: message``: INFO and above by
default, DEBUG too with ``--verbose``, warnings only with ``--quiet``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings

from ps3d_toolkit import __version__
from ps3d_toolkit.cli import adapt, convert, demo, evaluate, export, measure, report, segment, train
from ps3d_toolkit.cli.args import HelpFormatter
from ps3d_toolkit.cli.messages import one_line as _one_line
from ps3d_toolkit.core.errors import Ps3dError

__all__ = ["PROG", "SUBCOMMANDS", "add_subcommand", "build_parser", "main"]

PROG = "ps3d"
EXIT_USAGE = 2
EXIT_BUG = 1
#: 128 + SIGPIPE: what a shell reports for a program whose reader closed the pipe.
EXIT_PIPE_CLOSED = 141
REPORT_TO = "the ps3d_toolkit issue tracker"
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


#: The subcommands, in the order ``ps3d --help`` lists them.
SUBCOMMANDS: list = [demo, segment, measure, evaluate, report, convert, train, adapt, export]


def add_subcommand(subparsers, command) -> argparse.ArgumentParser:
    """Add the parser of one subcommand (a module, or an object with its attributes)."""
    summary, _, description = command.__doc__.strip().partition("\n")
    examples = [f"  {line}" for line in command.EXAMPLES.strip().splitlines()]
    name = command.__name__.rpartition(".")[2]
    parser = subparsers.add_parser(
        name, help=summary[0].lower() + summary[1:].rstrip("."), description=description.strip() or None,
        epilog="\n".join([f"example{'s' if len(examples) > 1 else ''}:", *examples]),
        formatter_class=HelpFormatter)
    command.add_arguments(parser)
    parser.set_defaults(run=command.run)
    return parser


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
    run = args.run
    with _library_messages(args):
        code = run(args)
        # a reader that went away is found here, not at exit, where Python would print it
        sys.stdout.flush()
    return 0 if code is None else int(code)


def _reader_gone() -> int:
    """Stop quietly when stdout's reader has closed the pipe (``ps3d ... | head -1``).

    Later writes, including the interpreter's flush at exit, go to the null
    device instead of raising ``BrokenPipeError`` again.
    """
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    return EXIT_PIPE_CLOSED


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
    for command in SUBCOMMANDS:
        add_subcommand(subparsers, command)
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
        0 on success, 2 on a usage or input error (one line on stderr), 1 on
        an internal error (a bug: one line asking for a report), 130 when
        interrupted, 141 when the reader of stdout closed the pipe.
    """
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:  # --help, --version and usage errors
            sys.stdout.flush()
            return stop.code if isinstance(stop.code, int) else 0
    except BrokenPipeError:  # ps3d --help | head -1
        return _reader_gone()
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
        except BrokenPipeError:
            if debug:
                raise
            return _reader_gone()
        except (Ps3dError, OSError) as error:
            # the input, the settings or the file system: FileNotFoundError,
            # PermissionError and a full disk are OSErrors
            if debug:
                raise
            print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as error:  # noqa: BLE001 - anything else is the toolkit's bug
            if debug:
                raise
            print(f"{PROG}: internal error: {type(error).__name__}: {_one_line(error)} - this is a bug in "
                  f"ps3d_toolkit {__version__}; please report it to {REPORT_TO} with the command line "
                  f"and the output of PS3D_DEBUG=1 {PROG} ...", file=sys.stderr)
            return EXIT_BUG
