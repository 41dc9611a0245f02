"""Many networks in one call, in micro-batches of a fixed size.

XLA's code, and with it the rounding of reductions, depends on the shapes it compiles. A
function of one network is therefore ``vmap``-ed over a micro-batch whose size does not
change with the number of networks in a call, and a call runs its micro-batches one after
another with ``lax.map``: every network is always computed inside the same compiled shape,
so its numbers do not depend on how many networks share the call. Both the statistics
kernel and the trainer are built this way.
"""

from __future__ import annotations

import jax


def micro_batched(fn, in_axes: tuple, micro_batch: int):
    """``vmap(fn, in_axes)`` over C networks, run as C / µ micro-batches of µ with ``lax.map``.

    Args:
      fn: the function of one network.
      in_axes: 0 for arguments with a leading network axis, ``None`` for shared ones.
      micro_batch: µ, networks ``vmap``-ed together.

    Returns:
      A function of the same arguments, each batched one with a leading axis C (a multiple
      of µ); its outputs have a leading axis C.
    """
    return in_micro_batches(jax.vmap(fn, in_axes=in_axes), in_axes, micro_batch)


def in_micro_batches(fn, in_axes: tuple, micro_batch: int):
    """``fn`` of µ networks at once over C networks, run as C / µ micro-batches with ``lax.map``.

    Args:
      fn: the function of a micro-batch: its batched arguments and outputs have a leading
        axis µ.
      in_axes: 0 for arguments with a leading network axis, ``None`` for shared ones.
      micro_batch: µ.

    Returns:
      As ``micro_batched``.
    """

    def run(*args):
        size = jax.tree.leaves([a for a, axis in zip(args, in_axes) if axis == 0])[0].shape[0]
        split = lambda a: a.reshape((size // micro_batch, micro_batch) + a.shape[1:])
        mapped = tuple(jax.tree.map(split, a) for a, axis in zip(args, in_axes) if axis == 0)

        def one_micro_batch(xs):
            xs = iter(xs)
            return fn(*(next(xs) if axis == 0 else a for a, axis in zip(args, in_axes)))

        out = jax.lax.map(one_micro_batch, mapped)
        return jax.tree.map(lambda a: a.reshape((size,) + a.shape[2:]), out)

    return run
