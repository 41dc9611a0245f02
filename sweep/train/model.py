"""The trained network: the family of ``sweep.network`` plus a linear readout, as a flax module.

The hidden layers are not redefined here: their parameters are ``network.draw_params``'s
pytree and their forward pass is ``network.apply``, so a trained network starts as exactly
the network the statistics kernel draws for the same key, gain and bias std.

Input dimension. A statistics network has n_0 = ``width``; a trained network reads the
dataset's features, so its ``Architecture`` has ``widths = (n_features,) + hidden widths``,
the hidden widths being the profile's for ``width`` and ``depth``. When
``n_features == width`` this is the statistics architecture itself; otherwise only layer 1's
shape differs, and since each layer is drawn from its own key, layers 2..L are still the
statistics network's.

The readout ``Dense(n_L -> outputs)`` starts with weights N(0, 1/n_L) drawn from the
network's ``READOUT_STREAM`` (the draw of the statistics kernel's ``"mse"`` readout) and zero
bias; it is trained with the hidden layers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sweep import network, profiles
from sweep.network import Architecture

PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "default": jax.lax.Precision.DEFAULT}


def architecture(activation: str, init: str, profile: str, depth: int, width: int, n_features: int) -> Architecture:
    """The architecture trained at one point of a grid.

    Args:
      activation, init, profile, depth, width: the grid point (``width`` is the base width).
      n_features: the dataset's input dimension, n_0.

    Returns:
      ``Architecture(activation, init, (n_features, n_1, ..., n_L))``; equal to
      ``Architecture.from_grid(...)`` when ``n_features == width``.
    """
    return Architecture(activation, init, (n_features,) + profiles.widths(profile, width, depth)[1:])


class Network(nn.Module):
    """A network of the family with a trainable linear readout.

    Attributes:
      arch: the hidden layers' architecture.
      outputs: the readout's dimension (classes or regression targets).
      precision: ``"highest"`` or ``"default"`` matmuls.

    Parameters (``variables["params"]``): ``hidden``, the pytree of ``network.draw_params``;
    ``readout``, ``{"kernel": (n_L, outputs), "bias": (outputs,)}``. Build them with
    ``draw``: ``Network.init`` works too, but draws from a key that flax derives, so its
    networks are not those of the sweep.
    """

    arch: Architecture
    outputs: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """The network's outputs.

        Args:
          x: inputs, ``(batch, n_0)``.

        Returns:
          Logits or predictions, ``(batch, outputs)``.
        """
        hidden = self.param("hidden", lambda key: network.draw_params(key, self.arch, 1.0, 0.0))
        h = network.apply(hidden, self.arch, x, PRECISIONS[self.precision])
        return nn.Dense(self.outputs, name="readout", precision=PRECISIONS[self.precision])(h)

    def draw(self, key: jax.Array, gain, bias_std) -> dict:
        """The initial variables of the network with key ``key``.

        Args:
          key: the network's key, ``network.network_key(rng_seed, index)``.
          gain: σ_w, a scalar.
          bias_std: σ_b, a scalar.

        Returns:
          ``{"params": {"hidden": network.draw_params(key, arch, gain, bias_std),
          "readout": {"kernel": (n_L, outputs), "bias": (outputs,)}}}``.
        """
        n_last = self.arch.widths[-1]
        readout_key = jax.random.fold_in(key, network.READOUT_STREAM)
        kernel = jax.random.normal(readout_key, (n_last, self.outputs)) / np.sqrt(n_last)
        return {
            "params": {
                "hidden": network.draw_params(key, self.arch, gain, bias_std),
                "readout": {"kernel": kernel, "bias": jnp.zeros((self.outputs,), kernel.dtype)},
            }
        }
