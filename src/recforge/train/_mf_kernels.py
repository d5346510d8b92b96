"""numba kernels of the fused MF epoch (:mod:`recforge.train.fused_mf`); imported lazily.

One call runs a whole epoch of mini-batch Adam/AdamW on the factor tables of ``mf`` /
``biased_mf``: per batch, the loss gradient of the batch is accumulated into dense gradient
buffers (only the rows the batch touches), then one sweep over every cell of every table applies
torch's Adam update (``torch.optim.Adam``/``AdamW``, single-tensor CPU path: decoupled decay,
``m ← m + (1 − β₁)(g − m)``, ``v ← β₂v + (1 − β₂)g²``,
``p ← p − (η/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε)``) and zeroes the buffer behind it. Dense
semantics are kept on purpose: rows a batch does not touch still decay and still move by their
momentum, exactly as with torch's optimizer, so the fused fit is the same algorithm as the torch
fit (same row order, negatives and schedule), equal up to float rounding.

Serial loops; only the dot products may reassociate (:func:`_jit_reassoc`, vectorised sums in
an order fixed by the compiled code), so results are deterministic for a seed on a machine.
:func:`sampled_epoch_threaded` runs BPR / sampled-BCE epochs on several threads with the same
operations in the same order (owner-computes), so its result is the serial kernel's, bit for
bit, for any thread count.
Compiled with ``cache=True`` (see :func:`_jit` for read-only installs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

MSE, BCE, BPR = 0, 1, 2


def _compile(fn: Callable[..., Any], **options: Any) -> Any:
    """``numba.njit(cache=True, **options)``, or uncached when no cache directory is writable.

    numba caches next to this file, else in ``NUMBA_CACHE_DIR`` / the user's cache directory;
    when none is writable (a read-only install and a read-only home) it raises at decoration,
    and compiling once per process is the fallback.
    """
    # error_model="numpy": no zero-division check per element, which would keep LLVM from
    # vectorising the Adam sweep (measured 11 -> 0.7 ns per cell); IEEE results (inf/nan) instead.
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy", **options)(fn)
    except RuntimeError:  # pragma: no cover - depends on the file system
        return numba.njit(cache=False, nogil=True, error_model="numpy", **options)(fn)


def _jit(fn: Callable[..., Any]) -> Any:
    """The kernels' compiler: :func:`_compile` with no extra options."""
    return _compile(fn)


def _jit_reassoc(fn: Callable[..., Any]) -> Any:
    """:func:`_jit` plus reassociation (vectorised sums) for one reduction."""
    return _compile(fn, fastmath={"reassoc", "contract"})


@_jit
def _adam_sweep(
    p: Any, m: Any, v: Any, g: Any, lr: float, t: float, b1: float, b2: float, eps: float,
    wd: float, decoupled: bool,
) -> None:  # fmt: skip
    """torch's single-tensor Adam(W) step on flat float32 arrays; ``g`` is zeroed behind."""
    f32 = np.float32
    bc1 = 1.0 - b1**t
    step = f32(lr / bc1)
    # torch divides √v by √(1 − β₂ᵗ); multiplying by the reciprocal saves one of the two
    # divisions per cell, the sweep's bottleneck with the square root (a last-bit difference).
    inv_bc2 = f32(1.0 / math.sqrt(1.0 - b2**t))
    one_b1 = f32(1.0 - b1)
    b2f = f32(b2)
    one_b2 = f32(1.0 - b2)
    epsf = f32(eps)
    decay = f32(1.0 - lr * wd)
    wdf = f32(wd)
    for k in range(p.shape[0]):
        gk = g[k]
        g[k] = f32(0.0)
        pk = p[k]
        if decoupled:
            pk = pk * decay
        else:
            gk = gk + wdf * pk
        mk = m[k] + one_b1 * (gk - m[k])
        vk = v[k] * b2f + one_b2 * gk * gk
        m[k] = mk
        v[k] = vk
        p[k] = pk - step * (mk / (np.sqrt(vk) * inv_bc2 + epsf))


