"""The conditional sampler gives every stored statistic the law it has with the weights drawn.

Laws are compared by two-sample Kolmogorov–Smirnov tests of every per-layer statistic and the
loss, between independent sweeps (different ``rng_seed``) with ``sampler = "direct"`` and
``"conditional"``, at a family-wise error rate of 1e-3 with a Bonferroni correction over every
statistic and layer. The same tests reject a sampler that leaves out the projection
(I − YᵀY) of the backward noise, so they have power.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sweep
from sweep.io.describe import describe
from sweep.kernel import devices
from sweep.kernel import stats as kernel_stats
from sweep.model import conditional, network, streams

ALPHA = 1e-3
U = 2.0**-24
_rng = np.random.default_rng(0)
_B, _N = 128, 1024
_common = np.outer(np.ones(_B), _rng.standard_normal(_N))
MATRICES = {
    # name: (rows, the largest ‖x − c y‖ / ‖x‖ allowed: float32 rounding, or the stated bound)
    "gaussian": (_rng.standard_normal((_B, _N)), 1e-5),
    "relu-like": (np.maximum(_rng.standard_normal((_B, _N)), 0), 1e-5),
    "common row + 1e-2": (_common + 1e-2 * _rng.standard_normal((_B, _N)), 1e-5),
    "common row + 1e-4": (_common + 1e-4 * _rng.standard_normal((_B, _N)), 1e-5),
    "common row + 1e-6": (_common + 1e-6 * _rng.standard_normal((_B, _N)), 1e-5),
    "repeated rows": (np.repeat(_rng.standard_normal((_B // 4, _N)), 4, axis=0), 1e-5),
    "six decades": (_rng.standard_normal((_B, _B)) @ (np.logspace(0, -6, _B)[:, None] * _rng.standard_normal((_B, _N))),
                    float(np.sqrt(2 * (conditional.TOLERANCE / U + _B + 1 + np.sqrt(_N)) * U))),
}
"""Rows of full rank are spanned to float32 rounding. Where directions are left out: each left-out
centred row's squared distance from the kept ones is its Cholesky pivot, at most ``TOLERANCE`` of
its square norm, plus the rounding of a B-step Cholesky factorisation ((B + 1)·u of it: Higham,
"Accuracy and Stability of Numerical Algorithms", 2nd ed., Thm 10.3) and of the Gram matrix's
length-n inner products (√n·u, their probabilistic bound: Higham & Mary 2019). Summed over the
rows, the centred rows C are spanned to ‖C − C YᵀY‖ / ‖C‖ ≤ √((TOLERANCE/u + B + 1 + √n)·u) =
3.1e-3 here. X's rows are C's plus the kept mean, but X's row 0 carries minus the sum of the
other rows' residuals, nearly orthogonal to each other: √2 times that bound for X. Measured: 1.05e-3
for X on an AMD EPYC host (72 of 128 directions kept), under 1e-3 on the earlier one."""


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_the_basis_is_orthonormal_and_spans_the_rows(name):
    x, bound = MATRICES[name]
    x = np.asarray(x, np.float32)
    rows, inverse, c, gram = (np.asarray(a, np.float64) for a in jax.jit(conditional.basis)(jnp.asarray(x)))
    x = x.astype(np.float64)
    y = inverse @ rows  # the basis, which the sampler never forms
    kept = np.linalg.norm(y, axis=1) > 0.5
    assert np.all(np.isfinite(y)) and np.all((np.linalg.norm(y, axis=1) < 1e-6) | kept)
    assert np.abs(y[kept] @ y[kept].T - np.eye(kept.sum())).max() < 16 * _B * U
    assert np.linalg.norm(x - c @ y) / np.linalg.norm(x) < bound
    centred = np.asarray(conditional._centred(x), np.float64)
    spanned = centred @ y[kept].T @ y[kept]
    assert np.linalg.norm(centred - spanned) / np.linalg.norm(centred) < bound / np.sqrt(2)
    assert np.abs(gram - x @ x.T).max() < 2 * bound * np.abs(x @ x.T).max()


def _collinear(batch, n, rng):
    """Rows that are multiples of one row plus 1e-6 of noise: the cotangents of a deep backward pass."""
    return np.outer(rng.standard_normal(batch), rng.standard_normal(n)) + 1e-6 * rng.standard_normal((batch, n))


@pytest.mark.parametrize("cotangents", ["independent", "nearly collinear"])
def test_a_layer_is_exact_in_law_given_its_inputs(cotangents):
    """Given X, the columns of X W are N(0, s² X Xᵀ): a moment test of the sampled products
    over many layer keys, against the exact covariance, and of Δ Wᵀ's covariance given Δ
    (that of Δ Wᵀ for independent W: s² Δ Δᵀ per column), for independent and for nearly
    collinear cotangents."""
    batch, n_in, n_out, draws, s = 8, 24, 12, 4000, 0.7
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    x[1] = x[0] + 1e-3 * x[1]  # nearly repeated rows
    delta = (rng.standard_normal((batch, n_out)) if cotangents == "independent"
             else _collinear(batch, n_out, rng)).astype(np.float32)

    def one(key):
        layer = conditional.ConditionalLayer(key, jnp.float32(s))
        z, residual = conditional.forward(jnp.asarray(x), layer, n_out, jax.lax.Precision.HIGHEST)
        return z, conditional.backward(jnp.asarray(delta), layer, residual, jax.lax.Precision.HIGHEST)

    keys = jax.vmap(lambda i: streams.layer_key(jax.random.key(3), i))(jnp.arange(draws))
    z, back = (np.asarray(a, np.float64) for a in jax.jit(jax.vmap(one))(keys))
    # Second moments entry by entry, each a mean over draws and columns with its standard error.
    tests = []
    for sample, exact in ((np.einsum("dbo,dco->dbc", z, z) / n_out, s**2 * x.astype(np.float64) @ x.T),
                          (np.einsum("dbi,dci->dbc", back, back) / n_in, s**2 * delta.astype(np.float64) @ delta.T)):
        mean, se = sample.mean(0), sample.std(0, ddof=1) / np.sqrt(draws)
        tests.append((mean, exact, se))
    threshold = stats.norm.isf(ALPHA / (2 * sum(t[0].size for t in tests)))
    for mean, exact, se in tests:
        assert np.all(np.abs(mean - exact) < threshold * se + 1e-6 * np.abs(exact).max())


def law_spec(sampler, rng_seed, seeds, activation="relu", init="fan_in", profile="constant", depth=6, width=64,
             batch=16, gain=1.4142135, bias_std=0.0, loss="mse", **extra):
    return sweep.Spec.from_dict({
        "name": "sampler-law", "seeds": seeds, "batch": batch, "rng_seed": rng_seed, "loss": loss,
        "sampler": sampler, **extra,
        "grid": {"activation": [activation], "init": [init], "profile": [profile], "depth": [depth],
                 "width": [width], "gain": [gain], "bias_std": [bias_std]}})


def ks_pvalues(a, b) -> dict:
    """Two-sample KS p-value of every statistic and layer of two one-point sweeps (per gain)."""
    out = {}
    for name, var in a.data_vars.items():
        if "seed" not in var.dims or name == "overflow" or var.dtype.kind != "f":
            continue
        x = var.squeeze(drop=True).transpose("seed", ...).values
        y = b[name].squeeze(drop=True).transpose("seed", ...).values
        x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
        for j in range(x.shape[1]):
            if np.all(np.isnan(x[:, j])) or np.ptp(x[:, j]) == 0 == np.ptp(y[:, j]):
                continue  # beyond the depth, or a constant (a first layer's zero dead fraction)
            out[name, j] = stats.ks_2samp(x[:, j], y[:, j]).pvalue
    return out


def assert_same_law(a, b):
    p = ks_pvalues(a, b)
    worst = min(p, key=p.get)
    assert p[worst] > ALPHA / len(p), (worst, p[worst], len(p))


def assert_different_law(a, b):
    p = ks_pvalues(a, b)
    assert min(p.values()) < ALPHA / len(p)


def without_projection(delta, layer, residual, precision, differences=None):
    """The wrong backward pass: Δ Gᵀ Y + F, its noise F not projected off Y's rows."""
    basis, g = residual
    y = jnp.matmul(basis.inverse, basis.rows, precision=precision)
    h = streams.conditional_backward(layer.key, delta.shape[-2], y.shape[-1])
    f = jnp.matmul(conditional._gram_root(conditional.differences_gram(delta)), h, precision=precision)
    return layer.scale * (jnp.matmul(jnp.matmul(delta, g.T, precision=precision), y, precision=precision) + f)


