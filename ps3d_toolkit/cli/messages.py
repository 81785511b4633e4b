"""The library's messages in the command line's words: one line, and flags for the keywords they name.

Shared by :mod:`ps3d_toolkit.cli.app` (errors, warnings, log lines) and
:mod:`ps3d_toolkit.cli.batch` (a failed scan's line in the summary). A library
message names the keyword (``pass overwrite=True``, ``scheduler='local'``); the
table below turns each into the flag that stands for it.
"""

from __future__ import annotations

import re

__all__ = ["one_line"]


#: Keyword arguments of the library that a ``ps3d`` flag stands for: its messages
#: name the keyword ("pass force=True"), the command line's the flag.
_FLAG_FOR_KEYWORD = (
    (re.compile(r"\bforce\s*=\s*True\b"), "--force"),
    (re.compile(r"\boverwrite\s*=\s*True\b"), "--overwrite"),
    (re.compile(r"\bnon_finite\s*=\s*['\"]mask['\"]"), "--non-finite mask"),
    (re.compile(r"\bmissing_chunks\s*=\s*['\"]fill['\"]"), "--allow-missing-chunks"),
    (re.compile(r"\bdevice\s*=\s*['\"]([a-z]+)['\"]"), r"--device \1"),
    (re.compile(r"\bmethod\s*=\s*['\"]([a-z-]+)['\"]"), r"--method \1"),
    (re.compile(r"\bspacing\s*=\s*"), "--spacing "),
    (re.compile(r"\bparticle_size_mm\b"), "--particle-size"),
    (re.compile(r"\binference_diameter_vox\b"), "--inference-diameter-vox"),
    (re.compile(r"\bmemory_limit_gb\b"), "--memory-limit-gb"),
    (re.compile(r"\bchunk_size\s*=\s*"), "--chunk-size "),
    (re.compile(r"\bchunk_size\b"), "--chunk-size"),
    (re.compile(r"\bresume\s*=\s*True\b"), "--resume"),
    (re.compile(r"\bgrains\s*=\s*['\"]([a-z]+)['\"]"), r"--grains \1"),
    (re.compile(r"\bscheduler\s*=\s*['\"]([^'\"]*)['\"]"), r"--dask-scheduler \1"),
    (re.compile(r"\bdask_timeout\s*=\s*"), "--dask-timeout "),
    (re.compile(r"\bdask_timeout\b"), "--dask-timeout"),
)

_FLAG_TWICE = re.compile(r"(--[a-z-]+(?: [a-z]+)?) \(\1\)")


def one_line(message) -> str:
    """``message`` on one line, in the command line's words (flags for the library's keywords)."""
    text = " ".join(str(message).split())
    for keyword, flag in _FLAG_FOR_KEYWORD:
        text = keyword.sub(flag, text)
    # "pass --overwrite (overwrite=True)" has become "pass --overwrite (--overwrite)"
    return _FLAG_TWICE.sub(r"\1", text)