@_jit_reassoc
def _dot(a: Any, b: Any) -> Any:
    """``a·b`` (float32 products summed in float32 SIMD lanes; reassociation is allowed here
    only, so the order is fixed by the compiled code: deterministic on a machine)."""
    s = np.float32(0.0)
    for f in range(a.shape[0]):
        s += a[f] * b[f]
    return s


@_jit
def _sq(a: Any) -> Any:
    return _dot(a, a)


@_jit_reassoc
def _dot_sq(a: Any, b: Any) -> Any:
    """``(a·b, ‖a‖² + ‖b‖²)`` in one pass (see :func:`_dot`)."""
    s = np.float32(0.0)
    q = np.float32(0.0)
    for f in range(a.shape[0]):
        x, y = a[f], b[f]
        s += x * y
        q += x * x + y * y
    return s, q


@_jit
def _axpy2(y: Any, c1: float, x1: Any, c2: float, x2: Any) -> None:
    """``y += c1·x1 + c2·x2`` (float32): a loss gradient and an L2 gradient in one pass."""
    f1, f2 = np.float32(c1), np.float32(c2)
    for f in range(y.shape[0]):
        y[f] += f1 * x1[f] + f2 * x2[f]


@_jit
def _axpy(y: Any, c: float, x: Any) -> None:
    """``y += c·x`` (float32)."""
    cf = np.float32(c)
    for f in range(y.shape[0]):
        y[f] += cf * x[f]


@_jit
def _softplus_sigmoid(x: float) -> tuple[float, float]:
    """``(softplus(x), σ(x))`` from one ``exp`` (the loss term and its derivative)."""
    e = math.exp(-abs(x))
    sig = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
    return max(x, 0.0) + math.log1p(e), sig


@_jit
def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_jit
def _mse_batch(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, ratings: Any, perm: Any, start: int, end: int, offset: float,
    lo: float, hi: float, use_range: bool, reg: float,
) -> tuple[float, float]:  # fmt: skip
    """Gradient of one MSE batch into the buffers; returns ``(mean squared error, Σ‖rows‖²)``."""
    inv_b = 1.0 / (end - start)
    c2 = 2.0 * reg * inv_b  # gradient of reg·‖row‖²/B (embedding_l2)
    loss = 0.0
    l2 = 0.0
    for k in range(start, end):
        r = perm[k]
        u, i = users[r], items[r]
        pu, qi = P[u], Q[i]
        if reg > 0.0:
            z, sq = _dot_sq(pu, qi)
            l2 += sq
        else:
            z = _dot(pu, qi)
        z += offset
        if has_bias:
            z += BU[u, 0] + BI[i, 0]
        if use_range:
            s = _sigmoid(z)
            err = lo + (hi - lo) * s - ratings[r]
            dz = 2.0 * err * inv_b * (hi - lo) * s * (1.0 - s)
        else:
            err = z - ratings[r]
            dz = 2.0 * err * inv_b
        loss += err * err
        if reg > 0.0:
            _axpy2(gP[u], dz, qi, c2, pu)
            _axpy2(gQ[i], dz, pu, c2, qi)
            if has_bias:
                l2 += BU[u, 0] * BU[u, 0] + BI[i, 0] * BI[i, 0]
                gBU[u, 0] += np.float32(dz + c2 * BU[u, 0])
                gBI[i, 0] += np.float32(dz + c2 * BI[i, 0])
        else:
            _axpy(gP[u], dz, qi)
            _axpy(gQ[i], dz, pu)
            if has_bias:
                gBU[u, 0] += np.float32(dz)
                gBI[i, 0] += np.float32(dz)
    return loss * inv_b, l2


