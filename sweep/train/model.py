"""The trained network: the family of ``sweep.network`` plus a linear readout, as a flax module.

The hidden layers are not redefined here: their parameters are ``network.draw_params``'s
pytree and their forward pass is ``network.apply``, so a trained network starts as exactly
the network the statistics kernel draws for the same key, gain and bias std.

The input layer reads the dataset's features (``sweep.plan.architecture``). The readout
``Dense(n_L -> outputs)`` starts with weights N(0, 1/n_L), ``sweep.model.streams.readout``
(the draw of the statistics kernel's ``"mse"`` readout), and zero bias; it is trained with
the hidden layers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sweep.model import network, streams
from sweep.model.network import Architecture

PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "default": jax.lax.Precision.DEFAULT}


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
          key: the network's key, ``streams.network_key(rng_seed, index)``.
          gain: σ_w, a scalar.
          bias_std: σ_b, a scalar.

        Returns:
          ``{"params": {"hidden": network.draw_params(key, arch, gain, bias_std),
          "readout": {"kernel": (n_L, outputs), "bias": (outputs,)}}}``.
        """
        kernel = streams.readout(key, self.arch.widths[-1], self.outputs)
        return {
            "params": {
                "hidden": network.draw_params(key, self.arch, gain, bias_std),
                "readout": {"kernel": kernel, "bias": jnp.zeros((self.outputs,), kernel.dtype)},
            }
        }
