"""numba kernels of the fused MF epoch (:mod:`recforge.train.fused_mf`); imported lazily.

One call runs a whole epoch of mini-batch Adam/AdamW on the factor tables of ``mf`` /
``biased_mf``: per batch, the loss gradient of the batch is accumulated into dense gradient
buffers (only the rows the batch touches), then one sweep over every cell of every table applies
torch's Adam update (``torch.optim.Adam``/``AdamW``, single-tensor CPU path: decoupled decay,
``m ← m + (1 − β₁)(g − m)``, ``v ← β₂v + (1 − β₂)g²``,
``p ← p − (η/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε)``) and zeroes the buffer behind it. Dense
semantics are kept on purpose: rows a batch does not touch still decay and still move by their
momentum, exactly as with torch's optimizer, so the fused fit is the same algorithm as the torch
fit (same row order, negatives and schedule), equal up to float rounding. With ``lazy`` (the
model option ``lazy_adam``) only the rows a batch touches are stepped and the others are brought
up to date in closed form (the lazy Adam section): the dense update up to ε, cheaper when a
batch touches a small share of the rows (large user / item tables). :func:`mse_sgd_epoch` runs
plain SGD instead (``funk_svd``): only the batch's rows move, so there is no sweep at all.

Rows are read and written by index (``gQ[i, f]``) in loops written out in the kernels: a row
view written to, or a helper called per row with array arguments, costs reference counting
that took longer than the row's arithmetic (a BPR epoch on ml-latest-small's shapes: 0.73-0.85
of the time, the same weights to the last bit; docs/benchmarks/speed_bpr16.md).

Serial loops; only the dot products may reassociate (:func:`_jit_reassoc`, vectorised sums in
an order fixed by the compiled code), so results are deterministic for a seed on a machine.
:func:`sampled_epoch_threaded` runs BPR / sampled-BCE epochs on a team of threads meeting at a
spin barrier (:mod:`recforge.train._numba_sync`), with the same operations in the same order
(owner-computes), so its result is the serial kernel's, bit for bit, for any thread count.
Compiled with ``cache=True`` (see :func:`_jit` for read-only installs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from recforge.train._numba_sync import ABORT, barrier
from recforge.train._prefetch import prefetch as _prefetch

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
def _adam_consts(
    lr: float, t: float, b1: float, b2: float, eps: float, wd: float
) -> tuple[Any, Any, Any, Any, Any, Any, Any, Any]:  # fmt: skip
    """The float32 constants of torch's Adam(W) step ``t`` at rate ``lr`` (:func:`_adam_cells`)."""
    f32 = np.float32
    bc1 = 1.0 - b1**t
    # torch divides √v by √(1 − β₂ᵗ); multiplying by the reciprocal saves one of the two
    # divisions per cell, the sweep's bottleneck with the square root (a last-bit difference).
    inv_bc2 = f32(1.0 / math.sqrt(1.0 - b2**t))
    return (
        f32(lr / bc1), inv_bc2, f32(1.0 - b1), f32(b2), f32(1.0 - b2), f32(eps),
        f32(1.0 - lr * wd), f32(wd),
    )  # fmt: skip


@_jit
def _adam_cells(p: Any, m: Any, v: Any, g: Any, c: Any, decoupled: bool) -> None:
    """torch's single-tensor Adam(W) step on flat float32 arrays with the constants ``c`` of
    :func:`_adam_consts`; ``g`` is zeroed behind."""
    step, inv_bc2, one_b1, b2f, one_b2, epsf, decay, wdf = c
    for k in range(p.shape[0]):
        gk = g[k]
        g[k] = np.float32(0.0)
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


@_jit
def _adam_sweep(
    p: Any, m: Any, v: Any, g: Any, lr: float, t: float, b1: float, b2: float, eps: float,
    wd: float, decoupled: bool,
) -> None:  # fmt: skip
    """torch's single-tensor Adam(W) step on flat float32 arrays; ``g`` is zeroed behind."""
    _adam_cells(p, m, v, g, _adam_consts(lr, t, b1, b2, eps, wd), decoupled)


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
def _axpy(y: Any, c: float, x: Any) -> None:
    """``y += c·x`` (float32)."""
    cf = np.float32(c)
    for f in range(y.shape[0]):
        y[f] += cf * x[f]


@_jit
def _softplus_parts(x: float) -> tuple[float, float, float]:
    """``(max(x, 0), 1 + e^{-|x|}, σ(x))`` from one ``exp``: ``softplus(x)`` is the first plus
    the log of the second, a log the batch takes once for many terms (:func:`_log_sum`)."""
    e = math.exp(-abs(x))
    one_e = 1.0 + e
    sig = 1.0 / one_e if x >= 0 else e / one_e
    return max(x, 0.0), one_e, sig


#: Factors of one product in :func:`_log_sum` (each is ≤ 2, so the product stays < 2^512).
LOG_CHUNK = 512


@_jit
def _log_sum(buf: Any, n: int) -> float:
    """``Σ log buf[k]`` (``k < n``) as the logs of products of :data:`LOG_CHUNK` factors: the
    softplus terms' logs, one ``log`` a chunk instead of one ``log1p`` a pair (a quarter of a
    BPR batch's time went to them; the loss is only reported, it moves no weight)."""
    total = 0.0
    for k in range(0, n, LOG_CHUNK):
        prod = 1.0
        for x in range(k, min(n, k + LOG_CHUNK)):
            prod *= buf[x]
        total += math.log(prod)
    return total


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
    lo: float, hi: float, use_range: bool, reg: float, prefetch: bool,
) -> tuple[float, float]:  # fmt: skip
    """Gradient of one MSE batch into the buffers; returns ``(mean squared error, Σ‖rows‖²)``.

    ``prefetch``: ask for the gradient rows of the rating :data:`PREFETCH_AHEAD` places ahead
    (tables far larger than the caches: a 2-epoch biased_mf fit on the 10M log 15.2-16.9 s ->
    13.6-15.5 s; on ml-latest-small's cached tables it cost ~10%, so the lazy epochs ask)."""
    inv_b = 1.0 / (end - start)
    c2 = 2.0 * reg * inv_b  # gradient of reg·‖row‖²/B (embedding_l2)
    loss = 0.0
    l2 = 0.0
    n_f = P.shape[1]
    for k in range(start, end):
        if prefetch and k + PREFETCH_AHEAD < end:
            ahead = perm[k + PREFETCH_AHEAD]
            _prefetch_rows(gP, gQ, gBU, gBI, has_bias, users[ahead], items[ahead])
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
        # Gradient rows updated by index, not through row views passed to a helper: each view
        # costs reference counting that outweighed the row's 2 × 50 multiply-adds.
        c1 = np.float32(dz)
        if reg > 0.0:
            cr = np.float32(c2)
            for f in range(n_f):
                x, y = P[u, f], Q[i, f]
                gP[u, f] += c1 * y + cr * x
                gQ[i, f] += c1 * x + cr * y
            if has_bias:
                l2 += BU[u, 0] * BU[u, 0] + BI[i, 0] * BI[i, 0]
                gBU[u, 0] += np.float32(dz + c2 * BU[u, 0])
                gBI[i, 0] += np.float32(dz + c2 * BI[i, 0])
        else:
            for f in range(n_f):
                gP[u, f] += c1 * Q[i, f]
                gQ[i, f] += c1 * P[u, f]
            if has_bias:
                gBU[u, 0] += c1
                gBI[i, 0] += c1
    return loss * inv_b, l2