@_jit
def _sampled_batch(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, negs: Any, perm: Any, start: int, end: int, offset: float,
    loss_kind: int, tmp: Any,
) -> float:  # fmt: skip
    """Gradient of one BPR / sampled-BCE batch into the buffers; returns its loss.

    The mean runs over the kept (positive, negative) pairs for BPR, over positives plus kept
    negatives for BCE, as :func:`~recforge.train.losses.bpr_loss` / ``bce_pos_neg`` do.
    """
    n_neg = negs.shape[1]
    valid = 0
    for k in range(start, end):
        for j in range(n_neg):
            valid += negs[k, j] >= 0
    inv_m = 1.0 / max(valid, 1) if loss_kind == BPR else 1.0 / (end - start + valid)
    loss = 0.0
    for k in range(start, end):
        r = perm[k]
        u, i = users[r], items[r]
        pu, qi = P[u], Q[i]
        sp = _dot(pu, qi) + offset
        if has_bias:
            sp += BU[u, 0] + BI[i, 0]
        cpos = 0.0  # d loss / d s(u, i)
        if loss_kind == BCE:
            term, sig = _softplus_sigmoid(-sp)
            loss += term
            cpos = -sig * inv_m
        for j in range(n_neg):
            ng = negs[k, j]
            if ng < 0:
                continue
            qn = Q[ng]
            sn = _dot(pu, qn) + offset
            if has_bias:
                sn += BU[u, 0] + BI[ng, 0]
            term, sig = _softplus_sigmoid(sn - sp if loss_kind == BPR else sn)
            loss += term
            c = sig * inv_m
            if loss_kind == BPR:
                cpos -= c
            _axpy(tmp, c, qn)
            _axpy(gQ[ng], c, pu)
            if has_bias:
                gBU[u, 0] += np.float32(c)
                gBI[ng, 0] += np.float32(c)
        _axpy(tmp, cpos, qi)
        _axpy(gQ[i], cpos, pu)
        if has_bias:
            gBU[u, 0] += np.float32(cpos)
            gBI[i, 0] += np.float32(cpos)
        gu = gP[u]
        for f in range(tmp.shape[0]):
            gu[f] += tmp[f]
            tmp[f] = 0.0
    return loss * inv_m


@_jit
def _sampled_l2(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, negs: Any, perm: Any, start: int, end: int, reg: float,
) -> float:  # fmt: skip
    """embedding_l2 of a sampled batch: the user row and the item rows of the positive and of
    every negative (clamped at 0 as the torch objective does); gradient into the buffers,
    returns ``Σ‖rows‖²``."""
    c2 = 2.0 * reg / (end - start)
    l2 = 0.0
    for k in range(start, end):
        r = perm[k]
        u, i = users[r], items[r]
        l2 += _sq(P[u]) + _sq(Q[i])
        _axpy(gP[u], c2, P[u])
        _axpy(gQ[i], c2, Q[i])
        if has_bias:
            l2 += BU[u, 0] * BU[u, 0] + BI[i, 0] * BI[i, 0]
            gBU[u, 0] += np.float32(c2 * BU[u, 0])
            gBI[i, 0] += np.float32(c2 * BI[i, 0])
        for j in range(negs.shape[1]):
            ng = max(negs[k, j], 0)
            l2 += _sq(Q[ng])
            _axpy(gQ[ng], c2, Q[ng])
            if has_bias:
                l2 += BI[ng, 0] * BI[ng, 0]
                gBI[ng, 0] += np.float32(c2 * BI[ng, 0])
    return l2


