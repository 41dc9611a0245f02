"""Matrix factorisations written in plain XLA operations, never jaxlib's CPU LAPACK calls.

Why. jaxlib's CPU LAPACK kernels (QR, Cholesky, triangular solve, SVD, eigh) split a
batch of matrices over XLA's intra-op thread pool with ``ParallelBatchMap`` and then block
the thread that runs them on a ``BlockingCounter`` until the pieces are done. That thread is
itself a worker of the same pool. When as many such calls start at once as the pool has
threads (two CPU devices running their programs at the same time on a 2-core machine, or
two independent LAPACK calls inside one program), every worker waits for pieces that no
free worker is left to run, and the process sits at 0% CPU for ever. Native stacks of a
hung sweep show every ``tf_XLAEigen`` worker in ``jax::ParallelBatchMap`` ->
``absl::BlockingCounter::Wait`` under ``lapack_sgeqrf_ffi`` (orthogonal weights) or
``lapack_spotrf_ffi`` (a vmapped Cholesky), while the devices' launcher threads wait in
``CpuPjRtRawLoadedExecutable::Execute``. Serialising the calls inside one program does not
help once several devices run, so the engine does not use them inside its programs: the
factorisations it needs are written here with loops of matrix-vector operations, which XLA
runs on its own threads without waiting on the pool.

Each function takes one matrix (``vmap`` it for a batch). The loops run over columns with
``lax.fori_loop`` and fixed shapes: entries outside the active part are masked, not sliced.
Costs are those of unblocked (level-2) algorithms, except ``cholesky_inverse``, which
recursive halving turns into matrix products around loops of at most 32 columns: fine for
the batch × batch and width × width matrices the engine factorises, slower than LAPACK for
widths in the thousands (see the README's measurements).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def householder_qr(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The thin QR factorisation of a tall matrix, by Householder reflections.

    The same reflections as LAPACK's ``geqrf``: column j is reflected onto
    ``beta_j e_j`` with ``beta_j = -sign(a_jj) ‖a_j‖``, so ``Q`` equals LAPACK's up to
    rounding.

    Args:
      a: ``(m, k)`` with ``m >= k``.

    Returns:
      ``(q, r_diag)``: ``q`` ``(m, k)`` with orthonormal columns and ``r_diag`` ``(k,)``, the
      diagonal of R (``a = q r`` with R upper triangular).
    """
    m, k = a.shape
    if m < k:
        raise ValueError(f"householder_qr needs a tall matrix, got {a.shape}")
    rows = jnp.arange(m)

    def reflect(j, carry):
        a, reflectors, diagonal = carry
        x = jnp.where(rows >= j, jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False), 0.0)
        alpha = x[j]
        norm = jnp.sqrt(jnp.sum(jnp.square(x)))
        beta = jnp.where(alpha > 0, -norm, norm)
        v = x - beta * (rows == j).astype(a.dtype)
        v_norm = jnp.sqrt(jnp.sum(jnp.square(v)))
        v = jnp.where(v_norm > 0, v / jnp.where(v_norm > 0, v_norm, 1.0), 0.0)
        # Columns before j are zero on rows >= j, where v lives, so reflecting all of a is exact.
        a = a - 2.0 * jnp.outer(v, jnp.matmul(v, a, precision=_HIGHEST))
        return a, reflectors.at[j].set(v), diagonal.at[j].set(beta)

    init = (a, jnp.zeros((k, m), a.dtype), jnp.zeros((k,), a.dtype))
    _, reflectors, diagonal = jax.lax.fori_loop(0, k, reflect, init)

    def apply(i, q):
        v = reflectors[k - 1 - i]
        return q - 2.0 * jnp.outer(v, jnp.matmul(v, q, precision=_HIGHEST))

    q = jax.lax.fori_loop(0, k, apply, jnp.eye(m, k, dtype=a.dtype))
    return q, diagonal


