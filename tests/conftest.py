"""Test session settings: strict dtype and rank promotion, as the engine allows, and shared fixtures."""

import pytest
from helpers import small_spec


@pytest.fixture
def tiny_spec():
    return small_spec()


def pytest_configure(config):
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
