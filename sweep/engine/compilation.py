"""Compilation: JAX's persistent cache, on by default, and the time each kernel program takes to compile.

A sweep compiles one program per ``network.Program`` (and per trained architecture). JAX's
persistent compilation cache keeps the compiled executables on disk, so a repeated or resumed
sweep, or another sweep with the same programs, loads them instead of compiling: by default
under ``$XDG_CACHE_HOME/sweep/jax`` (``~/.cache/sweep/jax``), elsewhere with
``SWEEP_CACHE_DIR``, off with ``SWEEP_NO_CACHE=1`` or ``sweep run --no-cache``. A cache the
user configured for JAX (``JAX_COMPILATION_CACHE_DIR``) is left as it is. A loaded executable
is the one that was compiled, so stored numbers do not depend on the cache. Beside it, in
``executables`` inside the same folder, the statistics kernels' executables are kept by what
they compute (``sweep.kernel.executables``), so that a repeated sweep loads them without
tracing and lowering them first, which JAX's cache needs to compute its key.

Compile time is measured with ``jax.monitoring``'s compile events (and the store's loads), per thread: the engine's
kernel calls run on the watchdog's worker thread, and JAX compiles synchronously when a call
is dispatched, so the compile time of a call is what the events report during its dispatch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax

from sweep.kernel import executables

# The stages of turning a traced function into an executable (jax._src.dispatch's events).
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_BACKEND_EVENT = _COMPILE_EVENTS[-1]
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


class Compiled(NamedTuple):
    """What a call compiled.

    Attributes:
      seconds: time spent tracing, lowering and compiling (or loading from the cache).
      programs: XLA executables built or loaded.
      cache_hits: of those, loaded from the persistent cache.
    """

    seconds: float
    programs: int
    cache_hits: int


_local = threading.local()
_listening = False
_lock = threading.Lock()


def _counters() -> list:
    if not hasattr(_local, "counters"):
        _local.counters = [0.0, 0, 0]
    return _local.counters


def _on_duration(event: str, duration: float, **kwargs) -> None:
    if event in _COMPILE_EVENTS:
        counters = _counters()
        counters[0] += duration
        counters[1] += event == _BACKEND_EVENT
    elif event == executables.LOAD_EVENT:
        counters = _counters()
        counters[0] += duration
        counters[1] += 1
        counters[2] += 1


def _on_event(event: str, **kwargs) -> None:
    if event == _CACHE_HIT_EVENT:
        _counters()[2] += 1


def _listen() -> None:
    global _listening
    with _lock:
        if not _listening:
            jax.monitoring.register_event_duration_secs_listener(_on_duration)
            jax.monitoring.register_event_listener(_on_event)
            _listening = True


def measured(fn: Callable) -> Callable[..., tuple[Any, Compiled]]:
    """``fn`` that also returns what compiling took during its call, on the calling thread.

    Args:
      fn: any function; typically one that dispatches a jitted call.

    Returns:
      ``wrapped(*args) -> (fn(*args), Compiled)``.
    """
    _listen()

    def wrapped(*args):
        before = list(_counters())
        out = fn(*args)
        after = _counters()
        return out, Compiled(after[0] - before[0], after[1] - before[1], after[2] - before[2])

    return wrapped


def default_cache_dir() -> Path:
    """Where the persistent cache lives unless ``SWEEP_CACHE_DIR`` says otherwise."""
    if os.environ.get("SWEEP_CACHE_DIR"):
        return Path(os.environ["SWEEP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sweep" / "jax"


def use_cache(enabled: bool | None = None) -> str | None:
    """Turns JAX's persistent compilation cache on (the default) or off.

    JAX decides at the first compile of a process whether it uses the cache, so this takes
    effect if called before it (the command line does so; ``sweep.run`` calls it too).

    Args:
      enabled: ``False`` turns it off; ``None`` (default) turns it on unless ``SWEEP_NO_CACHE``
        is set to a non-empty value other than ``0``. A directory the user gave JAX
        (``JAX_COMPILATION_CACHE_DIR``) is kept; otherwise ``default_cache_dir()``.

    Returns:
      The cache directory in use, or ``None``.
    """
    if enabled is None:
        enabled = os.environ.get("SWEEP_NO_CACHE", "") in ("", "0")
    if not enabled:
        jax.config.update("jax_enable_compilation_cache", False)
        executables.set_directory(None)
        return None
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        # Beside a local cache; a remote one (a URL) keeps JAX's entries only.
        executables.set_directory(None if "://" in str(configured) else Path(configured) / "executables")
        return configured
    directory = default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        executables.set_directory(None)
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    # Every kernel program is worth keeping; JAX's default skips those under a second.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    executables.set_directory(directory / "executables")
    return str(directory)
