"""Theory beside the measurements: mean-field and exact finite-width predictions.

* ``gaussian``: Gaussian expectations by graded composite Gauss–Legendre quadrature.
* ``moments``: Gaussian moments of an activation and its autodiff derivative.
* ``meanfield``: length and correlation maps, fixed points, χ₁, depth scales, critical gain.
"""

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
from sweep.theory.compare import deviation
from sweep.theory.finite_width import (
    log_act_norm_moments,
    log_act_norm_moments_large_width,
    log_ratio_moments,
    sample_relu_norms,
)
from sweep.theory.predict import predict
