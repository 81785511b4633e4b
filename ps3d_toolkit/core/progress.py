"""One progress display over a run's named stages (read, normalise, network, ..., write)."""

from __future__ import annotations

import logging
import time

from tqdm.auto import tqdm

__all__ = ["Stages"]

logger = logging.getLogger(__name__)


class Stages:
    """A progress bar whose description is the stage running; each stage's time is kept.

    Every stage is one step of the bar unless it advances the bar itself (the
    network advances it by one step a window), so the bar moves through the
    whole run and never sits on a stretch without a name.

    Parameters
    ----------
    what : str
        What runs (the bar's label), e.g. ``"model"``.
    enabled : bool
        Show the bar (the stages are timed either way).

    Attributes
    ----------
    seconds : dict
        Stage name -> seconds, in the order the stages ran (a repeated
        stage, e.g. a second network pass, adds up).

    Examples
    --------
    >>> stages = Stages("demo", enabled=False)
    >>> stages.start("read"); stages.start("write"); stages.close()
    >>> list(stages.seconds)
    ['read', 'write']
    """

    def __init__(self, what: str, *, enabled: bool = True):
        self.what = what
        self.seconds: dict = {}
        self._name = None
        self._since = None
        self._enabled = enabled
        self._bar = None  # shown from the first stage on

    def __bool__(self) -> bool:
        """Whether progress is shown: a method handed a silent ``Stages`` shows no bar of its own either."""
        return bool(self._enabled)

    def start(self, name: str, steps: int = 1) -> None:
        """End the running stage and start ``name``, which will take ``steps`` steps of the bar."""
        self._end()
        if self._bar is None:
            self._bar = tqdm(total=0, desc=f"{self.what}: {name}", unit="step", disable=not self._enabled,
                             leave=True, mininterval=0.5)
        self._name, self._since = name, time.perf_counter()
        self._bar.total += steps
        self._bar.set_description_str(f"{self.what}: {name}", refresh=False)
        self._own_steps = steps
        self._bar.refresh()

    def advance(self, steps: int = 1) -> None:
        """Move the bar within the running stage (e.g. one window of the network)."""
        self._own_steps -= steps
        self._bar.update(steps)

    def close(self) -> None:
        """End the last stage and the bar."""
        self._end()
        if self._bar is not None:
            self._bar.set_description_str(self.what, refresh=False)
            self._bar.close()

    def _end(self) -> None:
        if self._name is None:
            return
        if self._own_steps > 0:
            self._bar.update(self._own_steps)
        seconds = time.perf_counter() - self._since
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + seconds
        logger.debug("%s: %s took %.2f s", self.what, self._name, seconds)
        self._name = None
