"""What the statistics kernel measures besides the network itself."""

from __future__ import annotations

from typing import NamedTuple


class Probe(NamedTuple):
    """What is measured, besides the network itself: static, part of the compile key.

    Attributes:
      batch: inputs per network.
      loss: ``"mse"`` or ``"projection"``.
      outputs: readout dimension of ``"mse"``.
      precision: ``"highest"`` or ``"default"``.
      jacobian: also compute the input-output Jacobian's singular values.
      gains_per_draw: networks that share one draw of random numbers (weights, biases,
        inputs, readout and targets) and differ only in their gain: 1 for independent draws,
        the number of gains for common random numbers across gains.
      scaled_copies: every bias std is 0, every gain positive, and the spec asks for scaled
        copies: with common random numbers and a positively homogeneous activation, the
        networks of a draw are then run as scaled copies of one
        (``sweep.kernel.scaled_copies``).
      jacobian_on_host: with ``jacobian``, the kernel returns the Jacobian and the host takes
        its singular values (for CPUs, where jaxlib's SVD inside a program can deadlock XLA's
        thread pool; see ``sweep.model.linalg``); else the kernel returns them.
      sampler: ``"direct"`` (every weight drawn) or ``"conditional"``: Gaussian dense layers
        with more inputs than the batch are sampled from their conditional law
        (``sweep.model.conditional``); with ``jacobian``, which needs the matrices, every
        layer is drawn.
    """

    batch: int
    loss: str
    outputs: int
    precision: str
    jacobian: bool
    gains_per_draw: int = 1
    scaled_copies: bool = False
    jacobian_on_host: bool = False
    sampler: str = "direct"

    @property
    def conditional_batch(self) -> int | None:
        """The batch at which ``network.draw_params`` makes layers conditional, or ``None``."""
        return self.batch if self.sampler == "conditional" and not self.jacobian else None

    def runs_scaled_copies(self, arch) -> bool:
        """Whether the networks of a draw of ``arch`` run as scaled copies of one."""
        return self.gains_per_draw > 1 and self.scaled_copies and arch.homogeneous

    @property
    def lax_precision(self):
        """The ``jax.lax.Precision`` of ``precision``."""
        import jax

        return jax.lax.Precision.HIGHEST if self.precision == "highest" else jax.lax.Precision.DEFAULT
