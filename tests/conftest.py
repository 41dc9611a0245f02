"""Test session settings and shared fixtures.

Strict dtype promotion, as the engine allows (rank promotion stays implicit: the engine
broadcasts scalars and rows against arrays throughout). The session's sweeps share one
persistent compilation cache in a temporary folder, never the user's.
"""

import os
import tempfile

import pytest
from helpers import small_spec


@pytest.fixture
def tiny_spec():
    return small_spec()


def pytest_configure(config):
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    os.environ["SWEEP_CACHE_DIR"] = tempfile.mkdtemp(prefix="sweep-test-cache-")