@_jit
def _inv_pairs(negs: Any, start: int, end: int, loss_kind: int) -> float:
    """``1/m`` of a sampled batch's mean: ``m`` its kept (positive, negative) pairs for BPR, its
    positives plus kept negatives for BCE."""
    valid = 0
    for k in range(start, end):
        for j in range(negs.shape[1]):
            valid += negs[k, j] >= 0
    inv: float = 1.0 / max(valid, 1) if loss_kind == BPR else 1.0 / (end - start + valid)
    return inv


@_jit
def _sampled_batch(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, negs: Any, perm: Any, start: int, end: int, offset: float,
    loss_kind: int, tmp: Any, logs: Any,
) -> float:  # fmt: skip
    """Gradient of one BPR / sampled-BCE batch into the buffers; returns its loss.

    The mean runs over the kept (positive, negative) pairs for BPR, over positives plus kept
    negatives for BCE, as :func:`~recforge.train.losses.bpr_loss` / ``bce_pos_neg`` do. Rows
    are updated by index (``gQ[ng, f]``), not through row views: a view written to costs
    reference counting that took longer than the row's arithmetic. ``logs``: room for the
    batch's softplus factors (:func:`_log_sum`).
    """
    n_neg = negs.shape[1]
    n_f = tmp.shape[0]
    inv_m: float = _inv_pairs(negs, start, end, loss_kind)
    lin = 0.0
    n_logs = 0
    for k in range(start, end):
        r = perm[k]
        u, i = users[r], items[r]
        pu = P[u]
        sp = _dot(pu, Q[i]) + offset
        if has_bias:
            sp += BU[u, 0] + BI[i, 0]
        cpos = 0.0  # d loss / d s(u, i)
        if loss_kind == BCE:
            mx, one_e, sig = _softplus_parts(-sp)
            logs[n_logs] = one_e
            lin += mx
            n_logs += 1
            cpos = -sig * inv_m
        for j in range(n_neg):
            ng = negs[k, j]
            if ng < 0:
                continue
            sn = _dot(pu, Q[ng]) + offset
            if has_bias:
                sn += BU[u, 0] + BI[ng, 0]
            mx, one_e, sig = _softplus_parts(sn - sp if loss_kind == BPR else sn)
            logs[n_logs] = one_e
            lin += mx
            n_logs += 1
            c = sig * inv_m
            if loss_kind == BPR:
                cpos -= c
            cf = np.float32(c)
            for f in range(n_f):  # tmp += c·Q[ng], gQ[ng] += c·P[u] (by index, see above)
                tmp[f] += cf * Q[ng, f]
                gQ[ng, f] += cf * P[u, f]
            if has_bias:
                gBU[u, 0] += np.float32(c)
                gBI[ng, 0] += np.float32(c)
        cf = np.float32(cpos)
        for f in range(n_f):
            tmp[f] += cf * Q[i, f]
            gQ[i, f] += cf * P[u, f]
        if has_bias:
            gBU[u, 0] += np.float32(cpos)
            gBI[i, 0] += np.float32(cpos)
        for f in range(n_f):
            gP[u, f] += tmp[f]
            tmp[f] = 0.0
    logs_sum: float = _log_sum(logs, n_logs)
    return (lin + logs_sum) * inv_m


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


# ---------------------------------------------------------------------------- lazy Adam(W)
# With ``lazy`` the kernels step only the rows a batch touches (its users, positives and
# negatives) and bring every other row up to date in closed form when it is next touched, and
# all rows at the end of the epoch. With a zero gradient, the steps ``s < j ≤ T`` of Adam(W)
# on a row last stepped at ``s`` are
#
#     m ← β₁ᵏm,  v ← β₂ᵏv,  p ← D·p − Σⱼ (D/Dⱼ)·aⱼ·rʲ⁻ˢ · u   (k = T − s)
#
# with ``r = β₁/√β₂``, ``aⱼ = lrⱼ·√(1 − β₂ʲ)/(1 − β₁ʲ)``, ``D`` (``Dⱼ``) the product of the
# decoupled decays ``1 − lr·wd`` of the steps after ``s`` (after ``j``) and
# ``u = m/(√v + ε·√(1 − β₂ˢ))``, the row's direction at its last step, kept beside the table
# (``U``) by that step. Only ε's weight against the decayed √v is approximated (exact for the
# first skipped step up to a factor √(1 − β₂ˢ⁺¹)/√(1 − β₂ˢ) on ε); momentum, decay and moments
# are all applied. A touched row is first caught up (``p`` only, so that the batch's gradient
# reads the dense fit's weights), then its moments are decayed by the skipped steps and it takes
# the dense step. When every row is touched by every batch nothing is skipped and the lazy epoch
# is the dense one, bit for bit (tests/train/test_fused_mf.py).
#
# The sum costs O(1) a row, not O(T − s): with ``H[s] = Σ_{s<j≤n} aⱼ·rʲ⁻ˢ·Dₛ/Dⱼ`` over the
# epoch's ``n`` steps (one backward pass, :func:`lazy_coefs`), it is ``D·H[s] − rᵀ⁻ˢ·H[T]``.
# A step-by-step sum cost each of a 138k-user log's ~1,000 touched users a batch one iteration
# a skipped step (~135 on average, a user being touched every ~135 batches; up to ~440, where
# rʲ⁻ˢ fell below 1e-20): 1.02 ms of a batch's CPU, now 0.76
# (``python benchmarks/bpr_lazy_phases.py``).
#
# Rows are visited in the order the batch first touches them, from :func:`_touch`'s list
# (:func:`_lazy_side` says why a list), and updated by index in loops written out here: a
# helper called per row with array arguments costs reference counting that took longer than
# the row's arithmetic.
#: ``mode`` of :func:`_lazy_tables`: catch the touched rows' weights up to step ``T``; Adam step
#: ``T`` of the touched rows; catch every row up to ``T`` (the epoch's end), clocks back to 0.
CATCH_UP, STEP, FLUSH = 0, 1, 2
#: Bits of the kernels' ``lazy`` mask: the user side (P, BU), the item side (Q, BI).
LAZY_USERS, LAZY_ITEMS = 1, 2