@pytest.fixture
def wrong_sampler(monkeypatch):
    """``without_projection`` in place of the backward pass, in kernels compiled afresh (and
    dropped again afterwards, so that no other test meets them). The executable store is off
    meanwhile: it keys a kernel by the package's source, which a patch leaves as it was, and
    would load the right sampler's executable."""
    def clear():
        kernel_stats.make_kernel.cache_clear()
        devices.make_kernel.cache_clear()

    clear()
    jax_cache = jax.config.jax_enable_compilation_cache
    monkeypatch.setenv("SWEEP_NO_CACHE", "1")
    monkeypatch.setattr(conditional, "backward", without_projection)
    yield
    jax.config.update("jax_enable_compilation_cache", jax_cache)
    clear()


@pytest.fixture(scope="module")
def small_law():
    seeds = 1024
    return (sweep.run(law_spec("direct", 1, seeds), progress=False),
            sweep.run(law_spec("conditional", 2, seeds), progress=False))


@pytest.mark.slow
def test_every_statistic_has_the_direct_law(small_law):
    assert_same_law(*small_law)


@pytest.mark.slow
def test_a_sampler_without_the_projection_is_rejected(small_law, wrong_sampler):
    wrong = sweep.run(law_spec("conditional", 2, 1024), progress=False)
    assert_different_law(small_law[0], wrong)


