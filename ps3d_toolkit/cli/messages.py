"""The library's messages in the command line's words: one line, and flags for the keywords they name.

Shared by :mod:`ps3d_toolkit.cli.app` (errors, warnings, log lines) and
:mod:`ps3d_toolkit.cli.batch` (a failed scan's line in the summary). A library
message names the keyword (``pass overwrite=True``, ``scheduler='local'``); the
table below turns each into the flag that stands for it.
"""

from __future__ import annotations

import re

__all__ = ["one_line"]


#: Keyword arguments of the library that a ``ps3d`` flag stands for: its messages name the
#: keyword ("pass force=True"), the command line's the flag. The flag is the keyword with
#: dashes (``--chunk-size``) unless named here.
_FLAG_NAMES = {"particle_size_mm": "--particle-size", "scheduler": "--dask-scheduler",
               "missing_chunks": "--allow-missing-chunks"}
#: ``keyword=True`` -> ``--flag``
_SWITCHES = ("force", "overwrite", "resume")
#: ``keyword='value'`` -> ``--flag value`` (``missing_chunks='fill'`` is a switch of its own)
_CHOICES = ("non_finite", "device", "method", "grains", "scheduler")
#: ``keyword`` or ``keyword=`` -> ``--flag`` (``spacing`` only with ``=``: it is a plain word too)
_VALUES = ("spacing=", "particle_size_mm", "inference_diameter_vox", "memory_limit_gb", "chunk_size",
           "dask_timeout")


def _flag(keyword: str) -> str:
    return _FLAG_NAMES.get(keyword, "--" + keyword.replace("_", "-"))


def _replacements() -> tuple:
    """(pattern, replacement) pairs: each keyword form the library writes, and its flag."""
    pairs = [(re.compile(rf"\b{k}\s*=\s*True\b"), _flag(k)) for k in _SWITCHES]
    pairs.append((re.compile(r"\bmissing_chunks\s*=\s*['\"]fill['\"]"), _flag("missing_chunks")))
    pairs += [(re.compile(rf"\b{k}\s*=\s*['\"]([^'\"]*)['\"]"), _flag(k) + r" \1") for k in _CHOICES]
    pairs += [(re.compile(rf"\b{k.rstrip('=')}\b(\s*=\s*)" + ("" if k.endswith("=") else "?")),
               lambda m, f=_flag(k.rstrip("=")): f + (" " if m.group(1) else "")) for k in _VALUES]
    return tuple(pairs)


_FLAG_FOR_KEYWORD = _replacements()

_FLAG_TWICE = re.compile(r"(--[a-z-]+(?: [a-z]+)?) \(\1\)")


def one_line(message) -> str:
    """``message`` on one line, in the command line's words (flags for the library's keywords)."""
    text = " ".join(str(message).split())
    for keyword, flag in _FLAG_FOR_KEYWORD:
        text = keyword.sub(flag, text)
    # "pass --overwrite (overwrite=True)" has become "pass --overwrite (--overwrite)"
    return _FLAG_TWICE.sub(r"\1", text)
