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
statistics kernel's ``"mse"`` readout), or zero (``readout_init = "zero"``), and zero bias;
it is trained with the rest.

A parametrisation (``sweep.config.parametrizations``) other than the standard one changes
three things, per trained tensor, relative to the architecture at the base width: the
effective weights a·ω start at ``init`` times the standard draw (ω = that draw · init / a),
the forward pass multiplies ω by a, and the optimizer's step of ω is scaled
(``Network.scaling``). The standard parametrisation computes exactly what it always has.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sweep.config import parametrizations
from sweep.model import layers, network, streams
from sweep.model.network import Architecture

PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "default": jax.lax.Precision.DEFAULT}

@jax.tree_util.register_pytree_node_class
class Repeats:
    """A stacked parameter of ``hidden`` cut into its repeats, one array each (``unstack``)."""

    def __init__(self, parts):
        self.parts = tuple(parts)

    def tree_flatten(self):
        return self.parts, None

    @classmethod
    def tree_unflatten(cls, _, parts):
        return cls(parts)


def _hidden(path) -> bool:
    return any(getattr(key, "key", None) == "hidden" for key in path)


def unstack(tree, axis: int = 0):
    """``tree`` with every array under a ``hidden`` key (``network.draw_params``' layers, stacked over
    a segment's repeats along ``axis``) cut into ``Repeats``: parameters, optimizer states and
    factors alike. Each layer is then an array of its own, which a step updates in place."""
    cut = lambda path, a: Repeats(jnp.take(a, r, axis=axis) for r in range(a.shape[axis])) if _hidden(path) else a
    return jax.tree_util.tree_map_with_path(cut, tree)


def restack(tree, axis: int = 0):
    """The inverse of ``unstack``."""
    join = lambda leaf: jnp.stack(leaf.parts, axis=axis) if isinstance(leaf, Repeats) else leaf
    return jax.tree.map(join, tree, is_leaf=lambda leaf: isinstance(leaf, Repeats))


class Scaling(NamedTuple):
    """A parametrisation's factors, each a pytree shaped like the parameters (leaves broadcast).

    Attributes:
      init: the effective weights' standard deviation relative to the standard draw.
      multiplier: a, the forward multiplier of each tensor.
      learning_rate: the factor on each tensor's optimizer step.
    """

    init: dict
    multiplier: dict
    learning_rate: dict


def _sizes(v: jax.Array) -> dict[str, jax.Array]:
    return {"abs_mean": jnp.mean(jnp.abs(v)), "rms": jnp.sqrt(jnp.mean(jnp.square(v)))}


