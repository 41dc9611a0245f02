"""Float64 for theory computations without touching the global ``jax_enable_x64`` flag.

The engine draws its networks in float32 and its random streams depend on the global flag,
so the theory never flips it. Instead every public theory function runs its ``jax`` code
inside ``float64()``, a thread-local context manager, and returns numpy float64 values, which
stay float64 after the context is left.
"""

from __future__ import annotations

import jax


def float64():
    """A context manager under which new ``jax`` arrays and traces are float64.

    Returns:
      ``jax.enable_x64(True)`` where ``jax`` has it (jax >= 0.4.36 as a config context
      manager), else ``jax.experimental.enable_x64()``.
    """
    enable = getattr(jax, "enable_x64", None)
    if enable is not None:
        return enable(True)
    from jax import experimental  # older jax

    return experimental.enable_x64()
