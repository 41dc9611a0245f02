"""Test session settings and shared fixtures.

Strict dtype promotion, as the engine allows (rank promotion stays implicit: the engine
broadcasts scalars and rows against arrays throughout). The session's sweeps share one
persistent compilation cache in a temporary folder, never the user's, and run on one CPU
device unless ``XLA_FLAGS`` says otherwise. `--deadline` lets CI
run the long tests as far as its time budget allows: a test not started by then is skipped,
and reported as skipped.
"""

import os
import tempfile
import time

import pytest
from helpers import small_spec


@pytest.fixture
def tiny_spec():
    return small_spec()


def pytest_configure(config):
    import jax

    jax.config.update("jax_numpy_dtype_promotion", "strict")
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # The tests' own process keeps JAX's one CPU device, whichever test first calls the CLI
        # in it (``sweep run`` makes one per core); subprocesses choose theirs.
        jax.config.update("jax_num_cpu_devices", 1)
    os.environ["SWEEP_CACHE_DIR"] = tempfile.mkdtemp(prefix="sweep-test-cache-")


def pytest_addoption(parser):
    parser.addoption("--deadline", type=float, default=None, metavar="UNIX_TIME",
                     help="skip the tests that have not started by this time (seconds since the epoch)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    deadline = item.config.getoption("deadline")
    if deadline is not None and time.time() > deadline:
        pytest.skip("not started: past the time budget given by --deadline")
