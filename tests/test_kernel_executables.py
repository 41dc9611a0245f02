"""The store of compiled kernels: a repeated call loads the executable it compiled, untraced, and
never one compiled for another program, configuration or environment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.kernel import executables
from sweep.kernel.stats import make_kernel
from sweep.model.network import Architecture
from sweep.plan.probe import Probe

_events: list[tuple[str, str]] = []


def _listen(event, duration, **kwargs):
    _events.append((event, kwargs.get("fun_name", "")))


jax.monitoring.register_event_duration_secs_listener(_listen)

TRACED = "/jax/core/compile/jaxpr_trace_duration"
COMPILED = "/jax/core/compile/backend_compile_duration"


@pytest.fixture
def store(tmp_path):
    before = executables.directory()
    executables.set_directory(tmp_path / "executables")
    yield tmp_path / "executables"
    executables.set_directory(before)


def events(call, *args):
    """``call(*args)`` and the (event, function) pairs it reported."""
    _events.clear()
    out = jax.block_until_ready(call(*args))
    return out, list(_events)


def scaled_sine(x, y):
    return jnp.sin(x) * y


def test_a_fresh_process_loads_the_kernel_it_compiled_without_tracing_it_and_computes_the_same_bits(store):
    program = Architecture("tanh", "fan_in", (8, 8, 8, 8)).program()
    probe = Probe(batch=4, loss="mse", outputs=2, precision="highest", jacobian=False)
    jitted = make_kernel(program, probe, 4)
    prefix = jax.tree.map(jnp.asarray, Architecture("tanh", "fan_in", (8, 8, 8)).prefix(program))
    args = (jnp.uint32(7), prefix, jnp.arange(8, dtype=jnp.uint32), jnp.full(8, 1.3, jnp.float32),
            jnp.zeros(8, jnp.float32))
    description = f"{program!r} {probe!r} 4"
    first, seen = events(executables.stored(jitted, description), *args)
    assert (COMPILED, "jit(statistics_kernel)") in seen and len(list(store.iterdir())) == 1
    # A new wrapper knows nothing in memory, as in a new process: it loads, and traces nothing.
    again, seen = events(executables.stored(jitted, description), *args)
    assert (executables.LOAD_EVENT, "jit(statistics_kernel)") in seen
    assert not [e for e in seen if e[0] in (TRACED, COMPILED) and e[1].endswith("statistics_kernel")]
    executables.set_directory(None)
    plain = jax.block_until_ready(jitted(*args))
    for a, b, c in zip(jax.tree.leaves(first), jax.tree.leaves(again), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_another_description_shape_or_configuration_is_another_executable(store):
    jitted = jax.jit(scaled_sine)
    x, y = jnp.linspace(0, 1, 5, dtype=jnp.float32), jnp.float32(2.0)
    entries = lambda: len(list(store.iterdir()))
    events(executables.stored(jitted, "a"), x, y)
    assert entries() == 1
    _, seen = events(executables.stored(jitted, "b"), x, y)
    assert entries() == 2 and executables.LOAD_EVENT not in [e for e, _ in seen]
    events(executables.stored(jitted, "a"), x[:4], y)
    assert entries() == 3
    events(executables.stored(jitted, "a"), x, 2.0)  # a weakly typed scalar is another signature
    assert entries() == 4
    with jax.default_matmul_precision("highest"):
        _, seen = events(executables.stored(jitted, "a"), x, y)
    assert entries() == 5 and executables.LOAD_EVENT not in [e for e, _ in seen]
    _, seen = events(executables.stored(jitted, "a"), x, y)  # the first one, loaded
    assert entries() == 5 and (executables.LOAD_EVENT, "jit(scaled_sine)") in seen


def test_a_damaged_entry_is_compiled_again_and_replaced(store):
    jitted = jax.jit(scaled_sine)
    x, y = jnp.linspace(0, 1, 5, dtype=jnp.float32), jnp.float32(3.0)
    expected, _ = events(executables.stored(jitted, "d"), x, y)
    (entry,) = store.iterdir()
    entry.write_bytes(b"not an executable")
    out, seen = events(executables.stored(jitted, "d"), x, y)
    assert executables.LOAD_EVENT not in [e for e, _ in seen]
    np.testing.assert_array_equal(out, expected)
    assert entry.read_bytes() != b"not an executable"
    _, seen = events(executables.stored(jitted, "d"), x, y)
    assert (executables.LOAD_EVENT, "jit(scaled_sine)") in seen


def test_when_off_it_is_the_plain_call_and_writes_nothing(store):
    executables.set_directory(None)
    jitted = jax.jit(scaled_sine)
    out = executables.stored(jitted, "off")(jnp.ones(3, jnp.float32), jnp.float32(2.0))
    np.testing.assert_array_equal(out, jitted(jnp.ones(3, jnp.float32), jnp.float32(2.0)))
    assert not store.exists()


def test_the_environment_names_the_versions_and_the_source_of_every_module(tmp_path):
    environment = executables._environment()
    assert f"jax {jax.__version__}" in environment and executables._source_hash() in environment
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    before = executables._source_hash(tmp_path)
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert executables._source_hash(tmp_path) != before