class Network(nn.Module):
    """A network of the family with a trainable linear readout.

    Attributes:
      arch: the hidden layers' architecture.
      outputs: the readout's dimension (classes or regression targets).
      precision: ``"highest"`` or ``"default"`` matmuls.
      parametrization: ``sweep.config.parametrizations``' name.
      base: the architecture at the base width (any parametrisation but the standard one).
      optimizer: the optimizer whose learning-rate rules ``scaling`` gives.
      readout_init: ``"normal"`` or ``"zero"``.

    Parameters (``variables["params"]``): ``hidden``, the pytree of ``network.draw_params``;
    for residual networks ``input_map``, ``{"kernel": arch.input_map_shape(features)}``; ``readout``,
    ``{"kernel": (n, outputs), "bias": (outputs,)}``, n = ``arch.readout_width``. Build them
    with ``draw``: ``Network.init`` works too, but draws from a key that flax derives, so its
    networks are not those of the sweep.
    """

    arch: Architecture
    outputs: int
    precision: str = "highest"
    parametrization: str = "standard"
    base: Architecture | None = None
    optimizer: str = "sgd"
    readout_init: str = "normal"

    @property
    def standard(self) -> bool:
        return self.parametrization == "standard"

    @nn.compact
    def __call__(self, x: jax.Array, coordinates: bool = False, unroll: bool = False):
        """The network's outputs.

        Args:
          x: inputs, ``(batch, features)``.
          coordinates: also return the coordinate check's sizes.
          unroll: run the layers as straight-line code, not a loop over repeated layers
            (``network.apply``): the same values, faster for a training step on a CPU.

        Returns:
          Logits or predictions, ``(batch, outputs)``. With ``coordinates``, ``(outputs,
          sizes)``: ``preact_abs_mean``, ``preact_rms``, ``act_abs_mean`` and ``act_rms``, each
          ``(L,)`` (mean |z_l|, √(mean z_l²), mean |x_l|, √(mean x_l²) over the batch, units
          and positions of each hidden layer), and ``output_abs_mean``, ``output_rms``, scalars,
          of the outputs: the ``coord_*`` variables of ``sweep.io.schema``.
        """
        precision = PRECISIONS[self.precision]
        scaling = None if self.standard else self.scaling()
        if self.arch.conv is not None:
            x = x.reshape(x.shape[:1] + self.arch.conv.spatial + (1,))
        if self.arch.is_residual:
            shape = self.arch.input_map_shape(x.shape[-1])
            kernel = self.param("input_map", lambda key: {"kernel": streams.input_map(key, shape)})["kernel"]
            if scaling is not None:
                kernel = kernel * scaling.multiplier["input_map"]["kernel"]
            x = layers.linear(x, kernel, precision)
        hidden = self.param("hidden", lambda key: network.draw_params(key, self.arch, 1.0, 0.0))
        if scaling is not None:
            hidden = jax.tree.map(jnp.multiply, hidden, scaling.multiplier["hidden"])
        observe = None
        if coordinates:
            def observe(z, x):
                return {f"preact_{k}": v for k, v in _sizes(z).items()} | {f"act_{k}": v for k, v in _sizes(x).items()}
        last = network.apply(hidden, self.arch, x, precision, observe, unroll)
        last, sizes = last if coordinates else (last, None)
        h = network.pooled(last)
        if scaling is not None:
            # (a·h) ω + b = h (a·ω) + b: the readout's multiplier on what it reads
            h = h * scaling.multiplier["readout"]["kernel"]
        y = nn.Dense(self.outputs, name="readout", precision=precision)(h)
        if not coordinates:
            return y
        return y, sizes | {f"output_{k}": v for k, v in _sizes(y).items()}

    def scaling(self) -> Scaling:
        """The parametrisation's factors of every trained tensor, shaped like the parameters.

        Each weight layer's width multipliers are its fans over those of the same layer at the
        base width (``base``); the first weight layer (or a residual network's input map) is
        the ``input`` tensor, the readout the ``readout``, every other weight layer ``hidden``.
        """
        arch, base = self.arch, self.base if self.base is not None else self.arch
        rule = lambda role, m_in, m_out: parametrizations.rule(self.parametrization, role, m_in, m_out, self.optimizer)
        weights, biases = zip(*parametrizations.weight_rules(self.parametrization, arch.weight_shapes,
                                                             base.weight_shapes, self.optimizer,
                                                             reads_data=not arch.is_residual))
        readout = rule("readout", arch.readout_width / base.readout_width, 1.0)
        readout_bias = rule("bias", 1.0, 1.0)
        input_map = rule("input", 1.0, arch.widths[0] / base.widths[0])

        def tree(field):
            value = lambda r: np.float32(getattr(r, field))
            out = {"hidden": network.per_layer(arch, [value(r) for r in weights], [value(r) for r in biases]),
                   "readout": {"kernel": value(readout), "bias": value(readout_bias)}}
            if arch.is_residual:
                out["input_map"] = {"kernel": value(input_map)}
            return out

        return Scaling(tree("init"), tree("multiplier"), tree("learning_rate"))

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
          ``"input_map": {"kernel": streams.input_map(key, arch.input_map_shape(features))}``;
          scaled by the parametrisation as the module's docstring says.
        """
        kernel = streams.readout(key, self.arch.readout_width, self.outputs)
        if self.readout_init == "zero":
            kernel = jnp.zeros_like(kernel)
        params = {
            "hidden": network.draw_params(key, self.arch, gain, bias_std),
            "readout": {"kernel": kernel, "bias": jnp.zeros((self.outputs,), kernel.dtype)},
        }
        if self.arch.is_residual:
            if features is None:
                raise ValueError("a residual network's input map needs the dataset's number of features")
            params["input_map"] = {"kernel": streams.input_map(key, self.arch.input_map_shape(features))}
        if not self.standard:
            # ω = (standard draw) · init / a, so that the effective a·ω starts at init times the draw
            scaling = self.scaling()
            params = jax.tree.map(lambda w, init, a: w * (init / a), params, scaling.init, scaling.multiplier)
        return {"params": params}
