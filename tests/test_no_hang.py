"""No run ever hangs: factorisations in plain XLA, every registry family on several devices, a watchdog.

Each multi-device run is a subprocess with a timeout (the device count is fixed when JAX
starts), so a deadlock fails the test instead of stopping the suite.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweep
from sweep.engine import checkpoint
from sweep.io import zarr_store as store
from sweep.model import linalg, streams

TIMEOUT = 420


def run_python(code: str, *args, devices: int = 1, env=None, timeout=TIMEOUT):
    environment = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=environment,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("shape", [(7, 7), (12, 30), (40, 9), (64, 64)])
def test_orthogonal_draws_equal_jax_initializers_up_to_rounding(shape):
    key = jax.random.key(11)
    mine = np.asarray(jax.jit(lambda k: streams.raw_weights(k, shape, "orthogonal"))(key))
    reference = np.asarray(jax.nn.initializers.orthogonal()(key, shape))
    # Householder QR is backward stable: entries differ by a few multiples of n·u.
    np.testing.assert_allclose(mine, reference, rtol=0, atol=64 * max(shape) * 2.0**-24)
    small = min(shape)
    gram = mine.T @ mine if shape[0] >= shape[1] else mine @ mine.T
    np.testing.assert_allclose(gram, np.eye(small), atol=8 * max(shape) * 2.0**-24)


def test_householder_qr_factorises():
    a = np.random.default_rng(0).standard_normal((50, 20)).astype(np.float32)
    q, r_diag = jax.jit(linalg.householder_qr)(jnp.asarray(a))
    r = np.asarray(q).T.astype(np.float64) @ a
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-5)
    np.testing.assert_allclose(np.diag(r), r_diag, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(q) @ r, a, atol=1e-5)


def test_cholesky_and_forward_substitution_solve_a_gram_system():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 40)).astype(np.float32)
    g = x @ x.T
    factor = np.asarray(jax.jit(linalg.cholesky)(jnp.asarray(g)))
    exact = np.linalg.cholesky(g.astype(np.float64))
    np.testing.assert_allclose(factor, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    b = rng.standard_normal((16, 3)).astype(np.float32)
    solution = np.asarray(jax.jit(linalg.solve_lower)(jnp.asarray(factor), jnp.asarray(b)))
    np.testing.assert_allclose(factor.astype(np.float64) @ solution, b, atol=1e-4)


def _grams():
    """``(g, rank)``: Gram matrices of 128 rows, Gaussian, of rank 38 (38 rows repeated), and
    with a spectrum spread evenly over six decades (pivots on both sides of the tolerance, no
    rank at float32's resolution: ``None``)."""
    rng = np.random.default_rng(3)
    spread = rng.standard_normal((128, 128)) @ (np.logspace(0, -6, 128)[:, None] * rng.standard_normal((128, 512)))
    repeated = rng.standard_normal((40, 512))[rng.integers(0, 40, 128)]
    rows = {"gaussian": rng.standard_normal((128, 512)), "rank 38": repeated, "six decades": spread}
    out = {}
    for name, x in rows.items():
        x = np.asarray(x, np.float32)
        rank = None if name == "six decades" else np.linalg.matrix_rank(x.astype(np.float64))  # that one: 128, spread
        out[name] = np.asarray(jnp.matmul(x, x.T, precision="highest")), rank
    return out


@pytest.mark.parametrize("name", ["gaussian", "rank 38", "six decades"])
def test_the_blocked_factorisation_factorises_what_it_keeps_and_inverts_it(name):
    """``cholesky_inverse`` (recursive halving to blocks of 32): L is lower triangular, L⁺ has a
    zero row exactly where L has a zero column (a direction left out), L Lᵀ equals g on the
    directions kept to a Cholesky factorisation's backward error, and L⁺ inverts L there. It
    keeps every direction of a full-rank g and at least the rank of a deficient one (its Schur
    complements round differently from ``cholesky``'s, so near the tolerance it may keep a
    direction of rounding that ``cholesky`` leaves out)."""
    g, rank = _grams()[name]
    tolerance = 4 * 2.0**-24
    lower, inverse = (np.asarray(a, np.float64) for a in jax.jit(lambda a: linalg.cholesky_inverse(a, tolerance))(g))
    kept = np.diag(lower) > 0
    assert np.all(np.triu(lower, 1) == 0) and np.all(np.triu(inverse, 1) == 0)
    assert np.all(lower[:, ~kept] == 0) and np.all(inverse[~kept] == 0) and np.all(np.diag(inverse)[kept] > 0)
    if rank is not None:
        assert kept.sum() >= rank and (rank < len(g) or kept.all())
    k = np.ix_(kept, kept)
    bound = 8 * len(g) * 2.0**-24
    # Backward error: entry-wise below a small multiple of n·u·√(g_ii g_jj).
    assert (np.abs(lower @ lower.T - g)[k] / np.sqrt(np.outer(np.diag(g), np.diag(g)))[k]).max() < bound
    block = lower[k]
    assert np.abs(inverse[k] @ block - np.eye(len(block))).max() < bound * np.linalg.cond(block)
    if kept.all():  # the same factor as column by column, to rounding
        plain = np.asarray(jax.jit(lambda a: linalg.cholesky(a, tolerance))(g), np.float64)
        np.testing.assert_allclose(lower, plain, atol=bound * np.abs(plain).max())


def test_a_rank_deficient_gram_gives_zero_columns_not_nan():
    x = np.random.default_rng(2).standard_normal((6, 3)).astype(np.float32)
    g = x @ x.T  # rank 3 of 6
    factor = np.asarray(jax.jit(linalg.cholesky)(jnp.asarray(g)))
    assert np.isfinite(factor).all()
    np.testing.assert_allclose(factor @ factor.T, g, atol=1e-4)


FACTORISATIONS = """
import sys, jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from sweep.model import linalg, streams

width, batch, networks = 256, 128, 64
def one(x):  # the sampler's shape: the Gram of a batch of inputs, its factor, a solve
    gram = jnp.matmul(x, x.T, precision="highest")
    factor = linalg.cholesky(gram)
    _, inverse = linalg.cholesky_inverse(gram, 4 * 2.0**-24)  # blocked: three levels of halving
    solved = linalg.solve_lower(factor, x) + jnp.matmul(inverse, x, precision="highest")
    return solved, jax.vmap(streams.raw_weights, in_axes=(0, None, None))(
        jax.random.split(jax.random.key(0), 2), (24, 12), "orthogonal")
mesh = jax.make_mesh((jax.device_count(),), ("d",), axis_types=(jax.sharding.AxisType.Explicit,))
f = jax.jit(jax.shard_map(jax.vmap(one), mesh=mesh, in_specs=P("d"), out_specs=P("d")))
x = jax.device_put(np.random.default_rng(0).standard_normal((networks, batch, width), np.float32),
                   NamedSharding(mesh, P("d")))
for _ in range(3):
    solved, q = jax.block_until_ready(f(x))
np.save(sys.argv[1], np.asarray(solved))
"""


def test_vmapped_factorisations_of_the_samplers_shape_finish_on_one_and_eight_devices(tmp_path):
    results = []
    for devices in (1, 8):
        out = tmp_path / f"solved-{devices}.npy"
        done = run_python(FACTORISATIONS, out, devices=devices)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(np.load(out))
    np.testing.assert_array_equal(results[0], results[1])


# Every class of the registries: homogeneous, smooth and kinked activations; normal, uniform,
# truncated and orthogonal inits; constant, alternating and tapering widths; the Jacobian on
# and off; independent draws and scaled copies. One group each, wide enough that a
# group spans several micro-batches and every device computes networks of its own.
def _one(activation, init, profile, depth, width, bias_std=(0.0, 0.1), **top):
    grid = dict(activation=[activation], init=[init], profile=[profile], depth=[depth], width=[width],
                gain=[1.0, 1.5], bias_std=list(bias_std))
    return dict(batch=64, seeds=8, grid=grid, **top)


REGISTRY_SPECS = {
    "relu-orthogonal-taper": _one("relu", "orthogonal", "taper", 6, 256, jacobian=True),
    "tanh-normal-constant": _one("tanh", "fan_in", "constant", 5, 256, jacobian=True),
    "gelu-uniform-alternating": _one("gelu", "fan_out_uniform", "alternating", 4, 128),
    "selu-truncated-alternating": _one("selu", "fan_avg_truncated", "alternating", 4, 128, jacobian=True),
    "leaky-orthogonal-scaled-copies": _one("leaky_relu(0.2)", "orthogonal", "alternating", 4, 128, bias_std=(0.0,),
                                           jacobian=True, common_random_numbers=True),
}

RUN_SPECS = """
import json, sys
import sweep
specs, folder = json.loads(sys.argv[1]), sys.argv[2]
for name, raw in specs.items():
    sweep.run(sweep.Spec.from_dict({"name": name, **raw}), out=f"{folder}/{name}.zarr", progress=False,
              with_theory=False, memory=sys.argv[3])
"""


@pytest.mark.slow
def test_every_registry_family_runs_on_one_two_and_eight_devices_bit_identically(tmp_path):
    import json

    folders = {}
    for devices in (1, 2, 8):
        folders[devices] = tmp_path / f"devices-{devices}"
        done = run_python(RUN_SPECS, json.dumps(REGISTRY_SPECS), folders[devices], f"{70 * devices}MB", devices=devices)
        assert done.returncode == 0, done.stderr[-3000:]
    for name in REGISTRY_SPECS:
        one = sweep.load(folders[1] / f"{name}.zarr")
        assert one.attrs["device_kind"].endswith("x1")
        for devices in (2, 8):
            other = sweep.load(folders[devices] / f"{name}.zarr")
            assert other.attrs["device_kind"].endswith(f"x{devices}")
            for variable in one.data_vars:
                np.testing.assert_array_equal(other[variable].values, one[variable].values,
                                              err_msg=f"{name} {variable} on {devices} devices")
    largest = sweep.load(folders[8] / "relu-orthogonal-taper.zarr").jacobian_singular_values.sel(singular_value=1)
    assert largest.notnull().all()


STALL_SPEC = """
name = "stall"
seeds = 8
batch = 8
[grid]
activation = ["relu"]
depth = [3, 4]
width = [8]
gain = [1.0, 1.5]
"""


@pytest.mark.slow
@pytest.mark.serial
def test_a_stalled_kernel_call_stops_the_run_with_one_line_and_keeps_what_it_stored(tmp_path):
    spec_file = tmp_path / "stall.toml"
    spec_file.write_text(STALL_SPEC)
    out = tmp_path / "stall.zarr"
    command = [sys.executable, "-m", "sweep", "run", str(spec_file), "--out", str(out), "--no-progress",
               "--no-theory", "--chunk-networks", "4"]
    # One call per depth: the second (depth 4) never returns; the first's tiles are stored.
    env = {**os.environ, "SWEEP_TEST_STALL_CALL": "1"}
    stalled = subprocess.run(command + ["--stall-timeout", "10"], env=env, capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert stalled.returncode == 3
    lines = stalled.stderr.strip().splitlines()
    assert len(lines) == 1, stalled.stderr
    assert lines[0].startswith("sweep: error: a kernel call of activation=relu")
    assert "depth=4" in lines[0] and "made no progress for 10 s" in lines[0] and "deadlock" in lines[0]
    assert "4 of 8 tiles are stored in" in lines[0] and "--resume" in lines[0]
    partial = store.partial_path(out)
    stored = checkpoint.done(partial, 8)
    assert stored == {0, 1, 2, 3} and not out.exists()

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    logs = checkpoint.read_logs(out)
    recomputed = {e["tile"] for e in logs[-1] if e.get("event") == "stored"}
    assert recomputed == {4, 5, 6, 7}  # the tiles stored before the stall are not computed again
    fresh = sweep.run(sweep.Spec.from_toml(spec_file), chunk_networks=4, progress=False, with_theory=False)
    result = sweep.load(out)
    for variable in fresh.data_vars:
        np.testing.assert_array_equal(result[variable].values, fresh[variable].values, err_msg=variable)


def test_the_watchdogs_limit_is_generous_and_grows_with_the_work():
    from sweep.engine import watchdog

    dog = watchdog.Watchdog()
    assert dog.limit(0, first_of_program=False) == watchdog.MINIMUM_SECONDS
    assert dog.limit(0, first_of_program=True) == watchdog.MINIMUM_SECONDS + watchdog.COMPILE_SECONDS
    big = 1e3 * watchdog.ESTIMATE_FLOPS_PER_SECOND
    assert dog.limit(big, first_of_program=False) == 1e4
    assert watchdog.Watchdog(stall_timeout=7).limit(big, first_of_program=True) == 7