@_jit
def mf_epoch(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool,
    mP: Any, vP: Any, mQ: Any, vQ: Any, mBU: Any, vBU: Any, mBI: Any, vBI: Any,
    gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, ratings: Any, negs: Any, perm: Any, batch_size: int,
    lrs: Any, step0: int, loss_kind: int, offset: float, lo: float, hi: float,
    use_range: bool, reg: float, b1: float, b2: float, eps: float, wd: float, decoupled: bool,
    b_lo: int, b_hi: int, total: float,
) -> float:  # fmt: skip
    """Batches ``b_lo ≤ b < b_hi`` of an epoch over ``perm``; returns ``total + Σ loss · rows``.

    A whole epoch is ``(0, len(lrs), 0.0)``; consecutive ranges run in order, each given the
    previous one's return, are that same epoch to the last bit (the caller may start on the
    first batches while the later ones' negatives are drawn).

    ``negs`` holds each row's negatives in epoch order (``negs[k]`` for ``perm[k]``; ``-1``: none
    left for that user), unused for MSE. The ``g*`` buffers must be zero on entry (left zero).
    Per batch: its gradient (:func:`_mse_batch` or :func:`_sampled_batch` + :func:`_sampled_l2`),
    then the Adam(W) sweep of every table at the batch's rate ``lrs[b]``.
    """
    n = perm.shape[0]
    tmp = np.zeros(P.shape[1], dtype=np.float32)
    tables = ((P, mP, vP, gP), (Q, mQ, vQ, gQ), (BU, mBU, vBU, gBU), (BI, mBI, vBI, gBI))
    for b in range(b_lo, b_hi):
        start = b * batch_size
        end = min(n, start + batch_size)
        if loss_kind == MSE:
            loss, l2 = _mse_batch(
                P, Q, BU, BI, has_bias, gP, gQ, gBU, gBI, users, items, ratings, perm,
                start, end, offset, lo, hi, use_range, reg,
            )  # fmt: skip
        else:
            loss = _sampled_batch(
                P, Q, BU, BI, has_bias, gP, gQ, gBU, gBI, users, items, negs, perm,
                start, end, offset, loss_kind, tmp,
            )  # fmt: skip
            l2 = 0.0
            if reg > 0.0:
                l2 = _sampled_l2(
                    P, Q, BU, BI, has_bias, gP, gQ, gBU, gBI, users, items, negs, perm,
                    start, end, reg,
                )  # fmt: skip
        loss += reg * l2 / (end - start)
        total += loss * (end - start)
        t = float(step0 + b + 1)
        for ti in range(4 if has_bias else 2):
            p, m, v, g = tables[ti]
            _adam_sweep(p.reshape(-1), m.reshape(-1), v.reshape(-1), g.reshape(-1),
                        lrs[b], t, b1, b2, eps, wd, decoupled)  # fmt: skip
    return total


@_jit
def uniform_negatives(
    shifted: Any, indptr: Any, n_free: Any, users: Any, rand: Any, n_items: int
) -> Any:  # fmt: skip
    """:class:`~recforge.train.NegativeSampler`'s exact uniform draw, compiled.

    With ``rank = ⌊rand·n_free(u)⌋`` the item is ``rank + #{m : p_m − m ≤ rank}`` (the sampler's
    docstring), here counted by a branch-free binary search inside the user's own segment of the
    shifted keys instead of one global ``searchsorted`` of scattered keys: the same items, ~3x
    sooner. ``-1`` for users without a free item.
    """
    out = np.empty(users.shape[0], dtype=np.int64)
    for k in range(users.shape[0]):
        u = users[k]
        free = n_free[u]
        if free <= 0:
            out[k] = -1
            continue
        rank = np.int64(math.floor(rand[k] * free))
        key = u * n_items + rank
        lo = indptr[u]
        n = indptr[u + 1] - lo
        while n > 0:  # count of the segment's keys <= key (searchsorted side="right")
            half = n >> 1
            go = shifted[lo + half] <= key
            lo = lo + (half + 1) * go
            n = half if not go else n - half - 1
        out[k] = rank + lo - indptr[u]
    return out


# ---------------------------------------------------------------------------- threaded epoch
#: Rows are owned by threads in blocks of this many (a block's bias cells share a cache line).
OWNER_BLOCK = 16


def _jit_parallel(fn: Callable[..., Any]) -> Any:
    """:func:`_jit` with numba's ``parallel=True`` (``prange`` loops run on numba's threads)."""
    return _compile(fn, parallel=True)


