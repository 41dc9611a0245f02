"""Theory beside the measurements: mean-field and exact finite-width predictions.

    >>> from sweep import theory
    >>> theory.critical_gain("tanh", bias_std=0.05 ** 0.5) ** 2      # 1.7610
    >>> theory.depth_scales("tanh", 1.2, 0.05 ** 0.5)                 # (xi_q, xi_c)
    >>> pred = theory.predict(spec)                  # theory_<stat>, aligned with sweep.run(spec)
    >>> dev = theory.deviation(ds)                   # (mean − theory) / standard error

Modules, one purpose each:

* ``gaussian``: Gaussian expectations, one variable and correlated pairs, by composite
  Gauss–Legendre quadrature graded at kinks (why not Gauss–Hermite: see there).
* ``closed_forms``: relu, leaky relu and erf expectations in closed form (checks).
* ``moments``: Gaussian moments of an activation and its derivative (autodiff).
* ``meanfield``: length and correlation maps, q*, c*, χ₁, depth scales, critical gain.
* ``recursion``: per-layer forward and backward recursions with unequal widths, fans,
  readout and batch.
* ``predict``: ``predict(spec)``, the theory dataset.
* ``finite_width``: the exact law of relu networks' norms, its moments and samples.
* ``relu_gradients``: the exact finite-width law of (leaky) relu networks' gradients for one input:
  closed-form means, exact draws, the law of log grad_weight_meansq.
* ``relu_batch``: the batch-mean weight gradient at finite width, from the exact law of two inputs of
  one network (exact draws of their forward chain, the backward pass integrated given it).
* ``compare``: ``deviation(ds)``.
* ``precision``: float64 without flipping the global jax flag.
"""

from sweep.theory.compare import deviation
from sweep.theory.finite_width import (
    log_act_norm_moments,
    log_act_norm_moments_large_width,
    log_ratio_moments,
    sample_relu_norms,
)
from sweep.theory.meanfield import (
    DepthScales,
    MeanField,
    chi1,
    correlation_fixed_point,
    correlation_map,
    critical_gain,
    depth_scales,
    fixed_point,
    length_map,
    mean_field,
)
from sweep.theory.predict import one_input_weight_meansq, predict
from sweep.theory.relu_gradients import gradient_means, log_grad_weight_law, sample_gradients

__all__ = [
    "DepthScales", "MeanField", "chi1", "correlation_fixed_point", "correlation_map", "critical_gain",
    "depth_scales", "deviation", "fixed_point", "gradient_means", "length_map", "log_act_norm_moments",
    "log_act_norm_moments_large_width", "log_grad_weight_law", "log_ratio_moments", "mean_field",
    "one_input_weight_meansq", "predict",
    "sample_gradients", "sample_relu_norms",
]
