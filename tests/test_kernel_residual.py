"""Residual networks: the kernel measures exactly what plain autodiff of the same network gives."""

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import plain_statistics

import sweep
from sweep import kernel
from sweep.model import network, streams

slow = pytest.mark.slow
CASES = [  # activation, init, profile, conv, loss, bias std
    ("relu", "fan_in", "constant", None, "mse", 0.0),
    pytest.param("tanh", "fan_out", "alternating", None, "projection", 0.2, marks=slow),
    pytest.param("gelu", "fan_avg_uniform", "constant", None, "mse", 0.1, marks=slow),
    ("gelu", "fixup", "constant", network.Conv(3, (5,)), "mse", 0.1),
    pytest.param("relu", "fan_in", "alternating", network.Conv(3, (4, 4)), "projection", 0.3, marks=slow),
    pytest.param("tanh", "orthogonal", "constant", network.Conv(1, (4, 4)), "mse", 0.0, marks=slow),
]


def run(arch, probe, gains, bias_std, indices=(11, 12)):
    kern = kernel.architecture_kernel(arch, probe, len(indices))
    return kernel.finish(kern(jnp.uint32(5), jnp.asarray(indices, jnp.uint32), jnp.asarray(gains, jnp.float32),
                              jnp.full(len(indices), bias_std, jnp.float32)))


@pytest.mark.parametrize("activation, init, profile, conv, loss, bias_std", CASES)
def test_residual_kernel_equals_plain_autodiff(activation, init, profile, conv, loss, bias_std):
    arch = network.Architecture.from_grid(activation, init, profile, 3, 6, conv, residual=0.7)
    probe = kernel.Probe(batch=3, loss=loss, outputs=3, precision="highest", jacobian=False)
    gains = [0.9, 1.6]
    stats = run(arch, probe, gains, bias_std)
    for i, index in enumerate((11, 12)):
        expected, loss_value = plain_statistics(arch, probe, streams.network_key(5, index), gains[i], bias_std)
        for name, values in expected.items():
            np.testing.assert_allclose(stats[name][i], values, rtol=2e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(stats["loss"][i], loss_value, rtol=2e-5)
        assert not stats["overflow"][i].any()


def test_a_zero_branch_scale_is_the_identity_exactly():
    arch = network.Architecture.from_grid("relu", "fan_in", "constant", 4, 8, residual=0.0)
    stats = run(arch, kernel.Probe(4, "mse", 2, "highest", False), [1.4, 1.4], 0.3)
    x0 = np.asarray(network.inputs(streams.network_key(5, 11), arch, 4), np.float64)
    np.testing.assert_array_equal(stats["stream_meansq"][0], np.full(4, np.mean(np.float32(x0) ** 2, dtype=np.float32)))
    assert np.all(stats["grad_weight_meansq"] == 0) and np.all(stats["grad_preact_meansq"] == 0)
    assert np.all(stats["grad_stream_meansq"][0] == stats["grad_stream_meansq"][0, -1])  # the cotangent passes unchanged


def test_fixup_branches_output_their_bias_and_only_the_last_layer_learns_first():
    """Fixup: W_2 = 0, so z_2 = b_2, the first layer gets no gradient, the last x_{l-1}-weighted ones."""
    arch = network.Architecture.from_grid("relu", "fixup", "constant", 4, 8, residual=1.0)
    stats = run(arch, kernel.Probe(4, "mse", 2, "highest", False), [1.4, 1.4], 0.0)
    assert np.all(stats["preact_meansq"][..., 1] == 0)  # the branch outputs are zero
    assert np.all(stats["grad_preact_meansq"][..., 0] == 0) and np.all(stats["grad_weight_meansq"][..., 0] == 0)
    assert np.all(stats["grad_weight_meansq"][..., 1] > 0)
    np.testing.assert_array_equal(stats["stream_meansq"][:, 1:], stats["stream_meansq"][:, :-1])  # x_l = x_0


def test_relu_residual_homogeneity_holds_far_beyond_float32():
    """No bias, relu: each block is positively homogeneous in its input, so the stream is tracked
    in powers of two; at gain 30 it grows by about 1 + 30⁴/4 per block and passes 1e100 within 40
    blocks, far beyond float32, with every statistic finite and no layer marked."""
    arch = network.Architecture.from_grid("relu", "fan_in", "constant", 40, 8, residual=1.0)
    probe = kernel.Probe(batch=2, loss="projection", outputs=1, precision="highest", jacobian=False)
    stats = run(arch, probe, [1.0, 30.0], 0.0, indices=(3, 3))
    assert not stats["overflow"].any()
    assert stats["stream_meansq"][1, -1] > 1e100 and np.all(np.isfinite(stats["grad_weight_meansq"]))


def test_residual_specs_refuse_what_they_cannot_honour():
    for raw, field in [({"grid": {"branch_scale": [1.0]}}, "grid.branch_scale"),
                       ({"branch_depth_exponent": -0.5}, "branch_depth_exponent"),
                       ({"grid": {"init": ["fixup"]}}, "grid.init"),
                       ({"block": "dense"}, "block"),
                       ({"block": "residual", "grid": {"branch_scale": [-1.0]}}, "grid.branch_scale"),
                       ({"block": "residual", "branch_depth_exponent": "half"}, "branch_depth_exponent"),
                       ({"block": "residual", "common_random_numbers": True}, "common_random_numbers"),
                       ({"block": "residual", "jacobian": True}, "jacobian")]:
        with pytest.raises(sweep.SpecError) as info:
            sweep.Spec.from_dict(raw)
        assert info.value.field == field and "\n" not in str(info.value)
    spec = sweep.Spec.from_dict({"block": "residual", "branch_depth_exponent": -0.5, "grid": {"depth": [4, 16]}})
    assert spec.grid.branch_scale == (1.0,) and sweep.Spec.from_json(spec.to_json()) == spec