@_jit
def _sweep_part(
    P: Any, mP: Any, vP: Any, gP: Any, Q: Any, mQ: Any, vQ: Any, gQ: Any,
    BU: Any, mBU: Any, vBU: Any, gBU: Any, BI: Any, mBI: Any, vBI: Any, gBI: Any,
    has_bias: bool, lo_c: int, hi_c: int, lr: float, t: float, b1: float, b2: float,
    eps: float, wd: float, decoupled: bool,
) -> None:  # fmt: skip
    """:func:`_adam_sweep` of cells ``lo_c ≤ x < hi_c`` of the tables laid end to end."""
    flat = (
        (P.reshape(-1), mP.reshape(-1), vP.reshape(-1), gP.reshape(-1)),
        (Q.reshape(-1), mQ.reshape(-1), vQ.reshape(-1), gQ.reshape(-1)),
        (BU.reshape(-1), mBU.reshape(-1), vBU.reshape(-1), gBU.reshape(-1)),
        (BI.reshape(-1), mBI.reshape(-1), vBI.reshape(-1), gBI.reshape(-1)),
    )
    base = 0
    for ti in range(4 if has_bias else 2):
        p, m, v, g = flat[ti]
        lo = max(lo_c - base, 0)
        hi = min(hi_c - base, p.shape[0])
        if hi > lo:
            _adam_sweep(p[lo:hi], m[lo:hi], v[lo:hi], g[lo:hi], lr, t, b1, b2, eps, wd, decoupled)
        base += p.shape[0]


@_jit
def _pair_derivatives(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, users: Any, items: Any, negs: Any,
    perm: Any, start: int, lo: int, hi: int, offset: float, loss_kind: int, inv_m: float,
    coef: Any, terms: Any,
) -> None:  # fmt: skip
    """Rows ``lo ≤ k < hi`` of a batch starting at ``start``: :func:`_sampled_batch`'s scores and
    loss derivatives, stored (``coef``: negatives then the positive; ``terms``: the positive's
    BCE term then the negatives'), read-only on the tables."""
    for k in range(lo, hi):
        r = perm[k]
        u, i = users[r], items[r]
        pu = P[u]
        row = k - start
        sp = _dot(pu, Q[i]) + offset
        if has_bias:
            sp += BU[u, 0] + BI[i, 0]
        cpos = 0.0
        if loss_kind == BCE:
            term, sig = _softplus_sigmoid(-sp)
            terms[row, 0] = term
            cpos = -sig * inv_m
        for j in range(negs.shape[1]):
            ng = negs[k, j]
            if ng < 0:
                continue
            sn = _dot(pu, Q[ng]) + offset
            if has_bias:
                sn += BU[u, 0] + BI[ng, 0]
            term, sig = _softplus_sigmoid(sn - sp if loss_kind == BPR else sn)
            terms[row, j + 1] = term
            cj = sig * inv_m
            coef[row, j] = cj
            if loss_kind == BPR:
                cpos -= cj
        coef[row, negs.shape[1]] = cpos


@_jit
def _batch_loss(
    negs: Any, start: int, rows: int, loss_kind: int, inv_m: float, terms: Any
) -> float:  # fmt: skip
    """The batch's loss from ``terms``, summed in :func:`_sampled_batch`'s order."""
    loss = 0.0
    for row in range(rows):
        if loss_kind == BCE:
            loss += terms[row, 0]
        for j in range(negs.shape[1]):
            if negs[start + row, j] >= 0:
                loss += terms[row, j + 1]
    return loss * inv_m


