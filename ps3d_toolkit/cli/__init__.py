"""The ``ps3d`` command: a thin shell over the library, one module a subcommand.

Every subcommand parses and checks its arguments once (:mod:`.args`), calls the
public functions the notebooks use (``load_scan``, ``segment``, ``measure``,
``evaluate_instances``, ``export_weights``, ...) and says what it wrote. No
processing lives here.

Modules
-------
app
    The parser tree (:func:`build_parser`), :func:`main` and its error contract:
    user errors exit with code 2 and one line ``ps3d: error: ...``
    (``PS3D_DEBUG=1`` shows the traceback); warnings and the library's log
    messages are one line each on stderr.
args
    Argument types and checks the subcommands share.
demo, segment, measure, evaluate, report, convert, train, export
    One subcommand each: ``add_parser(subparsers)`` and ``run(args)``.
"""

from __future__ import annotations

from ps3d_toolkit.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