def orthogonal_from_gaussian(gaussian: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """A Haar-random (semi-)orthogonal matrix from a Gaussian one, as ``jax.random.orthogonal``.

    The Q factor of the Gaussian matrix with the sign convention that makes R's diagonal
    positive (which makes Q Haar-distributed), factorised by ``householder_qr``: given the
    Gaussian matrix that ``jax.random.orthogonal`` draws from a key (``jax.random.normal(key,
    (max(shape), min(shape)))``), the result equals ``jax.nn.initializers.orthogonal()(key,
    shape)`` up to float32 rounding.

    Args:
      gaussian: ``(max(shape), min(shape))``, i.i.d. N(0, 1).
      shape: ``(n_in, n_out)``; the rows are orthonormal if n_in < n_out, else the columns.

    Returns:
      ``(n_in, n_out)``.
    """
    q, r_diag = householder_qr(gaussian)
    q = q * jnp.where(r_diag < 0, -1.0, 1.0).astype(gaussian.dtype)
    return q.T if shape[0] < shape[1] else q


def cholesky(g: jax.Array, tolerance: float = 0.0, diagonal: jax.Array | None = None) -> jax.Array:
    """The lower Cholesky factor L of a symmetric positive semi-definite matrix, g = L Lᵀ.

    Column by column (left-looking). A pivot that is not positive, or at most ``tolerance``
    times its column's own diagonal entry (that column is, to this precision, a combination of
    the columns before it), gives a zero column instead of NaN, so that the caller can treat
    that direction as absent.

    Args:
      g: ``(n, n)``, symmetric positive (semi-)definite.
      tolerance: the relative pivot below which a column is left out (0: only pivots that
        are not positive).
      diagonal: ``(n,)``, the diagonal that ``tolerance`` is relative to, when ``g`` is a
        Schur complement of a larger matrix (``cholesky_inverse``); by default g's own.

    Returns:
      ``(n, n)`` lower triangular.
    """
    n = g.shape[0]
    rows = jnp.arange(n)
    diagonal = jnp.diagonal(g) if diagonal is None else diagonal

    def column(j, factor):
        row_j = jax.lax.dynamic_index_in_dim(factor, j, axis=0, keepdims=False)  # L[j, :], zero from j on
        g_j = jax.lax.dynamic_index_in_dim(g, j, axis=1, keepdims=False)
        c = g_j - jnp.matmul(factor, row_j, precision=_HIGHEST)
        pivot = c[j]
        kept = (pivot > 0) & (pivot > tolerance * diagonal[j])
        d = jnp.sqrt(jnp.where(kept, pivot, 1.0))
        col = jnp.where((rows >= j) & kept, c / d, 0.0)
        return jax.lax.dynamic_update_index_in_dim(factor, col[:, None], j, axis=1)

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(g))


def cholesky_inverse(g: jax.Array, tolerance: float = 0.0, block: int = 32) -> tuple[jax.Array, jax.Array]:
    """``cholesky(g, tolerance)`` and its ``lower_inverse``, by recursive halving.

    With g = [[g11, g21ᵀ], [g21, g22]]: L11 = chol(g11) and T11 = L11⁺; L21 = g21 T11ᵀ; L22 =
    chol(g22 − L21 L21ᵀ), the Schur complement, whose pivots are those the column-by-column
    factorisation meets, so the same directions are left out (``tolerance`` stays relative to
    g's own diagonal); and L⁺ = [[T11, 0], [−T22 L21 T11, T22]]. A left-out column of L11 is
    a zero row of T11, hence a zero column of L21, as column by column. Blocks of at most
    ``block`` rows are factorised and inverted by the loops of ``cholesky`` and
    ``lower_inverse``; the rest is matrix products. The sequential steps are as many as
    there, but each is a ``block``-sized matrix-vector product instead of an n-sized one.

    Args:
      g: ``(n, n)``, symmetric positive (semi-)definite.
      tolerance: as for ``cholesky``.
      block: the largest block factorised by loops.

    Returns:
      ``(L, L⁺)``, both ``(n, n)`` lower triangular.
    """

    def factor(g, diagonal):
        n = g.shape[0]
        if n <= block:
            lower = cholesky(g, tolerance, diagonal)
            return lower, lower_inverse(lower)
        k = n // 2
        l11, t11 = factor(g[:k, :k], diagonal[:k])
        l21 = jnp.matmul(g[k:, :k], t11.T, precision=_HIGHEST)
        l22, t22 = factor(g[k:, k:] - jnp.matmul(l21, l21.T, precision=_HIGHEST), diagonal[k:])
        t21 = -jnp.matmul(t22, jnp.matmul(l21, t11, precision=_HIGHEST), precision=_HIGHEST)
        zeros = jnp.zeros((k, n - k), g.dtype)
        return jnp.block([[l11, zeros], [l21, l22]]), jnp.block([[t11, zeros], [t21, t22]])

    return factor(g, jnp.diagonal(g))


def solve_lower(factor: jax.Array, b: jax.Array) -> jax.Array:
    """X with L X = B for a lower triangular L, by forward substitution.

    A zero pivot (a column ``cholesky`` left out) gives a zero row of X.

    Args:
      factor: L, ``(n, n)`` lower triangular.
      b: ``(n, m)``.

    Returns:
      ``(n, m)``.
    """
    n = factor.shape[0]

    def row(i, x):
        l_i = jax.lax.dynamic_index_in_dim(factor, i, axis=0, keepdims=False)
        pivot = l_i[i]
        rest = jnp.matmul(l_i, x, precision=_HIGHEST)  # rows of x from i on are still zero
        b_i = jax.lax.dynamic_index_in_dim(b, i, axis=0, keepdims=False)
        x_i = jnp.where(pivot != 0, (b_i - rest) / jnp.where(pivot != 0, pivot, 1.0), 0.0)
        return jax.lax.dynamic_update_index_in_dim(x, x_i, i, axis=0)

    # Zeros with the manual axes of both operands (under shard_map a loop's carry keeps its
    # type, and the rows written into it come from both).
    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b) + jnp.zeros_like(factor[:, :1]))


def lower_inverse(factor: jax.Array) -> jax.Array:
    """L⁺ for a lower triangular L from ``cholesky``: its inverse, with a zero row for each
    left-out (zero) column, ``(n, n)``."""
    return solve_lower(factor, jnp.eye(factor.shape[0], dtype=factor.dtype))
