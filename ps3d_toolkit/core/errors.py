"""The toolkit's own errors: one family, :class:`Ps3dError`, that notebooks can catch.

Every failure a user can cause (a bad value, an unreadable or truncated file,
an output that must not be written, a device that is not there, a run that
would not fit in memory) raises a subclass of :class:`Ps3dError`. Each is also
a subclass of the built-in error it refines (``ValueError``, ``TypeError``,
``FileNotFoundError``, ``OSError``), so ``except ValueError`` keeps working.

The command line turns a ``Ps3dError`` (and an ``OSError`` from the file
system) into one line and exit code 2; anything else is a bug in the toolkit
(exit code 1, with a request to report it).

Examples
--------
>>> from ps3d_toolkit.core.errors import Ps3dError
>>> try:
...     ps3d_toolkit.segment(scan, spacing=0.01)     # doctest: +SKIP
... except Ps3dError as error:
...     print(error)
"""

from __future__ import annotations

__all__ = [
    "CorruptDataError", "DeviceError", "InputError", "InputTypeError", "MissingDependencyError",
    "MissingInputError", "OutputError", "Ps3dError", "ResourceError",
]


class Ps3dError(Exception):
    """Base of every error the toolkit raises on purpose: the input or the setting is at fault."""


class InputError(Ps3dError, ValueError):
    """A value, array or file the toolkit cannot use (wrong shape, range, content or format)."""


class InputTypeError(Ps3dError, TypeError):
    """An argument of the wrong kind (a string where a number is needed, float labels...)."""


class MissingInputError(Ps3dError, FileNotFoundError):
    """An input file, folder or store that does not exist."""


class CorruptDataError(InputError):
    """Stored data that is damaged or incomplete: a truncated file, a missing or corrupt chunk."""


class ResourceError(InputError):
    """A run that would need more memory than the budget allows, or a scale that makes no sense."""


class DeviceError(InputError):
    """A compute device that was asked for but is not available."""


class OutputError(Ps3dError, OSError):
    """An output that cannot or must not be written (the input itself, a directory, no space)."""


class MissingDependencyError(Ps3dError, ImportError):
    """An optional package that a chosen method needs is not installed (the message names the extra)."""