@_jit
def _owner_gradients(
    P: Any, Q: Any, has_bias: bool, gP: Any, gQ: Any, gBU: Any, gBI: Any, users: Any,
    items: Any, negs: Any, perm: Any, start: int, end: int, coef: Any, tmp: Any,
    owner: int, n_par: int,
) -> None:  # fmt: skip
    """The batch's gradient terms into the rows thread ``owner`` owns (row ``r``'s owner is
    ``(r // OWNER_BLOCK) % n_par``), in :func:`_sampled_batch`'s order for every row."""
    n_neg = negs.shape[1]
    for k in range(start, end):
        r = perm[k]
        u, i = users[r], items[r]
        pu = P[u]
        row = k - start
        own_u = (u // OWNER_BLOCK) % n_par == owner
        for j in range(n_neg):
            ng = negs[k, j]
            if ng < 0:
                continue
            cj = coef[row, j]
            own_n = (ng // OWNER_BLOCK) % n_par == owner
            if own_u:
                _axpy(tmp, cj, Q[ng])
                if has_bias:
                    gBU[u, 0] += np.float32(cj)
            if own_n:
                _axpy(gQ[ng], cj, pu)
                if has_bias:
                    gBI[ng, 0] += np.float32(cj)
        cpos = coef[row, n_neg]
        if own_u:
            _axpy(tmp, cpos, Q[i])
            if has_bias:
                gBU[u, 0] += np.float32(cpos)
            gu = gP[u]
            for x in range(tmp.shape[0]):
                gu[x] += tmp[x]
                tmp[x] = 0.0
        if (i // OWNER_BLOCK) % n_par == owner:
            _axpy(gQ[i], cpos, pu)
            if has_bias:
                gBI[i, 0] += np.float32(cpos)


@_jit_parallel
def sampled_epoch_threaded(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool,
    mP: Any, vP: Any, mQ: Any, vQ: Any, mBU: Any, vBU: Any, mBI: Any, vBI: Any,
    gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, negs: Any, perm: Any, batch_size: int,
    lrs: Any, step0: int, loss_kind: int, offset: float,
    b1: float, b2: float, eps: float, wd: float, decoupled: bool,
    b_lo: int, b_hi: int, total: float, n_par: int,
) -> float:  # fmt: skip
    """:func:`mf_epoch` of a BPR / sampled-BCE loss without ``reg``, on ``n_par`` threads, with
    the very same floating-point operations in the same order: the same result to the last bit
    whatever ``n_par`` (tests/train/test_fused_mf.py).

    Per batch, three parallel passes instead of the serial gradient + sweep:

    1. the scores and loss derivatives of the batch's (positive, negative) pairs, read-only on
       the tables, split by rows of the batch (:func:`_pair_derivatives`); the loss is then
       summed serially in :func:`_sampled_batch`'s order (:func:`_batch_loss`);
    2. the gradient rows, split by **owner** (:func:`_owner_gradients`): each thread walks the
       whole batch in order and adds only into its own rows, so every row receives its terms
       in the serial order (the scan is cheap; the row updates are the work);
    3. the Adam(W) sweep (element-wise), split into contiguous ranges (:func:`_sweep_part`).
    """
    n = perm.shape[0]
    n_neg = negs.shape[1]
    coef = np.zeros((batch_size, n_neg + 1))
    terms = np.zeros((batch_size, n_neg + 1))
    tmps = np.zeros((n_par, P.shape[1]), dtype=np.float32)
    cells = P.size + Q.size + (BU.size + BI.size if has_bias else 0)
    for b in range(b_lo, b_hi):
        start = b * batch_size
        end = min(n, start + batch_size)
        rows = end - start
        valid = 0
        for k in range(start, end):
            for j in range(n_neg):
                valid += negs[k, j] >= 0
        inv_m = 1.0 / max(valid, 1) if loss_kind == BPR else 1.0 / (rows + valid)
        for c in numba.prange(n_par):
            _pair_derivatives(
                P, Q, BU, BI, has_bias, users, items, negs, perm, start,
                start + rows * c // n_par, start + rows * (c + 1) // n_par, offset, loss_kind,
                inv_m, coef, terms,
            )  # fmt: skip
        total += _batch_loss(negs, start, rows, loss_kind, inv_m, terms) * rows
        for c in numba.prange(n_par):
            _owner_gradients(
                P, Q, has_bias, gP, gQ, gBU, gBI, users, items, negs, perm, start, end, coef,
                tmps[c], c, n_par,
            )  # fmt: skip
        t = float(step0 + b + 1)
        lr = lrs[b]
        for c in numba.prange(n_par):
            _sweep_part(
                P, mP, vP, gP, Q, mQ, vQ, gQ, BU, mBU, vBU, gBU, BI, mBI, vBI, gBI, has_bias,
                cells * c // n_par, cells * (c + 1) // n_par, lr, t, b1, b2, eps, wd, decoupled,
            )  # fmt: skip
    return total
