"""The trained network: the family of ``sweep.model.network`` plus a linear readout, as a flax module.

The hidden layers are not redefined here: their parameters are ``network.draw_params``'s
pytree and their forward pass is ``network.apply``, so a trained network starts as exactly
the network the statistics kernel draws for the same key, gain and bias std.

What the first layer reads is the dataset's (``sweep.plan.architecture``): a dense net its
features; a conv net the features as an image of one channel (``TrainSpec.spatial``). A
residual network's stream x_0 is an input map of the data (a dense layer, or a conv of the
blocks' kernel size, from one channel), ``streams.input_map``, without bias, trained with
the blocks. The readout ``Dense(n -> outputs)`` reads the last layer (a conv net's averaged
over positions), starts with weights N(0, 1/n), ``streams.readout`` (the draw of the
statistics kernel's ``"mse"`` readout), and zero bias; it is trained with the rest.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sweep.model import layers, network, streams
from sweep.model.network import Architecture

PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "default": jax.lax.Precision.DEFAULT}


class Network(nn.Module):
    """A network of the family with a trainable linear readout.

    Attributes:
      arch: the hidden layers' architecture.
      outputs: the readout's dimension (classes or regression targets).
      precision: ``"highest"`` or ``"default"`` matmuls.

    Parameters (``variables["params"]``): ``hidden``, the pytree of ``network.draw_params``;
    for residual networks ``input_map``, ``{"kernel": arch.input_map_shape(features)}``; ``readout``,
    ``{"kernel": (n, outputs), "bias": (outputs,)}``, n = ``arch.readout_width``. Build them
    with ``draw``: ``Network.init`` works too, but draws from a key that flax derives, so its
    networks are not those of the sweep.
    """

    arch: Architecture
    outputs: int
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """The network's outputs.

        Args:
          x: inputs, ``(batch, features)``.

        Returns:
          Logits or predictions, ``(batch, outputs)``.
        """
        precision = PRECISIONS[self.precision]
        if self.arch.conv is not None:
            x = x.reshape(x.shape[:1] + self.arch.conv.spatial + (1,))
        if self.arch.is_residual:
            shape = self.arch.input_map_shape(x.shape[-1])
            kernel = self.param("input_map", lambda key: {"kernel": streams.input_map(key, shape)})["kernel"]
            x = layers.linear(x, kernel, precision)
        hidden = self.param("hidden", lambda key: network.draw_params(key, self.arch, 1.0, 0.0))
        h = network.pooled(network.apply(hidden, self.arch, x, precision))
        return nn.Dense(self.outputs, name="readout", precision=precision)(h)

    def draw(self, key: jax.Array, gain, bias_std, features: int | None = None) -> dict:
        """The initial variables of the network with key ``key``.

        Args:
          key: the network's key, ``streams.network_key(rng_seed, index)``.
          gain: σ_w, a scalar.
          bias_std: σ_b, a scalar.
          features: the dataset's number of features (read by a residual network's input map).

        Returns:
          ``{"params": {"hidden": network.draw_params(key, arch, gain, bias_std),
          "readout": {"kernel": (n, outputs), "bias": (outputs,)}}}``, and for residual networks
          ``"input_map": {"kernel": streams.input_map(key, arch.input_map_shape(features))}``.
        """
        kernel = streams.readout(key, self.arch.readout_width, self.outputs)
        params = {
            "hidden": network.draw_params(key, self.arch, gain, bias_std),
            "readout": {"kernel": kernel, "bias": jnp.zeros((self.outputs,), kernel.dtype)},
        }
        if self.arch.is_residual:
            if features is None:
                raise ValueError("a residual network's input map needs the dataset's number of features")
            params["input_map"] = {"kernel": streams.input_map(key, self.arch.input_map_shape(features))}
        return {"params": params}
