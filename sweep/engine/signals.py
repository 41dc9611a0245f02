"""Ctrl-C and SIGTERM as requests to stop after the kernel call in flight."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def stop_on_signals():
    """Turns the first SIGINT or SIGTERM into a request to stop after the call in flight.

    A second signal acts as usual (SIGINT raises ``KeyboardInterrupt`` at once). Signals can
    only be caught in the main thread; elsewhere this does nothing.

    Yields:
      A function that says whether a stop was requested.
    """
    requested = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        requested.append(signum)
        for s, h in previous.items():
            signal.signal(s, h)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield lambda: bool(requested)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
