"""Kernel calls with a deadline: a run never waits for ever on a call that makes no progress.

Kernel calls run one at a time on a daemon worker thread, so the engine's thread can finish
the previous call's results meanwhile and can stop waiting. If a call has not completed
by its deadline, ``Watchdog.result`` raises ``Stalled``: the engine then stops as it does on
an error, with every tile computed so far stored and recorded, so ``--resume`` continues.
The stuck call cannot be cancelled (it is inside XLA), so the process should exit; the
command line does so at once.

Deadlines are generous: ``limit(...)`` allows at least ``MINIMUM_SECONDS``, ten times the
plan's estimate of the call (its FLOPs at ``ESTIMATE_FLOPS_PER_SECOND``, far below any
device's rate), ten times the longest call completed so far, and ``COMPILE_SECONDS`` more for
the first call of each program, which compiles it. ``stall_timeout`` replaces all of it.

For tests, the environment variable ``SWEEP_TEST_STALL_CALL=N`` makes the N-th kernel call
of a process (from 0) wait for ever, as a deadlocked call would.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from sweep.engine import compilation
from sweep.errors import Stalled

MINIMUM_SECONDS = 300.0
COMPILE_SECONDS = 600.0
ESTIMATE_FLOPS_PER_SECOND = 1e10
_SAFETY = 10.0
_TEST_STALL = "SWEEP_TEST_STALL_CALL"


class Watchdog:
    """Runs kernel calls on a worker thread, one at a time, and waits for each with a deadline.

    Args:
      stall_timeout: seconds any call may take; ``None`` for the automatic limit.
    """

    def __init__(self, stall_timeout: float | None = None):
        self._fixed = stall_timeout
        self._longest = 0.0
        self._calls = 0
        self._stall_at = int(os.environ.get(_TEST_STALL, "-1"))
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="sweep-kernel-calls", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            call, pending = self._queue.get()
            start = time.monotonic()
            try:
                pending.box["value"] = call()
            except BaseException as e:  # handed to the waiting thread
                pending.box["error"] = e
            pending.box["seconds"] = time.monotonic() - start
            pending.done.set()

    def submit(self, fn: Callable, *args) -> Pending:
        """Starts ``jax.block_until_ready(fn(*args))`` on the worker thread."""
        stall = self._calls == self._stall_at
        self._calls += 1

        pending = Pending(threading.Event(), {})

        def call():
            if stall:
                threading.Event().wait()
            out, pending.box["compiled"] = compilation.measured(fn)(*args)
            return jax.block_until_ready(out)

        self._queue.put((call, pending))
        return pending

    def limit(self, estimate_flops: float, first_of_program: bool) -> float:
        """The deadline, in seconds, of a call with this FLOP estimate."""
        if self._fixed is not None:
            return float(self._fixed)
        seconds = max(MINIMUM_SECONDS, _SAFETY * estimate_flops / ESTIMATE_FLOPS_PER_SECOND, _SAFETY * self._longest)
        return seconds + (COMPILE_SECONDS if first_of_program else 0.0)

    def result(self, pending: Pending, limit: float, what: str) -> Any:
        """The call's result, once it completes.

        Args:
          pending: from ``submit``.
          limit: seconds to wait, from when the wait starts.
          what: the program, for the error.

        Raises:
          Stalled: the call did not complete within ``limit``.
          Exception: whatever the call raised.
        """
        if not pending.done.wait(limit):
            raise Stalled(
                f"a kernel call of {what} made no progress for {limit:.0f} s (the limit; see --stall-timeout): "
                "most likely a deadlock inside XLA's CPU runtime or a device that stopped responding"
            )
        self._longest = max(self._longest, pending.box["seconds"])
        if "error" in pending.box:
            raise pending.box["error"]
        return pending.box["value"]


class Pending(NamedTuple):
    """A kernel call submitted to the worker thread.

    Attributes:
      done: set when the call has completed or failed.
      box: ``value`` or ``error``, and ``seconds``, the call's duration, and ``compiled``, what
        compiling took within it (``sweep.engine.compilation.Compiled``), once done.
    """

    @property
    def compiled(self) -> compilation.Compiled:
        return self.box.get("compiled", compilation.Compiled(0.0, 0, 0))

    @property
    def seconds(self) -> float:
        return self.box.get("seconds", 0.0)

    done: threading.Event
    box: dict
