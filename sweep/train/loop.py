"""The training loop: many networks trained at once, many steps per device call.

Everything is written for one network and ``vmap``-ed over the networks of a chunk, which
differ in key, gain, bias std and learning rate; ``jit`` compiles once per ``Config`` (an
architecture and what is trained on it). A call of ``Trainer.train`` runs a block of steps
with ``lax.scan`` on device; only the per-step losses leave it.

Networks never mix: no value is reduced across the network axis.

Chunk-size independence. A network's numbers must not depend on how many networks share its
call (the memory budget sets that), yet XLA's code, and with it the rounding of reductions,
depends on the shapes it compiles. As in the statistics kernel, networks are therefore
``vmap``-ed in micro-batches whose size is fixed by the configuration alone
(``sweep.plan``), and a call runs its micro-batches one after another
with ``lax.map``: every network is always computed inside the same compiled shape. A
network whose loss is not finite (NaN or ±inf) is marked diverged and frozen: its
parameters and optimizer state stop changing, and its later losses and accuracies are
recorded as NaN; the losses that first were not finite are recorded as they were.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sweep.kernel.batching import in_micro_batches, micro_batched
from sweep.model import streams
from sweep.model.network import Architecture
from sweep.train.data import CLASSIFICATION
from sweep.train.model import Network, restack, unstack


class Config(NamedTuple):
    """What ``jit`` compiles for: static.

    Attributes:
      arch: the hidden layers.
      outputs: classes or regression targets.
      task: ``"classification"`` or ``"regression"``.
      optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"``.
      precision: ``"highest"`` or ``"default"``.
      features: the dataset's number of features (a residual network's input map reads them).
      sharpness_iterations: power-iteration steps of ``Trainer.first_step``'s sharpness.
      parametrization: ``sweep.config.parametrizations``' name.
      base: the architecture at the base width (any parametrisation but the standard one).
      readout_init: ``"normal"`` or ``"zero"``.
    """

    arch: Architecture
    outputs: int
    task: str
    optimizer: str
    precision: str
    features: int | None = None
    sharpness_iterations: int = 0
    parametrization: str = "standard"
    base: Architecture | None = None
    readout_init: str = "normal"

    @property
    def module(self) -> Network:
        return Network(self.arch, self.outputs, self.precision, self.parametrization, self.base, self.optimizer,
                       self.readout_init)

    def transform(self, learning_rate, layers: bool = False) -> optax.GradientTransformation:
        """The optimizer at ``learning_rate``, each tensor's step scaled as the parametrisation says;
        ``layers``: for parameters whose hidden layers are cut into repeats (``model.unstack``)."""
        tx = optimizer(self.optimizer, learning_rate)
        if self.parametrization == "standard":
            return tx
        scales = self.module.scaling().learning_rate
        scales = unstack(scales) if layers else scales
        return optax.chain(tx, optax.stateless(lambda updates, params: jax.tree.map(jnp.multiply, updates, scales)))


class State(NamedTuple):
    """One network's training state (with a leading network axis when batched).

    Attributes:
      params: the module's parameters.
      opt_state: the optimizer's state.
      diverged: bool, a loss was not finite; the network is frozen.
      first_below: int32, the first step whose training loss was below the target, -1 if
        none yet.
    """

    params: Any
    opt_state: Any
    diverged: jax.Array
    first_below: jax.Array


def optimizer(name: str, learning_rate) -> optax.GradientTransformation:
    """The optax optimizer of a spec's ``optimizer``.

    Args:
      name: ``"sgd"``, ``"momentum"`` (heavy ball, 0.9) or ``"adam"`` (optax defaults).
      learning_rate: a scalar; a traced per-network value under ``vmap``.

    Returns:
      The gradient transformation.
    """
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=0.9)
    if name == "adam":
        return optax.adam(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}")


def loss_terms(outputs: jax.Array, y: jax.Array, task: str) -> tuple[jax.Array, jax.Array]:
    """Per-example loss and correctness.

    Args:
      outputs: ``(m, k)`` logits or predictions.
      y: ``(m,)`` integer labels, or ``(m, k)`` targets.
      task: ``"classification"`` (softmax cross-entropy) or ``"regression"`` (half the
        squared error, summed over the k outputs).

    Returns:
      ``(loss, correct)``, each ``(m,)``; ``correct`` is 1.0 where the arg-max is the label
      (0.0 throughout for regression).
    """
    if task == CLASSIFICATION:
        loss = optax.softmax_cross_entropy_with_integer_labels(outputs, y)
        return loss, (jnp.argmax(outputs, axis=-1) == y).astype(outputs.dtype)
    loss = 0.5 * jnp.sum(jnp.square(outputs - y), axis=-1)
    return loss, jnp.zeros_like(loss)


def _tree_dot(a, b) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _freeze(frozen: jax.Array, old, new):
    return jax.tree.map(lambda o, n: jnp.where(frozen, o, n), old, new)


class Trainer(NamedTuple):
    """The compiled functions of one ``Config``; each works on a chunk of C networks, C a
    multiple of the micro-batch.

    Attributes:
      init: ``init(rng_seed, indices, gains, bias_stds) -> State``: network i drawn by
        ``Network.draw(network_key(rng_seed, indices[i]), gains[i], bias_stds[i])``; inputs
        ``(C,)`` (``indices`` uint32, the others float32).
      train: ``train(state, learning_rates, x_train, y_train, batches, step0, target) ->
        (state, losses)``: ``learning_rates`` ``(C,)``; ``batches`` ``(S, batch)`` int32 rows
        of the training set, one row per step, the same for every network; ``step0`` the
        global number of the first step; ``target`` the loss ``first_below`` looks for;
        ``losses`` ``(C, S)``, the mini-batch loss at each step before its update.
      evaluate: ``evaluate(state, x, y, mask, first, count) -> (state, loss, accuracy)``:
        the mean loss and accuracy ``(C,)`` over slices ``first .. first + count - 1`` of
        ``x`` ``(P, m, n_0)``, ``y`` ``(P, m[, k])`` and ``mask`` ``(P, m)``, counting the
        examples where ``mask`` is 1 (see ``sweep.train.schedule.eval_set``); a non-finite
        loss marks a network diverged.
      first_step: ``first_step(state, learning_rates, x_train, y_train, rows) -> dict`` of
        ``(C,)`` arrays: on the mini-batch ``rows`` ``(batch,)`` of step 0, with g = ∇C and H
        the Hessian of its mean loss C at the initial parameters, ``grad_sqnorm`` ‖g‖²,
        ``curvature`` gᵀHg / ‖g‖², ``sharpness`` H's largest eigenvalue λ_max by
        ``Config.sharpness_iterations`` power-iteration steps from g (half on H, half on H
        shifted by the magnitude the first half found), and ``loss_change``
        C(θ₁) − C(θ₀) on the same mini-batch, θ₁ the optimizer's first update. It leaves
        ``state`` as it was.
      coordinates: ``coordinates(state, x) -> dict`` of the coordinate check on the fixed
        batch ``x`` ``(batch, features)``: ``Network.__call__``'s sizes with a leading ``(C,)``
        axis; NaN for a diverged network.
    """

    init: Any
    train: Any
    evaluate: Any
    first_step: Any
    coordinates: Any


@functools.cache
def make_trainer(config: Config, micro_batch: int) -> Trainer:
    """Builds and ``jit``s the training functions of one configuration.

    Args:
      config: what is trained.
      micro_batch: networks ``vmap``-ed together (see the module's docstring).

    Returns:
      The ``Trainer``.
    """
    module = config.module

    def objective(params, x, y, unroll=False):
        return jnp.mean(loss_terms(module.apply({"params": params}, x, unroll=unroll), y, config.task)[0])

    def init_one(rng_seed, index, gain, bias_std):
        params = module.draw(streams.network_key(rng_seed, index), gain, bias_std, config.features)["params"]
        opt_state = config.transform(1.0).init(params)
        return State(params, opt_state, jnp.bool_(False), jnp.int32(-1))

    def step_one(state, learning_rate, x, y, t, target):
        # One network's step; its hidden layers' parameters (and optimizer state) are cut into
        # one array per layer (``unstack``), so that the step updates each in place, and its
        # layers run unrolled: both on a CPU make a step at depth 4, width 32 about 1.5x faster
        # (scripts/bench_train.py), with the same numbers.
        tx = config.transform(learning_rate, layers=True)
        loss, grads = jax.value_and_grad(lambda params: objective(restack(params), x, y, unroll=True))(state.params)
        diverged = state.diverged | ~jnp.isfinite(loss)
        # optax's Adam raises its decay rates to an int32 step count, which JAX's strict
        # dtype promotion (the test session's) refuses; the update is the same either way.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        below = (state.first_below < 0) & (loss < target)
        new = State(
            _freeze(diverged, state.params, params),
            _freeze(diverged, state.opt_state, opt_state),
            diverged,
            jnp.where(below, t, state.first_below),
        )
        return new, jnp.where(state.diverged, jnp.nan, loss)

    def train_micro_batch(state, learning_rates, xs, ys, step0, target):
        # The scan over steps runs outside the networks' vmap: its carry then holds each layer of
        # the µ networks as one array, rather than each network's layers stacked.
        steps = step0 + jnp.arange(xs.shape[0], dtype=jnp.int32)
        step = jax.vmap(step_one, in_axes=(0, 0, None, None, None, None))
        state, losses = jax.lax.scan(lambda state, inputs: step(state, learning_rates, *inputs, target),
                                     unstack(state, axis=1), (xs, ys, steps))
        return restack(state, axis=1), losses.T

    train_calls = in_micro_batches(train_micro_batch, (0, 0, None, None, None, None), micro_batch)

    def train(state, learning_rates, x_train, y_train, batches, step0, target):
        # every network reads the same mini-batches: gathered once per call
        return train_calls(state, learning_rates, x_train[batches], y_train[batches], step0, target)

    def evaluate_one(state, x, y, mask, first, count):
        def part(p, total):
            loss, correct = loss_terms(module.apply({"params": state.params}, x[p]), y[p], config.task)
            return total[0] + jnp.sum(loss * mask[p]), total[1] + jnp.sum(correct * mask[p]), total[2] + jnp.sum(mask[p])

        zero = jnp.zeros((), jnp.float32)
        loss_sum, correct_sum, examples = jax.lax.fori_loop(first, first + count, part, (zero, zero, zero))
        loss, accuracy = loss_sum / examples, correct_sum / examples
        if config.task != CLASSIFICATION:
            accuracy = jnp.float32(jnp.nan)
        diverged = state.diverged | ~jnp.isfinite(loss)
        loss = jnp.where(state.diverged, jnp.nan, loss)
        accuracy = jnp.where(diverged, jnp.nan, accuracy)
        return state._replace(diverged=diverged), loss, accuracy

    def first_step_one(state, learning_rate, x_train, y_train, rows):
        # A pass of its own: step 0 of ``train`` is followed by the loss of the next
        # mini-batch, while the law ΔC₁ = −η‖g‖² + O(η²) is about the same mini-batch.
        def loss(params):
            return objective(params, x_train[rows], y_train[rows])

        def hvp(v):
            return jax.jvp(jax.grad(loss), (state.params,), (v,))[1]

        def normalised(v):
            return jax.tree.map(lambda x: x / jnp.sqrt(_tree_dot(v, v)), v)

        value, grads = jax.value_and_grad(loss)(state.params)
        grad_sqnorm = _tree_dot(grads, grads)
        # Power iteration finds the eigenvalue of largest magnitude, which may be negative;
        # shifted by it, H + |λ| I has λ_max + |λ| on top, so a second run finds λ_max.
        half = (config.sharpness_iterations + 1) // 2
        v = jax.lax.fori_loop(0, half, lambda _, v: normalised(hvp(v)), normalised(grads))
        shift = jnp.abs(_tree_dot(v, hvp(v)))
        shifted = lambda v: jax.tree.map(lambda h, x: h + shift * x, hvp(v), v)
        top = jax.lax.fori_loop(half, config.sharpness_iterations, lambda _, v: normalised(shifted(v)), v)
        tx = config.transform(learning_rate)
        with jax.numpy_dtype_promotion("standard"):
            updates, _ = tx.update(grads, state.opt_state, state.params)
        return {"grad_sqnorm": grad_sqnorm, "curvature": _tree_dot(grads, hvp(grads)) / grad_sqnorm,
                "sharpness": _tree_dot(top, hvp(top)),
                "loss_change": loss(optax.apply_updates(state.params, updates)) - value}

    def coordinates_one(state, x):
        sizes = module.apply({"params": state.params}, x, coordinates=True)[1]
        return jax.tree.map(lambda v: jnp.where(state.diverged, jnp.nan, v), sizes)

    return Trainer(
        init=jax.jit(micro_batched(init_one, (None, 0, 0, 0), micro_batch)),
        train=jax.jit(train, donate_argnums=0),
        evaluate=jax.jit(micro_batched(evaluate_one, (0, None, None, None, None, None), micro_batch), donate_argnums=0),
        first_step=jax.jit(micro_batched(first_step_one, (0, 0, None, None, None), micro_batch)),
        coordinates=jax.jit(micro_batched(coordinates_one, (0, None), micro_batch)),
    )
