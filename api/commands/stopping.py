"""A long-running command's stop on SIGTERM (or Ctrl-C): a clean exit, clean-up included.

Python's default SIGTERM ends the process at once: no ``finally``, no ``atexit``, so a local
Triton's folders and shared memory would stay behind. :class:`SignalStop` turns the signal
into :class:`StopRequested` in the main thread, or hands it to a server that stops itself
(uvicorn), and keeps a second signal from interrupting the clean-up.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any


class StopRequested(Exception):
    """A stop signal arrived while nothing else was listening for it."""


class SignalStop:
    """While entered, ``signals`` stop the command instead of killing the process."""

    def __init__(self, *signals: signal.Signals) -> None:
        self.signals = signals or (signal.SIGTERM, signal.SIGINT)
        self.received: str | None = None  # the name of the first signal that came
        self._forward: Callable[[], None] | None = None
        self._shielded = False
        self._previous: dict[signal.Signals, Any] = {}

    def forward_to(self, stop: Callable[[], None]) -> None:
        """From now on a signal calls ``stop`` (a server's own graceful stop) instead."""
        self._forward = stop

    def shield(self) -> None:
        """From now on signals are noted and ignored: the clean-up must run to its end."""
        self._shielded = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received = self.received or name
        if self._shielded:
            return
        if self._forward is not None:
            self._forward()
            return
        # The stop is under way from here: a second signal must not cut its clean-up short.
        self._shielded = True
        raise StopRequested(name)

    def __enter__(self) -> SignalStop:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