@pytest.mark.slow
@pytest.mark.parametrize("activation, bias_std, scaled", [("relu", 0.0, True), ("tanh", 0.1, False)])
def test_common_random_numbers_keep_each_gains_law(activation, bias_std, scaled):
    """With common random numbers (scaled copies for relu without biases, every gain's passes
    for tanh with biases), each gain's networks still have the direct law."""
    seeds, gains = 512, [0.9, 1.6]

    def spec(sampler, rng_seed, crn):
        raw = law_spec(sampler, rng_seed, seeds, activation=activation, bias_std=bias_std,
                       common_random_numbers=crn).to_dict()
        raw["grid"]["gain"] = gains
        return sweep.Spec.from_dict(raw)

    direct = sweep.run(spec("direct", 3, False), progress=False)
    shared = sweep.run(spec("conditional", 4, True), progress=False)
    for gain in gains:
        assert_same_law(direct.sel(gain=gain, drop=False), shared.sel(gain=gain, drop=False))


@pytest.mark.slow
def test_the_store_says_which_layers_ran_conditionally():
    spec = law_spec("conditional", 0, 2, profile="alternating", width=16, batch=20, depth=4)
    ds = sweep.run(spec, progress=False)
    # alternating widths 16, 16, 32, 16, 32: only layer 3 has more inputs than the batch of 20
    assert ds.attrs["sampler"] == "conditional"
    assert ds.attrs["sampler_layers"] == "batch 20; fan_in alternating 16: conditional 3, drawn 1-2,4"
    assert "  sampler  : conditional (batch 20; fan_in alternating 16: conditional 3, drawn 1-2,4)" in describe(ds)
    assert "sampler" not in sweep.run(law_spec("direct", 0, 2), progress=False).attrs


