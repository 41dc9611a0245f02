"""Exact power-of-two scale tracking: values held as a float32 mantissa times 2^exponent.

Deep networks at large or small gains leave float32's range. The passes keep every array
near unit size by dividing it by a power of two, which is exact in floating point, and carry
the exponent alongside in a ``Scaled`` pair. The invariant, everywhere in the kernel:

    true value = mantissa · 2^exponent   (exactly; exponent an int32 scalar or per row)

Statistics come out as mantissas with their exponents, and ``sweep.kernel.results.finish``
combines them in float64 on the host, where 2^±1000 is representable.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Beyond this, x · 2^k is 0 or infinite for every finite float32 x (2^-149 <= |x| < 2^128).
_MAX_SHIFT = 280


class Scaled(NamedTuple):
    """A value held as ``mantissa · 2^exponent``, exactly (a pytree).

    Attributes:
      mantissa: float32, any shape.
      exponent: int32, a scalar or broadcastable to the mantissa's leading axes.
    """

    mantissa: jax.Array
    exponent: jax.Array


def pow2(k: jax.Array) -> jax.Array:
    """2^k as float32, exactly, for integer ``k`` in [-126, 127] (built from its bits)."""
    return jax.lax.bitcast_convert_type((k + 127) << 23, jnp.float32)


def ldexp(a: jax.Array, k: jax.Array) -> jax.Array:
    """``a · 2^k`` for an int32 ``k`` (a scalar, or of ``a``'s shape), as ``jnp.ldexp`` but cheaper.

    ``jnp.ldexp`` splits every element into mantissa and exponent and raises 2 to a
    per-element power; here ``k`` is mostly one scalar, so three multiplications by normal powers of
    two (each |step| <= 94) do the same: each is exact while the result is a normal number,
    and XLA flushes subnormal results to zero in both.
    """
    k = jnp.clip(k, -_MAX_SHIFT, _MAX_SHIFT).astype(jnp.int32)
    k1 = k // 3
    k2 = (k - k1) // 2
    return a * pow2(k1) * pow2(k2) * pow2(k - k1 - k2)


def rms_exponent(meansq: jax.Array) -> jax.Array:
    """The k of ``normalise`` from a mean square: 2^k is the power of two nearest the RMS."""
    rms = jnp.sqrt(meansq)
    _, k = jnp.frexp(rms)
    return jax.lax.stop_gradient(jnp.where(jnp.isfinite(rms) & (rms > 0), k, 0).astype(jnp.int32))


def normalise(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Divides ``a`` by the power of two 2^k nearest its RMS, exactly.

    Returns:
      ``(a / 2^k, k)`` with ``k`` an int32 scalar; ``k = 0`` when the RMS is 0 or not finite.
    """
    k = rms_exponent(jnp.mean(jnp.square(a)))
    return ldexp(a, -k), k
