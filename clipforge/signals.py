"""Ctrl-C and SIGTERM while a run saves: the first one stops the run, the later ones wait until
its results are written whole."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the run stops and saves."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread only)."""
    if not _main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopSignals:
    """Ctrl-C and SIGTERM for a whole run: the first one stops it (``KeyboardInterrupt``, or
    :class:`Terminated`), and every later one is held until the run has saved its results and
    handed its folder back, wherever it arrives (a second Ctrl-C in the moment between the loop's
    end and the save would otherwise break the save). Within :meth:`held` the first one is held
    too (a checkpoint is written whole) and listed. A Ctrl-C that this process ignores (a job
    started in the background) stays ignored. Use it as a context manager (main thread only)."""

    def __init__(self) -> None:
        self.stopping = False
        self.holding = 0
        self.arrived: list[int] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if not _main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN or (sig == signal.SIGINT and current is not signal.default_int_handler):
                continue  # ignored, or someone else's handler: left alone
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.arrived.append(signum)
        if self.stopping or self.holding:
            return
        self.stop_now(signum)

    def stop_now(self, signum: int | None = None) -> None:
        """Stop the run here: raise, as the first signal does."""
        self.stopping = True
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    @contextmanager
    def held(self) -> Iterator[list[int]]:
        """Hold the signals while the block runs; yields the list of those that arrived in it."""
        start = len(self.arrived)
        self.holding += 1
        seen: list[int] = []
        try:
            yield seen
        finally:
            self.holding -= 1
            seen.extend(self.arrived[start:])


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM while results are written (a second Ctrl-C must not break the save);
    the signals that arrived are listed in the yielded list."""
    if not _main_thread():
        yield []
        return
    arrived: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield arrived
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
