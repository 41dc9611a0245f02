"""Paper figures from stored datasets; every function selects by coordinate label.

Each returns a matplotlib figure; ``save`` writes it as vector PDF and PNG.
"""

from sweep.plots.coord_check import coord_check
from sweep.plots.phase import gradient_growth, phase_diagram
from sweep.plots.signals import backward, forward, gradient_levels, per_layer, weight_gradients
from sweep.plots.spectra import jacobian_figure
from sweep.plots.spread import log_norm_spread, spread_figure
from sweep.plots.style import figure, save, style
from sweep.plots.training import family_training, first_step, init_outcome, loss_curves, trainability

__all__ = ["backward", "coord_check", "family_training", "figure", "first_step", "forward", "gradient_growth",
           "gradient_levels", "init_outcome", "jacobian_figure", "log_norm_spread", "loss_curves", "per_layer",
           "phase_diagram", "save", "spread_figure", "style", "trainability", "weight_gradients"]
