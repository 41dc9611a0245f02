"""Compiled kernels kept on disk, so that a repeated sweep neither traces, lowers nor compiles them.

JAX's persistent compilation cache (``sweep.engine.compilation``) saves the compile, but its
key is a hash of the lowered module: a program loaded from it has first been traced and
lowered again, which on a 2-core CPU takes as long as loading it (0.4 s for a small kernel,
about 1 s for one that also takes the Jacobian). This store keys each executable by what
determines it before tracing:

* the kernel's static description (for the statistics kernel: its ``Program``, ``Probe`` and
  micro-batch, the key under which ``sweep.kernel.stats.make_kernel`` shares one ``jit``);
* the call's argument structure, shapes, dtypes (weak or not) and shardings;
* the environment that turns these into a program: the versions of jax and jaxlib, the
  backend's platform and version, the devices' kinds and ids, the host CPU's model and
  features, XLA's flags from the environment, the value of every JAX configuration option
  (but those that only say where and when JAX caches), and a hash of the source of every
  module of the ``sweep`` package.

A change to any of these is another key, so an executable is only ever used by the program
it was compiled for. A stored executable is serialised with
``jax.experimental.serialize_executable`` and loaded as the very executable that was
compiled, so stored numbers do not depend on the store (tested). Entries are written to a
temporary name and renamed, so that processes sharing the folder never read half a file; an
entry that cannot be read is compiled again and replaced. Entries are never pruned: the
folder (``executables`` inside the compilation cache's) may be deleted at any time.

Loads are reported as ``jax.monitoring`` events (``LOAD_EVENT``, with the ``fun_name`` of the
jitted function, as JAX reports its compiles), so that ``sweep.engine.compilation`` counts
them with the compiles.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jaxlib
from jax.experimental import serialize_executable

LOAD_EVENT = "/sweep/executables/load_duration"
"""A ``jax.monitoring`` duration event: an executable loaded from the store instead of compiled."""

_ENVIRONMENT_VARIABLES = ("XLA_FLAGS", "LIBTPU_INIT_ARGS", "TPU_LIBRARY_PATH", "NEURON_CC_FLAGS")
# Options that say where and when JAX caches what it compiled, not what it compiles.
_CACHE_OPTIONS = ("compilation_cache", "persistent_cache")

_state = {"directory": None}


def set_directory(directory: str | Path | None) -> None:
    """Where the store keeps executables (created when first written); ``None`` turns it off."""
    _state["directory"] = None if directory is None else Path(directory)


def directory() -> Path | None:
    """The store's folder, or ``None`` when it is off."""
    return _state["directory"]


def stored(jitted: Callable, description: str) -> Callable:
    """``jitted``, with each of its compiled executables loaded from the store when it has it.

    Args:
      jitted: a ``jax.jit``-ed function, called with array arguments only (their pytree
        structure, shapes, dtypes and shardings select the executable, as they select jit's).
      description: everything static the function closes over, in text; together with the
        arguments and the environment (module doc) it names the executable.

    Returns:
      A function with ``jitted``'s signature and results. While the store is off it is
      ``jitted``'s plain call; else the first call with a new argument signature loads the
      executable, or traces, lowers and compiles it (through JAX's own cache) and stores it.
    """
    executables: dict = {}
    lock = threading.Lock()

    def call(*args):
        folder = directory()
        if folder is None:
            return jitted(*args)
        leaves, tree = jax.tree.flatten(args)
        signature = (str(tree),) + tuple(_describe(x) for x in leaves)
        executable = executables.get(signature)
        if executable is None:
            with lock:
                executable = executables.get(signature)
                if executable is None:
                    executable, out = _first_call(jitted, description, signature, args, leaves, folder)
                    executables[signature] = executable
                    return out
        return executable(*args)

    return call


def _describe(x) -> str:
    """An argument's type as the compiled program sees it: shape, dtype, weak type, placement."""
    sharding = getattr(x, "sharding", None)
    return f"{jax.typeof(x)} {sharding!r}"


def _first_call(jitted, description: str, signature: tuple, args: tuple, leaves: list, folder: Path):
    """The executable for this signature and its result for ``args``: loaded from the store if
    it has it and it runs, else compiled, run, and then stored.

    The first call waits for its result either way: a loaded executable that fails to run (an
    entry this jaxlib cannot execute) is compiled again, and an executable is serialised only
    once it has run, so that everything it runs has been built."""
    key = _key(description, signature, leaves)
    path = folder / f"{key}.executable"
    name = f"jit({getattr(jitted, '__name__', 'function')})"
    if path.exists():
        start = time.perf_counter()
        try:
            payload, in_tree, out_tree = pickle.loads(path.read_bytes())
            executable = serialize_executable.deserialize_and_load(payload, in_tree, out_tree,
                                                                   execution_devices=_devices(leaves))
            seconds = time.perf_counter() - start
            out = jax.block_until_ready(executable(*args))
        except Exception:  # unreadable or not runnable here (a foreign or damaged entry): compile it again
            pass
        else:
            jax.monitoring.record_event_duration_secs(LOAD_EVENT, seconds, fun_name=name)
            return executable, out
    executable = jitted.lower(*args).compile()
    out = jax.block_until_ready(executable(*args))
    try:
        _write(path, pickle.dumps(serialize_executable.serialize(executable)))
    except (OSError, ValueError, NotImplementedError):  # a read-only folder, or a backend that cannot serialise
        pass
    return executable, out


def _devices(leaves: list) -> list | None:
    """The devices the call's arguments live on, in id order (``None``: the default device)."""
    devices = {d for x in leaves if isinstance(x, jax.Array) for d in x.sharding.device_set}
    return sorted(devices, key=lambda d: d.id) or None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _key(description: str, signature: tuple, leaves: list) -> str:
    devices = _devices(leaves) or [jax.devices()[0]]
    parts = [description, *signature, _environment(), _configuration(),
             *(f"{d.platform} {d.client.platform_version} {d.device_kind} {d.id}" for d in devices)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _configuration() -> str:
    """Every JAX option's value on this thread (contexts such as ``enable_x64`` included)."""
    values = jax.config.values
    return "\n".join(f"{n}={values[n]!r}" for n in sorted(values) if not any(c in n for c in _CACHE_OPTIONS))


@functools.cache
def _environment() -> str:
    """What a process cannot change between calls: versions, host CPU, XLA flags, sweep's source."""
    variables = "\n".join(f"{v}={os.environ.get(v)!r}" for v in _ENVIRONMENT_VARIABLES)
    return "\n".join([f"jax {jax.__version__} jaxlib {jaxlib.__version__}", _host_cpu(), variables, _source_hash()])


def _host_cpu() -> str:
    """The host CPU's model and instruction set extensions (an executable may use any of them)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _source_hash(root: Path | None = None) -> str:
    """SHA-256 of every module under ``root`` (default: the ``sweep`` package), by path within it."""
    root = Path(__file__).resolve().parents[1] if root is None else root
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