def lazy_coefs(
    lrs: npt.NDArray[np.float64], step0: int, b1: float, b2: float, wd: float, decoupled: bool
) -> npt.NDArray[np.float64]:  # fmt: skip
    """The catch-up's per-step constants of an epoch, rows ``(a, d, Σ log d, β₁ᵏ, β₂ᵏ, H, rᵏ)``
    by epoch step (or ``k``) ``0..len(lrs)`` (the section comment; column 0: the epoch's
    start). ``H[s] = Σ_{s<j≤n} aⱼ·rʲ⁻ˢ·Dₛ/Dⱼ`` (``Dⱼ``: the decays' product up to ``j``), by
    the backward recursion ``H[s] = (r/d_{s+1})·(a_{s+1} + H[s+1])``, makes a catch-up O(1)."""
    n = len(lrs)
    t = step0 + np.arange(n + 1, dtype=np.float64)
    lr = np.concatenate([[0.0], np.asarray(lrs, dtype=np.float64)])
    out = np.zeros((7, n + 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out[0, 1:] = (lr * np.sqrt(1.0 - b2**t) / (1.0 - b1**t))[1:]
    # The dense sweep's float32 decay factor, so that D is the product the dense steps apply.
    out[1] = (1.0 - lr * wd).astype(np.float32) if decoupled else 1.0
    out[1, 0] = 1.0
    out[2] = np.cumsum(np.log(out[1]))
    k = np.arange(n + 1, dtype=np.float64)
    r = b1 / math.sqrt(b2)
    out[3], out[4], out[6] = b1**k, b2**k, r**k
    for s in range(n - 1, -1, -1):  # once an epoch: n steps of Python are cheap beside it
        out[5, s] = r / out[1, s + 1] * (out[0, s + 1] + out[5, s + 1])
    return out


@_jit
def lazy_directions(m: Any, v: Any, U: Any, step: int, b2: float, eps: float) -> None:
    """``U = m/(√v + ε·√(1 − β₂ˢᵗᵉᵖ))`` (flat arrays): every row's direction at the epoch's
    start (all rows then up to date), from the optimizer state alone, so a resumed fit
    continues as the uninterrupted one."""
    if step == 0:
        U[:] = 0.0
        return
    e = eps * math.sqrt(1.0 - b2**step)
    for k in range(U.shape[0]):
        U[k] = m[k] / (math.sqrt(v[k]) + e)


#: Steps ahead whose rows the kernels prefetch (:mod:`recforge.train._prefetch`): ratings in
#: :func:`_funk_epoch`, listed rows in the lazy step and catch-up (DRAM latency over a step's work).
PREFETCH_AHEAD = 8


@_jit
def _prefetch_row(t: Any, r: int) -> None:
    """:func:`_prefetch` every cache line of the float32 row ``t[r]`` (16 cells a line)."""
    for f in range(0, t.shape[1], 16):
        _prefetch(t, r, f)


@_jit
def _prefetch_rows(P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, u: int, i: int) -> None:
    """:func:`_prefetch_row` of ``P[u]`` and ``Q[i]`` and the two biases."""
    _prefetch_row(P, u)
    _prefetch_row(Q, i)
    if has_bias:
        _prefetch(BU, u, 0)
        _prefetch(BI, i, 0)


@_jit
def _rows_in(rows: Any, lo: int, hi: int) -> Any:
    """The ``rows`` with ``lo ≤ r < hi``, in list order (int64): one branch-free pass (every
    row written, the cursor moved by the test), as a branch on each row mispredicts."""
    out = np.empty(rows.shape[0], dtype=np.int64)
    k = 0
    for j in range(rows.shape[0]):
        r = rows[j]
        out[k] = r
        k += (r >= lo) & (r < hi)
    return out[:k]


@_jit
def _lazy_step(
    p: Any, m: Any, v: Any, g: Any, U: Any, rows: Any, last: Any, T: int, c: Any, coefs: Any,
    decoupled: bool, set_last: bool,
) -> None:  # fmt: skip
    """Adam(W) step ``T`` (constants ``c``) of the ``rows``, after their moments' decay over
    the skipped steps (factors 1 when none: the dense step to the last bit); each row's
    direction kept in ``U``; ``set_last``: their clocks set to ``T``."""
    step, inv_bc2, one_b1, b2f, one_b2, epsf, decay, wdf = c
    n = rows.shape[0]
    for j in range(n):
        if j + PREFETCH_AHEAD < n:  # the row a few ahead: its DRAM misses overlap this row's work
            ahead = rows[j + PREFETCH_AHEAD]
            for t in (p, m, v, g, U):
                _prefetch_row(t, ahead)
        r = rows[j]
        gap = T - 1 - last[r]
        f1, f2 = np.float32(coefs[3, gap]), np.float32(coefs[4, gap])
        for k in range(p.shape[1]):
            gk = g[r, k]
            g[r, k] = np.float32(0.0)
            pk = p[r, k]
            if decoupled:
                pk = pk * decay
            else:
                gk = gk + wdf * pk
            mo = m[r, k] * f1
            mk = mo + one_b1 * (gk - mo)
            vk = v[r, k] * f2 * b2f + one_b2 * gk * gk
            m[r, k] = mk
            v[r, k] = vk
            dk = mk / (np.sqrt(vk) * inv_bc2 + epsf)
            p[r, k] = pk - step * dk
            U[r, k] = dk * inv_bc2
        if set_last:
            last[r] = T


@_jit
def _catch_up_coefs(coefs: Any, s: int, T: int) -> tuple[float, float]:
    """``(D, β)`` of a row last stepped at ``s`` caught up to ``T``: ``p ← D·p − β·u``."""
    # O(1) (lazy_coefs' H): D = exp(Σ log d over s < j ≤ T) and
    # β = Σ_{s<j≤T} (D_T/Dⱼ)·aⱼ·rʲ⁻ˢ = D·H[s] − rᵀ⁻ˢ·H[T].
    alpha = math.exp(coefs[2, T] - coefs[2, s])
    return alpha, alpha * coefs[5, s] - coefs[6, T - s] * coefs[5, T]


@_jit
def _lazy_catch_up(p: Any, U: Any, rows: Any, last: Any, T: int, coefs: Any) -> None:
    """The ``rows`` weights caught up to step ``T``: ``p ← D·p − β·u`` (the section comment;
    their moments are decayed by their step)."""
    n = rows.shape[0]
    for j in range(n):
        if j + PREFETCH_AHEAD < n:
            _prefetch_row(p, rows[j + PREFETCH_AHEAD])
            _prefetch_row(U, rows[j + PREFETCH_AHEAD])
        r = rows[j]
        s = last[r]
        if s < T:
            alpha, beta = _catch_up_coefs(coefs, s, T)
            for f in range(p.shape[1]):
                p[r, f] = alpha * p[r, f] - beta * U[r, f]


@_jit
def _lazy_flush(
    p: Any, m: Any, v: Any, U: Any, lo: int, hi: int, last: Any, T: int, coefs: Any,
    reset: bool,
) -> None:  # fmt: skip
    """Every row ``lo ≤ r < hi`` caught up to step ``T``, weights and moments (the epoch's
    end); ``reset``: clocks back to 0."""
    for r in range(lo, hi):
        s = last[r]
        if s < T:
            alpha, beta = _catch_up_coefs(coefs, s, T)
            f1, f2 = coefs[3, T - s], coefs[4, T - s]
            for f in range(p.shape[1]):
                p[r, f] = alpha * p[r, f] - beta * U[r, f]
                m[r, f] *= f1
                v[r, f] *= f2
        if reset:
            last[r] = 0


@_jit
def _touch(
    users: Any, items: Any, negs: Any, perm: Any, start: int, end: int, sampled: bool,
    item0: bool, seen_u: Any, seen_i: Any, tag: int, rows_u: Any, rows_i: Any, counts: Any,
) -> None:  # fmt: skip
    """Lists the users and items a batch's gradient reaches, once each in first-touch order:
    ``rows_u[:counts[0]]``, ``rows_i[:counts[1]]`` (``seen_*[row] = tag`` marks a listed row).
    ``item0``: a missing negative (-1) reaches item 0 (the sampled ``reg`` clamps it there)."""
    nu = ni = 0
    # Branch-free: every row is written at the cursor, which moves only for a row not yet
    # marked this batch (a branch there mispredicts at each new row).
    for k in range(start, end):
        r = perm[k]
        u, i = users[r], items[r]
        rows_u[nu] = u
        nu += seen_u[u] != tag
        seen_u[u] = tag
        rows_i[ni] = i
        ni += seen_i[i] != tag
        seen_i[i] = tag
        if sampled:
            for j in range(negs.shape[1]):
                ng = negs[k, j]
                if ng >= 0 or item0:
                    ng = max(ng, 0)
                    rows_i[ni] = ng
                    ni += seen_i[ng] != tag
                    seen_i[ng] = tag
    counts[0], counts[1] = nu, ni


@_jit
def _lazy_tables(
    P: Any, mP: Any, vP: Any, gP: Any, Q: Any, mQ: Any, vQ: Any, gQ: Any,
    BU: Any, mBU: Any, vBU: Any, gBU: Any, BI: Any, mBI: Any, vBI: Any, gBI: Any,
    has_bias: bool, rows_u: Any, rows_i: Any, part: int, n_par: int,
    last_u: Any, last_i: Any, Us: Any, T: int, mode: int, coefs: Any, c: Any,
    decoupled: bool, sides: int,
) -> None:  # fmt: skip
    """The lazy ``mode`` on part ``part`` of ``n_par`` of the users (P, BU) and of the items
    (Q, BI) of the sides in ``sides`` (bit mask), then, after the epoch's last step, every row
    of the part brought up to date; ``Us``: the directions of P, Q, BU, BI. A row's tables
    share its clock, set last."""
    if sides & 1:
        _lazy_side(P, mP, vP, gP, Us[0], BU, mBU, vBU, gBU, Us[2], has_bias, rows_u, last_u,
                   part, n_par, T, mode, coefs, c, decoupled)  # fmt: skip
    if sides & 2:
        _lazy_side(Q, mQ, vQ, gQ, Us[1], BI, mBI, vBI, gBI, Us[3], has_bias, rows_i, last_i,
                   part, n_par, T, mode, coefs, c, decoupled)  # fmt: skip


@_jit
def _lazy_side(
    p: Any, m: Any, v: Any, g: Any, U: Any, pb: Any, mb: Any, vb: Any, gb: Any, Ub: Any,
    has_bias: bool, touched: Any, last: Any, part: int, n_par: int, T: int, mode: int,
    coefs: Any, c: Any, decoupled: bool,
) -> None:  # fmt: skip
    """:func:`_lazy_tables` on one side: its factor table ``p`` (moments ``m``, ``v``,
    gradient ``g``, directions ``U``) and bias table ``pb`` (``mb`` .. ``Ub``)."""
    lo, hi = p.shape[0] * part // n_par, p.shape[0] * (part + 1) // n_par
    # The touched rows are stepped or caught up from a list (:func:`_touch`'s), not found by
    # a scan of the table's marks: a scan that branches on each mark mispredicts at every
    # touched row, and the core cannot start the next row's DRAM loads while it computes the
    # current one; from a list it can. With the end-of-epoch flush in a loop of its own, a
    # 2-epoch biased_mf fit on the 10M-event log went from 34.0-38.8 s to 19.9-22.4 s (1
    # thread, interleaved, the same RMSE); listing the rows as the batch touches them, instead
    # of a branch-free pass over all 138k user marks twice a batch, from 22.3-27.0 s to
    # 19.6-20.2 s (session 17).
    rows = touched if n_par == 1 else _rows_in(touched, lo, hi)
    if mode == STEP:
        _lazy_step(p, m, v, g, U, rows, last, T, c, coefs, decoupled, not has_bias)
        if has_bias:
            _lazy_step(pb, mb, vb, gb, Ub, rows, last, T, c, coefs, decoupled, True)
    if mode == CATCH_UP:
        _lazy_catch_up(p, U, rows, last, T, coefs)
        if has_bias:
            _lazy_catch_up(pb, Ub, rows, last, T, coefs)
    elif mode == FLUSH or coefs.shape[1] - 1 == T:  # after the epoch's last step
        _lazy_flush(p, m, v, U, lo, hi, last, T, coefs, not has_bias)
        if has_bias:
            _lazy_flush(pb, mb, vb, Ub, lo, hi, last, T, coefs, True)


@_jit
def mf_epoch(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool,
    mP: Any, vP: Any, mQ: Any, vQ: Any, mBU: Any, vBU: Any, mBI: Any, vBI: Any,
    gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, ratings: Any, negs: Any, perm: Any, batch_size: int,
    lrs: Any, step0: int, loss_kind: int, offset: float, lo: float, hi: float,
    use_range: bool, reg: float, b1: float, b2: float, eps: float, wd: float, decoupled: bool,
    b_lo: int, b_hi: int, total: float, lazy: int, coefs: Any, last_u: Any, last_i: Any,
    Us: Any,
) -> float:  # fmt: skip
    """Batches ``b_lo ≤ b < b_hi`` of an epoch over ``perm``; returns ``total + Σ loss · rows``.

    A whole epoch is ``(0, len(lrs), 0.0)``; consecutive ranges run in order, each given the
    previous one's return, are that same epoch to the last bit (the caller may start on the
    first batches while the later ones' negatives are drawn).

    ``negs`` holds each row's negatives in epoch order (``negs[k]`` for ``perm[k]``; ``-1``: none
    left for that user), unused for MSE. The ``g*`` buffers must be zero on entry (left zero).
    Per batch: its gradient (:func:`_mse_batch` or :func:`_sampled_batch` + :func:`_sampled_l2`),
    then the Adam(W) sweep of every table at the batch's rate ``lrs[b]``; on the sides in the
    bit mask ``lazy`` (:data:`LAZY_USERS`, :data:`LAZY_ITEMS`), the
    step of the rows the batch touches only (the lazy Adam section: ``coefs`` from
    :func:`lazy_coefs`, ``last_u`` / ``last_i`` the rows' clocks, zero at the epoch's start and
    left zero at its end, when every row is brought up to date; ``Us`` the tables' directions,
    from :func:`lazy_directions` at the epoch's start).
    """
    n = perm.shape[0]
    tmp = np.zeros(P.shape[1], dtype=np.float32)
    logs = np.empty(batch_size * (negs.shape[1] + 1))
    tables = ((P, mP, vP, gP), (Q, mQ, vQ, gQ), (BU, mBU, vBU, gBU), (BI, mBI, vBI, gBI))
    seen_u, seen_i, rows_u, rows_i, counts = _lazy_buffers(
        P.shape[0], Q.shape[0], lazy, batch_size, negs.shape[1]
    )
    for b in range(b_lo, b_hi):
        start = b * batch_size
        end = min(n, start + batch_size)
        c = _adam_consts(lrs[b], float(step0 + b + 1), b1, b2, eps, wd)
        if lazy:  # the batch's rows brought up to date before its gradient reads them
            _touch(users, items, negs, perm, start, end, loss_kind != MSE, reg > 0.0, seen_u,
                   seen_i, b + 1, rows_u, rows_i, counts)  # fmt: skip
            _lazy_tables(P, mP, vP, gP, Q, mQ, vQ, gQ, BU, mBU, vBU, gBU, BI, mBI, vBI, gBI,
                         has_bias, rows_u[: counts[0]], rows_i[: counts[1]], 0, 1, last_u,
                         last_i, Us, b, CATCH_UP, coefs, c, decoupled, lazy)  # fmt: skip
        if loss_kind == MSE:
            loss, l2 = _mse_batch(
                P, Q, BU, BI, has_bias, gP, gQ, gBU, gBI, users, items, ratings, perm,
                start, end, offset, lo, hi, use_range, reg, lazy != 0,
            )  # fmt: skip
        else:
            loss = _sampled_batch(
                P, Q, BU, BI, has_bias, gP, gQ, gBU, gBI, users, items, negs, perm,
                start, end, offset, loss_kind, tmp, logs,
            )  # fmt: skip
            l2 = 0.0
            if reg > 0.0:
                l2 = _sampled_l2(
                    P, Q, BU, BI, has_bias, gP, gQ, gBU, gBI, users, items, negs, perm,
                    start, end, reg,
                )  # fmt: skip
        loss += reg * l2 / (end - start)
        total += loss * (end - start)
        if lazy:
            _lazy_tables(P, mP, vP, gP, Q, mQ, vQ, gQ, BU, mBU, vBU, gBU, BI, mBI, vBI, gBI,
                         has_bias, rows_u[: counts[0]], rows_i[: counts[1]], 0, 1, last_u,
                         last_i, Us, b + 1, STEP, coefs, c, decoupled, lazy)  # fmt: skip
        for ti in range(4 if has_bias else 2):
            if (lazy >> (ti % 2)) & 1:  # a lazy side (its rows stepped above)
                continue
            p, m, v, g = tables[ti]
            _adam_cells(p.reshape(-1), m.reshape(-1), v.reshape(-1), g.reshape(-1), c, decoupled)
    return total


@_jit
def _funk_epoch(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, users: Any, items: Any, ratings: Any,
    perm: Any, lrs: Any, offset: float, lo: float, hi: float, use_range: bool, reg: float,
) -> float:  # fmt: skip
    """:func:`mse_sgd_epoch` at one rating a batch, each row updated in place: the gradient of
    :func:`_mse_batch` and the step ``p − η·g`` in one expression, the same floats as the
    buffered path without its second pass over the rows (a batch of one touches each row once).
    """
    n_f = P.shape[1]
    c2 = 2.0 * reg
    cr = np.float32(c2)
    total = 0.0
    n = perm.shape[0]
    for k in range(n):
        if k + PREFETCH_AHEAD < n:
            ahead = perm[k + PREFETCH_AHEAD]
            _prefetch_rows(P, Q, BU, BI, has_bias, users[ahead], items[ahead])
        r = perm[k]
        u, i = users[r], items[r]
        if reg > 0.0:
            z, sq = _dot_sq(P[u], Q[i])
        else:
            z, sq = _dot(P[u], Q[i]), 0.0
        z += offset
        if has_bias:
            z += BU[u, 0] + BI[i, 0]
            sq += BU[u, 0] * BU[u, 0] + BI[i, 0] * BI[i, 0]
        if use_range:
            s = _sigmoid(z)
            err = lo + (hi - lo) * s - ratings[r]
            dz = 2.0 * err * (hi - lo) * s * (1.0 - s)
        else:
            err = z - ratings[r]
            dz = 2.0 * err
        total += err * err + reg * sq
        c1 = np.float32(dz)
        lr = np.float32(lrs[k])
        for f in range(n_f):
            x, y = P[u, f], Q[i, f]
            P[u, f] = x - lr * (c1 * y + cr * x)
            Q[i, f] = y - lr * (c1 * x + cr * y)
        if has_bias:
            BU[u, 0] -= lr * np.float32(dz + c2 * BU[u, 0])
            BI[i, 0] -= lr * np.float32(dz + c2 * BI[i, 0])
    return total


@_jit
def mse_sgd_epoch(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool, gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, ratings: Any, perm: Any, batch_size: int, lrs: Any, offset: float,
    lo: float, hi: float, use_range: bool, reg: float,
) -> float:  # fmt: skip
    """An MSE epoch of plain SGD (``torch.optim.SGD``, no momentum, no weight decay) over ``perm``.

    Per batch ``b``: its gradient into the ``g*`` buffers (:func:`_mse_batch`, the batch L2
    ``reg`` on its rows), then each touched row stepped ``p ← p − lrs[b] · g`` and its buffer
    zeroed (a row met twice in a batch finds a zero buffer the second time). Rows no batch
    touches do not move, as with torch's SGD without decay, so there is no sweep over the
    tables: with ``batch_size`` 1 this is Funk's per-rating update, at the cost of the two rows
    and two biases a rating reads and writes. The ``g*`` buffers must be zero on entry (left
    zero). Returns ``Σ loss · rows``, the batch losses as :func:`mf_epoch` sums them.
    """
    if batch_size == 1:
        funk: float = _funk_epoch(
            P, Q, BU, BI, has_bias, users, items, ratings, perm, lrs, offset, lo, hi,
            use_range, reg,
        )  # fmt: skip
        return funk
    n = perm.shape[0]
    n_f = P.shape[1]
    total = 0.0
    for b in range(lrs.shape[0]):
        start = b * batch_size
        end = min(n, start + batch_size)
        loss, l2 = _mse_batch(
            P, Q, BU, BI, has_bias, gP, gQ, gBU, gBI, users, items, ratings, perm,
            start, end, offset, lo, hi, use_range, reg, False,
        )  # fmt: skip
        total += (loss + reg * l2 / (end - start)) * (end - start)
        lr = np.float32(lrs[b])
        for k in range(start, end):
            r = perm[k]
            u, i = users[r], items[r]
            for f in range(n_f):
                P[u, f] -= lr * gP[u, f]
                gP[u, f] = 0.0
            for f in range(n_f):
                Q[i, f] -= lr * gQ[i, f]
                gQ[i, f] = 0.0
            if has_bias:
                BU[u, 0] -= lr * gBU[u, 0]
                gBU[u, 0] = 0.0
                BI[i, 0] -= lr * gBI[i, 0]
                gBI[i, 0] = 0.0
    return total


@_jit
def _lazy_buffers(
    n_users: int, n_items: int, lazy: int, batch_size: int, n_neg: int
) -> tuple[Any, Any, Any, Any, Any]:
    """``(seen_u, seen_i, rows_u, rows_i, counts)`` of :func:`_touch` (empty unless
    ``lazy``): the marks by row, and the lists of a batch's rows (one user and ``1 + n_neg``
    items a training row at most)."""
    nu, ni, nb = (n_users, n_items, batch_size) if lazy else (0, 0, 0)
    return (
        np.full(nu, -1, dtype=np.int64),
        np.full(ni, -1, dtype=np.int64),
        np.empty(nb, dtype=np.int64),
        np.empty(nb * (1 + n_neg), dtype=np.int64),
        np.zeros(2, dtype=np.int64),
    )


#: Users with at most this many positives are searched by bisection (a few probes in a cache
#: line or two); more, through the bucket index of :func:`uniform_buckets`.
BISECT_MAX = 32


@_jit
def uniform_buckets(shifted: Any, indptr: Any, n_free: Any, n_items: int) -> Any:
    """The bucket index of :func:`uniform_negatives`: ``(shift, ptr, counts)``.

    User ``u``'s ranks ``0..n_free(u)`` are cut into buckets of ``2^shift[u]`` ranks, the
    largest power of two leaving about two of the user's positives a bucket (so at most
    ``n_pos(u) + 1`` buckets: ≤ 4 bytes an event plus 4 a user); ``counts[ptr[u] + b]`` is the
    number of the user's shifted keys below bucket ``b``'s first rank. Users with at most
    :data:`BISECT_MAX` positives get no buckets.
    """
    n_users = indptr.shape[0] - 1
    shift = np.zeros(n_users, np.int64)
    ptr = np.zeros(n_users + 1, np.int64)
    for u in range(n_users):
        n = indptr[u + 1] - indptr[u]
        free = max(n_free[u], 0)
        s = 0
        while n > BISECT_MAX and (free >> (s + 1)) >= (n + 1) // 2:
            s += 1
        shift[u] = s
        ptr[u + 1] = ptr[u] + ((free >> s) + 1 if n > BISECT_MAX else 0)
    counts = np.empty(ptr[n_users], np.int32)
    for u in range(n_users):
        lo = indptr[u]
        n = indptr[u + 1] - lo
        i = 0
        for b in range(ptr[u + 1] - ptr[u]):
            first = u * n_items + (b << shift[u])
            while i < n and shifted[lo + i] < first:
                i += 1
            counts[ptr[u] + b] = i
    return shift, ptr, counts


@_jit
def uniform_negatives(
    shifted: Any, indptr: Any, n_free: Any, users: Any, rand: Any, n_items: int,
    shift: Any, ptr: Any, counts: Any,
) -> Any:  # fmt: skip
    """:class:`~recforge.train.NegativeSampler`'s exact uniform draw, compiled.

    With ``rank = ⌊rand·n_free(u)⌋`` the item is ``rank + #{m : p_m − m ≤ rank}`` (the sampler's
    docstring). For a user with many positives the count starts from the bucket index
    (:func:`uniform_buckets`: the keys below the rank's bucket) and walks the few keys inside
    the bucket up to the rank, 3-4 dependent loads instead of a bisection's 7-11 (ml-latest-small
    40 -> 21 ns a draw); a user with few positives is bisected inside its own segment, a
    branch-free search of a cache line or two. The same items either way. ``-1`` for users
    without a free item.
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
        if n > BISECT_MAX:
            i = lo + counts[ptr[u] + (rank >> shift[u])]
            while i < lo + n and shifted[i] <= key:
                i += 1
            out[k] = rank + i - lo
            continue
        start = lo
        while n > 0:  # count of the segment's keys <= key (searchsorted side="right")
            half = n >> 1
            go = shifted[start + half] <= key
            start = start + (half + 1) * go
            n = half if not go else n - half - 1
        out[k] = rank + start - lo
    return out


# ---------------------------------------------------------------------------- threaded epoch
#: Rows are owned by threads in blocks of this many (a block's bias cells share a cache line).
OWNER_BLOCK = 16


@_jit
def _sweep_part(
    P: Any, mP: Any, vP: Any, gP: Any, Q: Any, mQ: Any, vQ: Any, gQ: Any,
    BU: Any, mBU: Any, vBU: Any, gBU: Any, BI: Any, mBI: Any, vBI: Any, gBI: Any,
    has_bias: bool, lo_c: int, hi_c: int, lr: float, t: float, b1: float, b2: float,
    eps: float, wd: float, decoupled: bool, lazy: int,
) -> None:  # fmt: skip
    """:func:`_adam_sweep` of cells ``lo_c ≤ x < hi_c`` of the tables laid end to end, those
    of the sides in the bit mask ``lazy`` left out."""
    flat = (
        (P.reshape(-1), mP.reshape(-1), vP.reshape(-1), gP.reshape(-1)),
        (Q.reshape(-1), mQ.reshape(-1), vQ.reshape(-1), gQ.reshape(-1)),
        (BU.reshape(-1), mBU.reshape(-1), vBU.reshape(-1), gBU.reshape(-1)),
        (BI.reshape(-1), mBI.reshape(-1), vBI.reshape(-1), gBI.reshape(-1)),
    )
    base = 0
    for ti in range(4 if has_bias else 2):
        if (lazy >> (ti % 2)) & 1:
            continue
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
    loss derivatives, stored (``coef``: negatives then the positive; ``terms``: the softplus
    parts of the positive's BCE term then of the negatives', in columns ``2·slot`` and
    ``2·slot + 1``), read-only on the tables."""
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
            mx, one_e, sig = _softplus_parts(-sp)
            terms[row, 0] = mx
            terms[row, 1] = one_e
            cpos = -sig * inv_m
        for j in range(negs.shape[1]):
            ng = negs[k, j]
            if ng < 0:
                continue
            sn = _dot(pu, Q[ng]) + offset
            if has_bias:
                sn += BU[u, 0] + BI[ng, 0]
            mx, one_e, sig = _softplus_parts(sn - sp if loss_kind == BPR else sn)
            terms[row, 2 * j + 2] = mx
            terms[row, 2 * j + 3] = one_e
            cj = sig * inv_m
            coef[row, j] = cj
            if loss_kind == BPR:
                cpos -= cj
        coef[row, negs.shape[1]] = cpos


@_jit
def _batch_loss(
    negs: Any, start: int, rows: int, loss_kind: int, inv_m: float, terms: Any, logs: Any
) -> float:  # fmt: skip
    """The batch's loss from ``terms``, summed in :func:`_sampled_batch`'s order."""
    lin = 0.0
    n_logs = 0
    for row in range(rows):
        if loss_kind == BCE:
            lin += terms[row, 0]
            logs[n_logs] = terms[row, 1]
            n_logs += 1
        for j in range(negs.shape[1]):
            if negs[start + row, j] >= 0:
                lin += terms[row, 2 * j + 2]
                logs[n_logs] = terms[row, 2 * j + 3]
                n_logs += 1
    logs_sum: float = _log_sum(logs, n_logs)
    return (lin + logs_sum) * inv_m


@_jit
def _owner_gradients(
    P: Any, Q: Any, has_bias: bool, gP: Any, gQ: Any, gBU: Any, gBI: Any, users: Any,
    items: Any, negs: Any, perm: Any, start: int, end: int, coef: Any, tmp: Any,
    owner: int, n_par: int,
) -> None:  # fmt: skip
    """The batch's gradient terms into the rows thread ``owner`` owns (row ``r``'s owner is
    ``(r // OWNER_BLOCK) % n_par``), in :func:`_sampled_batch`'s order for every row: one walk
    of the batch for the user rows, one for the item rows (rows updated by index, as there)."""
    n_neg = negs.shape[1]
    n_f = tmp.shape[0]
    for k in range(start, end):
        r = perm[k]
        u = users[r]
        if (u // OWNER_BLOCK) % n_par != owner:
            continue
        row = k - start
        for j in range(n_neg + 1):  # the negatives, then the positive
            ng = negs[k, j] if j < n_neg else items[r]
            if ng < 0:
                continue
            cf = np.float32(coef[row, j])
            for f in range(n_f):
                tmp[f] += cf * Q[ng, f]
            if has_bias:
                gBU[u, 0] += cf
        for f in range(n_f):
            gP[u, f] += tmp[f]
            tmp[f] = 0.0
    for k in range(start, end):
        r = perm[k]
        u = users[r]
        row = k - start
        for j in range(n_neg + 1):
            ng = negs[k, j] if j < n_neg else items[r]
            if ng < 0 or (ng // OWNER_BLOCK) % n_par != owner:
                continue
            cf = np.float32(coef[row, j])
            for f in range(n_f):
                gQ[ng, f] += cf * P[u, f]
            if has_bias:
                gBI[ng, 0] += cf


@_jit
def sampled_epoch_part(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool,
    mP: Any, vP: Any, mQ: Any, vQ: Any, mBU: Any, vBU: Any, mBI: Any, vBI: Any,
    gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, negs: Any, perm: Any, batch_size: int,
    lrs: Any, step0: int, loss_kind: int, offset: float,
    b1: float, b2: float, eps: float, wd: float, decoupled: bool,
    b_lo: int, b_hi: int, total: float, part: int, n_par: int,
    lazy: int, coefs: Any, last_u: Any, last_i: Any, Us: Any,
    sync: Any, coef: Any, terms: Any, logs: Any, seen_u: Any, seen_i: Any, rows_u: Any,
    rows_i: Any, counts: Any,
) -> float:  # fmt: skip
    """Thread ``part`` of ``n_par`` of :func:`sampled_epoch_threaded` (which documents the
    phases): the team's threads each run this call at once and meet at
    :func:`~recforge.train._numba_sync.barrier` between phases. ``coef``, ``terms``, ``logs``,
    ``seen_u``, ``seen_i``, ``rows_u``, ``rows_i``, ``counts`` (:func:`_touch`'s) and ``sync``
    are shared by the team; part 0 sums the loss and returns
    the new total (the others return ``total``)."""
    n = perm.shape[0]
    tmp = np.zeros(P.shape[1], dtype=np.float32)
    sizes = (P.size, Q.size, BU.size if has_bias else 0, BI.size if has_bias else 0)
    cells = 0
    for ti in range(4):
        cells += 0 if (lazy >> (ti % 2)) & 1 else sizes[ti]
    for b in range(b_lo, b_hi):
        start = b * batch_size
        end = min(n, start + batch_size)
        rows = end - start
        t = float(step0 + b + 1)
        lr = lrs[b]
        c = _adam_consts(lr, t, b1, b2, eps, wd)
        if lazy:
            if part == 0:
                _touch(users, items, negs, perm, start, end, True, False, seen_u, seen_i, b + 1,
                       rows_u, rows_i, counts)  # fmt: skip
            if barrier(sync, n_par) < 0:
                return total
            _lazy_tables(P, mP, vP, gP, Q, mQ, vQ, gQ, BU, mBU, vBU, gBU, BI, mBI, vBI, gBI,
                         has_bias, rows_u[: counts[0]], rows_i[: counts[1]], part, n_par,
                         last_u, last_i, Us, b, CATCH_UP, coefs, c, decoupled, lazy)  # fmt: skip
            if barrier(sync, n_par) < 0:
                return total
        inv_m = _inv_pairs(negs, start, end, loss_kind)
        _pair_derivatives(
            P, Q, BU, BI, has_bias, users, items, negs, perm, start,
            start + rows * part // n_par, start + rows * (part + 1) // n_par, offset,
            loss_kind, inv_m, coef, terms,
        )  # fmt: skip
        if barrier(sync, n_par) < 0:
            return total
        if part == 0:  # reads terms, which the next batch rewrites only after two barriers
            total += _batch_loss(negs, start, rows, loss_kind, inv_m, terms, logs) * rows
        _owner_gradients(
            P, Q, has_bias, gP, gQ, gBU, gBI, users, items, negs, perm, start, end, coef,
            tmp, part, n_par,
        )  # fmt: skip
        # Every thread's gradient rows read P and Q, which the steps below write.
        if barrier(sync, n_par) < 0:
            return total
        if lazy:
            _lazy_tables(P, mP, vP, gP, Q, mQ, vQ, gQ, BU, mBU, vBU, gBU, BI, mBI, vBI, gBI,
                         has_bias, rows_u[: counts[0]], rows_i[: counts[1]], part, n_par,
                         last_u, last_i, Us, b + 1, STEP, coefs, c, decoupled, lazy)  # fmt: skip
        if cells:  # the dense sides (the lazy ones were stepped above: other tables)
            _sweep_part(
                P, mP, vP, gP, Q, mQ, vQ, gQ, BU, mBU, vBU, gBU, BI, mBI, vBI, gBI, has_bias,
                cells * part // n_par, cells * (part + 1) // n_par, lr, t, b1, b2, eps, wd,
                decoupled, lazy,
            )  # fmt: skip
        # The next batch reads rows any thread may have stepped.
        if barrier(sync, n_par) < 0:
            return total
    return total


def sampled_epoch_threaded(
    P: Any, Q: Any, BU: Any, BI: Any, has_bias: bool,
    mP: Any, vP: Any, mQ: Any, vQ: Any, mBU: Any, vBU: Any, mBI: Any, vBI: Any,
    gP: Any, gQ: Any, gBU: Any, gBI: Any,
    users: Any, items: Any, negs: Any, perm: Any, batch_size: int,
    lrs: Any, step0: int, loss_kind: int, offset: float,
    b1: float, b2: float, eps: float, wd: float, decoupled: bool,
    b_lo: int, b_hi: int, total: float, n_par: int,
    lazy: int, coefs: Any, last_u: Any, last_i: Any, Us: Any,
) -> float:  # fmt: skip
    """:func:`mf_epoch` of a BPR / sampled-BCE loss without ``reg``, on ``n_par`` threads, with
    the very same floating-point operations in the same order: the same result to the last bit
    whatever ``n_par`` (tests/train/test_fused_mf.py).

    Per batch, three phases split between the threads instead of the serial gradient + sweep:

    1. the scores and loss derivatives of the batch's (positive, negative) pairs, read-only on
       the tables, split by rows of the batch (:func:`_pair_derivatives`); the loss is then
       summed by thread 0 in :func:`_sampled_batch`'s order (:func:`_batch_loss`);
    2. the gradient rows, split by **owner** (:func:`_owner_gradients`): each thread walks
       the whole batch in order and adds only into its own rows, so every row receives its terms
       in the serial order (the scan is cheap; the row updates are the work);
    3. the Adam(W) sweep (element-wise), split into contiguous ranges (:func:`_sweep_part`);
       with ``lazy``, the touched rows' catch-up (before 1) and step, split into row ranges
       (:func:`_lazy_tables`).

    The threads are a team (:func:`recforge.threads.run_team`: the caller and ``n_par − 1``
    pool workers, each running :func:`sampled_epoch_part` nogil for the whole range of
    batches) that meets at a spin barrier after each phase (:mod:`._numba_sync`), four times a
    batch (six with ``lazy``), rather than starting a parallel region a phase.
    """
    from recforge.threads import run_team

    n_neg = negs.shape[1]
    coef = np.zeros((batch_size, n_neg + 1))
    terms = np.zeros((batch_size, 2 * n_neg + 2))
    logs = np.empty(batch_size * (n_neg + 1))
    touch = _lazy_buffers(P.shape[0], Q.shape[0], lazy, batch_size, n_neg)
    sync = np.zeros(3, dtype=np.int64)
    shared = (sync, coef, terms, logs, *touch)

    def run(part: int) -> float:
        try:
            out: float = sampled_epoch_part(
                P, Q, BU, BI, has_bias, mP, vP, mQ, vQ, mBU, vBU, mBI, vBI, gP, gQ, gBU, gBI,
                users, items, negs, perm, batch_size, lrs, step0, loss_kind, offset, b1, b2,
                eps, wd, decoupled, b_lo, b_hi, total, part, n_par, lazy, coefs, last_u,
                last_i, Us, *shared,
            )  # fmt: skip
        except BaseException:
            sync[ABORT] = 1  # release the other threads waiting at a barrier
            raise
        return out

    return run_team(run, n_par)[0]
