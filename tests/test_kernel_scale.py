"""Exact power-of-two scaling: ``ldexp`` is ``jnp.ldexp`` bit for bit, far cheaper."""

import jax
import jax.numpy as jnp
import numpy as np

from sweep.kernel.scale import ldexp


def test_scalar_ldexp_is_jnp_ldexp_bit_for_bit():
    values = jnp.asarray(np.concatenate([
        np.random.default_rng(0).standard_normal(1000) * np.logspace(-30, 30, 1000),
        [0.0, -0.0, np.inf, -np.inf, 3e38, 1.2e-38, 1.0],
    ]), jnp.float32)
    ours = jax.jit(ldexp)
    theirs = jax.jit(jnp.ldexp)
    for k in (-300, -280, -200, -150, -126, -60, -1, 0, 1, 7, 100, 127, 128, 200, 280, 300):
        a, b = np.asarray(ours(values, jnp.int32(k))), np.asarray(theirs(values, jnp.int32(k)))
        np.testing.assert_array_equal(a, b, err_msg=f"k = {k}")
    assert np.isnan(np.asarray(ours(jnp.asarray([np.nan], jnp.float32), jnp.int32(5)))).all()