@pytest.mark.slow
@pytest.mark.parametrize("case", [
    dict(activation="relu", depth=30, width=256, batch=64),  # He, mse
    dict(activation="tanh", gain=0.8, bias_std=0.05, depth=50, width=256, batch=32),  # ordered phase
    dict(activation="gelu", gain=1.2, bias_std=0.1, profile="alternating", depth=20, width=128, batch=32),
    dict(activation="relu", init="fan_avg", profile="taper", depth=12, width=512, batch=32, loss="projection"),
], ids=["relu-he", "tanh-ordered", "gelu-alternating", "fan-avg-taper"])
def test_every_statistic_has_the_direct_law_in_the_issues_cases(case):
    seeds = 2048
    assert_same_law(sweep.run(law_spec("direct", 11, seeds, **case), progress=False),
                    sweep.run(law_spec("conditional", 12, seeds, **case), progress=False))


@pytest.mark.slow
def test_the_relu_he_case_rejects_a_sampler_without_the_projection(wrong_sampler):
    case = dict(activation="relu", depth=30, width=256, batch=64)
    direct = sweep.run(law_spec("direct", 11, 512, **case), progress=False)
    assert_different_law(direct, sweep.run(law_spec("conditional", 12, 512, **case), progress=False))


def _root_errors(key):
    """‖D (L Lᵀ − Δ Δᵀ) Dᵀ‖_max / max diag(D Δ Δᵀ Dᵀ) of ``_gram_root``'s L, D the map to the
    rows' differences (so that it is the error of the Cholesky factor of their Gram matrix), for
    the cotangents of every layer of a conditionally sampled tanh network in the ordered phase
    (σ_w = 0.8, σ_b = 0.05, depth 50)."""
    from sweep.kernel import passes
    from sweep.kernel.stats import draw_readout

    arch = network.Architecture.from_grid("tanh", "fan_in", "constant", 50, 256)
    program = arch.program()
    prefix = jax.tree.map(jnp.asarray, arch.prefix(program))
    probe = sweep.kernel.Probe(batch=32, loss="mse", outputs=10, precision="highest", jacobian=False,
                               sampler="conditional")
    hi = jax.lax.Precision.HIGHEST
    params = network.draw_params(key, program, 0.8, 0.05, prefix, probe.batch)
    fwd = passes.forward(params, program, network.inputs(key, program, probe.batch), hi, depth=prefix.depth)
    _, g = passes.loss_and_cotangent(fwd.x_last, draw_readout(key, probe, 256), hi)
    ((h, z, extra),) = fwd.residuals[0]
    ((w, _),) = params[0]
    g, errors = g.mantissa, []
    for l in reversed(range(50)):
        delta = (1 - jnp.tanh(z[l]) ** 2) * g
        delta = delta / jnp.sqrt(jnp.mean(jnp.square(delta)))
        root = conditional._gram_root(conditional.differences_gram(delta))
        root, d = (np.asarray(a, np.float64) for a in (root, delta))
        differences = lambda a: a - np.concatenate([np.zeros_like(a[:1]), np.broadcast_to(a[:1], a[1:].shape)])
        factor, d = differences(root), differences(d)
        errors.append(np.abs(factor @ factor.T - d @ d.T).max() / np.diag(d @ d.T).max())
        layer = conditional.ConditionalLayer(w.key[l], w.scale[l])
        g = conditional.backward(delta, layer, jax.tree.map(lambda a: a[l], extra), hi)
    return np.asarray(errors)


@pytest.mark.slow
def test_the_cotangents_covariance_root_holds_deep_in_an_ordered_backward_pass(monkeypatch):
    """Deep backward passes make the cotangents of a batch nearly dependent (one singular value
    10⁻⁵ to 10⁻⁷ of the largest here); the root of their Gram matrix must still reproduce it,
    to what leaving out a pivot p < τ g_kk allows: the Schur complement's column c of that
    pivot is left out, |c_i| ≤ √(p S_ii) < √τ √(g_kk g_ii) (τ = ``ROOT_TOLERANCE``).
    Without the pivot floor it is off by more than the Gram matrix itself (this network: 13×)."""
    key = streams.network_key(12, 19)
    assert _root_errors(key).max() < np.sqrt(conditional.ROOT_TOLERANCE)
    monkeypatch.setattr(conditional, "ROOT_TOLERANCE", 0.0)
    assert _root_errors(key).max() > 1e-2
