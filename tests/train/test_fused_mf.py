"""The fused numba epoch of mf / biased_mf: the torch loop's results, deterministic, faster path.

The fused epoch (recforge.train.fused_mf) claims to run the very algorithm of the Trainer's torch
loop (same rows in the same order, same negatives, same loss, torch's Adam/AdamW update on the
optimizer's own state), so after a few epochs its weights and its history must equal the torch
backend's up to float rounding. Planted data, small enough for a second each.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recforge.errors import ConfigError
from recforge.models import create
from recforge.models.neural import NeuralRecommender
from recforge.testing import planted_explicit, planted_implicit
from recforge.train.checkpoint import CheckpointPolicy, training_context
from recforge.train.fused_mf import FusedMFEpoch, numba_available
from recforge.train.sampling import NegativeSampler

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba is not installed")

SMALL = {"n_users": 80, "n_items": 60, "density": 0.3}


def _fit(name: str, explicit: bool, backend: str, **cfg: Any) -> NeuralRecommender:
    split = planted_explicit(1, **SMALL) if explicit else planted_implicit(1, **SMALL)
    base = {"epochs": 3, "batch_size": 64, "verbose": False, "device": "cpu", "seed": 7}
    model = create(name, {**base, **cfg, "backend": backend})
    assert isinstance(model, NeuralRecommender)
    return model.fit(split.train)


def _bpr_fit(threads: int, *, big: bool, **cfg: Any) -> NeuralRecommender:
    """A numba BPR fit at ``threads`` on planted data (seed 3): 400 × 300 users × items at
    density 0.3, 2 epochs of 256 (``big``), else 120 × 150 at 0.2, 3 epochs of 64."""
    if big:
        split = planted_implicit(3, n_users=400, n_items=300, density=0.3)
        shape = {"epochs": 2, "batch_size": 256}
    else:
        split = planted_implicit(3, n_users=120, n_items=150, density=0.2)
        shape = {"epochs": 3, "batch_size": 64}
    model = create(
        "mf",
        {"loss": "bpr", **shape, "verbose": False, "seed": 5, "num_threads": threads,
         "backend": "numba", **cfg},
    )  # fmt: skip
    assert isinstance(model, NeuralRecommender)
    return model.fit(split.train)


def _assert_same_fit(a: NeuralRecommender, b: NeuralRecommender, skip: str = "") -> None:
    sa, sb = a.get_state(), b.get_state()
    assert sa.keys() == sb.keys()
    for key in sa:
        if key == skip:
            continue
        # Adam divides by √v: a last-bit difference of a near-zero gradient can move one cell
        # by a few 1e-6, so single cells get a loose bound and the whole table a tight mean.
        np.testing.assert_allclose(sa[key], sb[key], rtol=1e-3, atol=3e-5, err_msg=key)
        scale = float(np.abs(sb[key]).mean()) + 1e-12
        assert float(np.abs(sa[key] - sb[key]).mean()) < 1e-4 * scale, key
    np.testing.assert_allclose(
        a.history_["train_loss"].to_numpy(), b.history_["train_loss"].to_numpy(), rtol=1e-5
    )
    assert list(a.history_["lr"]) == list(b.history_["lr"])


@pytest.mark.parametrize(
    ("name", "explicit", "cfg"),
    [
        ("biased_mf", True, {}),  # AdamW, y_range sigmoid, batch L2 reg 0.05 on rows and biases
        ("biased_mf", True, {"y_range": "none", "optimizer": "adam", "weight_decay": 0.01}),
        ("mf", True, {"reg": 0.1}),
        ("mf", False, {"loss": "bpr", "n_factors": 8}),
        ("mf", False, {"loss": "bce", "n_factors": 8, "reg": 0.01, "n_negatives": 2}),
        ("biased_mf", False, {"loss": "bpr", "n_factors": 4, "reg": 0.02}),
        # Plain SGD (mse_sgd_epoch): mini-batches, then one rating a batch (Funk's update).
        (
            "biased_mf",
            True,
            {
                "optimizer": "sgd",
                "momentum": 0.0,
                "weight_decay": 0.0,
                "lr": 0.05,
                "schedule": "one_cycle",
            },
        ),
        ("funk_svd", True, {"batch_size": 1, "n_factors": 8}),
        ("funk_svd", True, {"batch_size": 1, "n_factors": 8, "y_range": "auto", "reg": 0.0}),
    ],
)
def test_fused_epoch_equals_the_torch_loop(name: str, explicit: bool, cfg: dict[str, Any]) -> None:
    fused = _fit(name, explicit, "numba", **cfg)
    assert isinstance(fused.train_result_, object)
    torch_fit = _fit(name, explicit, "torch", **cfg)
    # Under BPR a user's bias cancels in s⁺ − s⁻: its gradient is summation noise (~1e-9) that
    # Adam scales up to full steps, in either backend; the ranking never sees it.
    pairwise = cfg.get("loss") == "bpr"
    _assert_same_fit(fused, torch_fit, "module.inner.user_bias.weight" if pairwise else "")
    # The fused fit actually trained (not an untouched initialisation that trivially matches).
    assert fused.history_["train_loss"].iloc[-1] < fused.history_["train_loss"].iloc[0]


def test_fused_fit_is_bit_identical_for_a_seed() -> None:
    a = _fit("mf", False, "numba", loss="bpr", n_factors=8)
    b = _fit("mf", False, "numba", loss="bpr", n_factors=8)
    for key, value in a.get_state().items():
        assert np.array_equal(value, b.get_state()[key]), key
    c = _fit("mf", False, "numba", loss="bpr", n_factors=8, seed=8)
    assert not np.array_equal(c.get_state()["module.inner.item_emb.weight"],
                              a.get_state()["module.inner.item_emb.weight"])  # fmt: skip


def test_auto_backend_uses_the_fused_epoch_and_torch_when_unsupported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    original = FusedMFEpoch.run

    def spy(self: FusedMFEpoch, *args: Any) -> float:
        seen.append("fused")
        return original(self, *args)

    monkeypatch.setattr(FusedMFEpoch, "run", spy)
    _fit("biased_mf", True, "auto")
    assert seen == ["fused"] * 3
    seen.clear()
    _fit("biased_mf", True, "auto", grad_clip=1.0)  # outside the kernel: the torch loop
    assert seen == []
    _fit("biased_mf", True, "torch")
    assert seen == []


def test_numba_backend_refuses_an_unsupported_setup() -> None:
    with pytest.raises(ConfigError, match="backend 'numba'"):
        _fit("biased_mf", True, "numba", optimizer="sgd")  # momentum 0.9, weight decay 0.1
    with pytest.raises(ConfigError, match="backend 'numba'"):
        _fit("funk_svd", True, "numba", momentum=0.5)


def test_funk_svd_runs_the_sgd_kernel_and_touches_only_rated_rows() -> None:
    """Plain SGD without decay moves only the rows that have ratings: an item nobody rated in
    training keeps its initial factors (AdamW's decay would shrink them)."""
    full = planted_explicit(1, **SMALL).train
    train = full.subset(full.item_idx != 0)  # item 0 stays in the vocabulary, unrated
    model = create("funk_svd", {"epochs": 2, "verbose": False, "seed": 3, "backend": "numba"})
    assert isinstance(model, NeuralRecommender)
    model.fit(train)
    init = model._new_module().inner.item_emb.weight.detach().numpy()  # seeded: the fit's start
    after = model.get_state()["module.inner.item_emb.weight"]
    rated = np.bincount(train.item_idx, minlength=train.n_items) > 0
    assert not rated[0] and rated[1:].any()
    assert not np.allclose(after[rated], init[rated])
    assert np.array_equal(after[~rated], init[~rated])


def test_fused_fit_checkpoint_resume_continues_identically(tmp_path: Path) -> None:
    # The fused epoch keeps its moments in the torch optimizer's state, so a checkpointed fit
    # that is resumed ends where an uninterrupted one ends.
    whole = _fit("mf", False, "numba", loss="bpr", n_factors=8, epochs=4)
    policy = CheckpointPolicy(tmp_path, every_epochs=2)
    with training_context(checkpoints=policy):
        _fit("mf", False, "numba", loss="bpr", n_factors=8, epochs=4)
    ckpt = next(tmp_path.rglob("*"), None)
    assert ckpt is not None
    with training_context(checkpoints=CheckpointPolicy(tmp_path, every_epochs=2, resume=True)):
        resumed = _fit("mf", False, "numba", loss="bpr", n_factors=8, epochs=4)
    for key, value in whole.get_state().items():
        assert np.array_equal(value, resumed.get_state()[key]), key


def test_compiled_uniform_sampler_draws_the_numpy_items() -> None:
    import recforge.train.sampling as sampling

    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 40, 2000), rng.integers(0, 25, 2000)
    u = np.concatenate([u, np.full(25, 40)])  # user 40 owns every item: no negative (-1)
    i = np.concatenate([i, np.arange(25)])
    users = rng.integers(0, 41, 1 << 17)
    compiled = NegativeSampler(u, i, 41, 25, seed=3).sample(users, 2)
    plain_sampler = NegativeSampler(u, i, 41, 25, seed=3)
    old = sampling._COMPILED_FROM
    sampling._COMPILED_FROM = 1 << 62
    try:
        plain = plain_sampler.sample(users, 2)
    finally:
        sampling._COMPILED_FROM = old
    assert np.array_equal(compiled, plain)
    assert (compiled[users == 40] == -1).all()
    assert not plain_sampler.is_positive(np.repeat(users, 2), plain.reshape(-1))[
        plain.reshape(-1) >= 0
    ].any()


def test_compiled_uniform_draws_match_numpy_on_skewed_users() -> None:
    # The compiled draw counts a user's positives below the rank from a bucket index (buckets of
    # 2^k ranks, ~2 positives each) then walks the bucket: users with no positive, one, all
    # items but one, clustered and spread positives, and ranks at bucket edges (rand 0 and
    # just below 1) must give numpy's searchsorted items.
    rng = np.random.default_rng(1)
    n_items = 5000
    rows = [np.array([], np.int64), np.array([7]), np.delete(np.arange(n_items), 4321),
            np.arange(100, 1100), np.sort(rng.choice(n_items, 700, replace=False)),
            np.arange(0, n_items, 2), np.arange(4990, 5000)]  # fmt: skip
    u = np.concatenate([np.full(len(r), k) for k, r in enumerate(rows)])
    i = np.concatenate(rows)
    users = rng.integers(0, len(rows), 1 << 17)
    compiled_sampler = NegativeSampler(u, i, len(rows), n_items, seed=4)
    rand = compiled_sampler.uniform_random(len(users))
    rand[:14] = [0.0, 1 - 1e-12] * 7
    users[:14] = np.repeat(np.arange(7), 2)
    compiled = compiled_sampler.uniform_items(users, rand)
    free = compiled_sampler._n_free[users]
    ranks = np.floor(rand * np.maximum(free, 1)).astype(np.int64)
    below = np.searchsorted(compiled_sampler._shifted, users * n_items + ranks, side="right")
    plain = np.where(free > 0, ranks + below - compiled_sampler._indptr[users], -1)
    assert np.array_equal(compiled, plain)
    assert not compiled_sampler.is_positive(users, compiled)[compiled >= 0].any()
    assert (compiled[users == 2] == 4321).all()  # the one free item


@pytest.mark.parametrize("kernel", ["serial", "serial-first", "threaded"])
def test_negatives_drawn_beside_the_kernel_give_the_serial_fit_bit_for_bit(
    kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With two threads an epoch's negatives are drawn range by range in a worker thread while
    # the serial kernel runs the ranges already drawn, or all first when that was measured
    # faster, or, when the threaded kernel is in use, all first on every thread: same random
    # numbers, same items, same epoch.
    from recforge.train import fused_mf

    launched: list[int] = []
    mapped: list[int] = []
    real_background, real_map = fused_mf.background, fused_mf.map_in_threads

    def spy(fn: Any) -> Any:
        launched.append(1)
        return real_background(fn)

    def map_spy(fn: Any, items: Any, n: int) -> Any:
        mapped.append(n)
        return real_map(fn, items, n)

    # ~70k draws an epoch (the compiled sampler's range); far below the work that earns the
    # second thread by default (threads_for), so the overlap is forced here.
    monkeypatch.setattr(fused_mf, "threads_for", lambda work_ms, requested=None: requested or 1)
    monkeypatch.setattr(fused_mf, "background", spy)
    monkeypatch.setattr(fused_mf, "map_in_threads", map_spy)
    if kernel.startswith("serial"):
        monkeypatch.setattr(fused_mf, "threaded_engine_usable", lambda: False)
    elif not fused_mf.threaded_engine_usable():
        pytest.skip("the threaded kernel cannot run from this thread")
    # The pickers' choices, forced: the first engine ("threaded" / "beside"), or drawing first.
    first = "first" if kernel == "serial-first" else ""
    choose = lambda self: first if first in self.engines else self.engines[0]  # noqa: E731
    monkeypatch.setattr(fused_mf.EnginePicker, "best", choose)
    monkeypatch.setattr(fused_mf.EnginePicker, "pick", choose)
    fits = []
    for n in (1, 2):
        fits.append(_bpr_fit(n, big=True))
        assert bool(launched) == (n == 2 and kernel == "serial")  # beside the kernel
        assert mapped == ([2, 2] if n == 2 and kernel == "threaded" else [])  # one an epoch
    one, two = (f.get_state() for f in fits)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    np.testing.assert_array_equal(
        fits[0].history_["train_loss"].to_numpy(), fits[1].history_["train_loss"].to_numpy()
    )


# ------------------------------------------------------------------ the threaded (owner) engine
#: The kernels' lazy-Adam arguments when it is off (lazy, coefs, clocks, directions).
_DENSE = (
    0,
    np.zeros((3, 1)),
    np.zeros(1, np.int64),
    np.zeros(1, np.int64),
    tuple(np.zeros((1, 1), np.float32) for _ in range(4)),
)


def _kernel_inputs(has_bias: bool, seed: int = 1) -> tuple[list[np.ndarray], ...]:
    r = np.random.default_rng(seed)
    n_users, n_items, f = 70, 90, 8
    tabs = [
        (r.standard_normal((n_users, f)) * 0.3).astype(np.float32),
        (r.standard_normal((n_items, f)) * 0.3).astype(np.float32),
    ]
    if has_bias:
        tabs += [(r.standard_normal((n, 1)) * 0.3).astype(np.float32) for n in (n_users, n_items)]
    else:
        tabs += [np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32)]
    return (
        tabs,
        [np.zeros_like(t) for t in tabs],
        [np.zeros_like(t) for t in tabs],
        [np.zeros_like(t) for t in tabs],
    )


@pytest.mark.parametrize("kind", [1, 2])  # sampled BCE, BPR
@pytest.mark.parametrize("has_bias", [False, True])
def test_threaded_epoch_is_the_serial_epoch_bit_for_bit(kind: int, has_bias: bool) -> None:
    # Owner-computes: each gradient row receives its terms in the serial order, and the sweep is
    # element-wise, so any thread count (and any split of the batches into calls) gives the
    # serial kernel's tables, moments and loss to the last bit. Negatives of -1 (a user without
    # a free item) and repeated rows are in the data; three epochs, so moments matter.
    from recforge.train import _mf_kernels as kernels

    r = np.random.default_rng(3)
    n = 3000
    users, items = r.integers(0, 70, n), r.integers(0, 90, n)
    negs = r.integers(-1, 90, (n, 3))
    perm = r.permutation(n)
    bs, n_batches = 128, -(-n // 128)
    lrs = np.linspace(0.02, 0.002, n_batches)
    args = (kind, 0.1, 0.9, 0.999, 1e-8, 0.05, True)

    def serial() -> tuple[float, list[np.ndarray]]:
        p, m, v, g = _kernel_inputs(has_bias)
        total = 0.0
        for epoch in range(3):
            total = kernels.mf_epoch(
                *p, has_bias, m[0], v[0], m[1], v[1], m[2], v[2], m[3], v[3], *g,
                users, items, np.zeros(1), negs, perm, bs, lrs, epoch * n_batches, kind, 0.1,
                0.0, 1.0, False, 0.0, *args[2:], 0, n_batches, total, *_DENSE,
            )  # fmt: skip
        return total, p + m + v + g

    def threaded(n_par: int, cuts: list[int]) -> tuple[float, list[np.ndarray]]:
        p, m, v, g = _kernel_inputs(has_bias)
        total = 0.0
        for epoch in range(3):
            for lo, hi in itertools.pairwise(cuts):
                total = kernels.sampled_epoch_threaded(
                    *p, has_bias, m[0], v[0], m[1], v[1], m[2], v[2], m[3], v[3], *g,
                    users, items, negs, perm, bs, lrs, epoch * n_batches, *args[:2],
                    *args[2:], lo, hi, total, n_par, *_DENSE,
                )  # fmt: skip
        return total, p + m + v + g

    want_total, want = serial()
    assert np.abs(want[1] - _kernel_inputs(has_bias)[0][1]).max() > 1e-3  # it trained
    for n_par, cuts in ((1, [0, n_batches]), (2, [0, 5, n_batches]), (3, [0, 1, 9, n_batches])):
        total, got = threaded(n_par, cuts)
        assert total == want_total, n_par
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{n_par} threads")


def test_two_thread_bpr_fit_equals_the_one_thread_fit_whatever_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At 2 threads the picker may run any mix of the threaded and serial kernels; the fit is the
    # 1-thread fit bit for bit. Forced here: threaded only, then alternating call by call.
    from recforge.train import fused_mf

    def fit(threads: int) -> NeuralRecommender:
        return _bpr_fit(threads, big=False, n_factors=8)

    one = fit(1).get_state()
    if not fused_mf.threaded_engine_usable():
        pytest.skip("the threaded kernel cannot run from this thread")
    used: list[str] = []
    for mode in ("threaded", "alternate"):
        used.clear()

        def pick(self: fused_mf.EnginePicker, mode: str = mode) -> str:
            self.calls += 1
            engine = "threaded" if mode == "threaded" or self.calls % 2 else "serial"
            used.append(engine)
            return engine

        monkeypatch.setattr(fused_mf.EnginePicker, "pick", pick)
        two = fit(2).get_state()
        assert "threaded" in used and (mode == "threaded") == ("serial" not in used)
        for key in one:
            np.testing.assert_array_equal(one[key], two[key], err_msg=f"{mode}: {key}")


def _small_sampled_epochs(n_par: int) -> tuple[float, list[np.ndarray]]:
    """Two BPR epochs of 1,000 rows (serial kernel for ``n_par`` 0, else the threaded one)."""
    from recforge.train import _mf_kernels as kernels

    r = np.random.default_rng(5)
    n, bs = 1000, 64
    users, items, negs = r.integers(0, 40, n), r.integers(0, 60, n), r.integers(0, 60, (n, 2))
    perm = r.permutation(n)
    n_batches = -(-n // bs)
    lrs = np.full(n_batches, 0.01)
    p, m, v, g = _kernel_inputs(False)
    state = (*p, False, m[0], v[0], m[1], v[1], m[2], v[2], m[3], v[3], *g)
    adam = (0.9, 0.999, 1e-8, 0.0, True)
    total = 0.0
    for epoch in range(2):
        step0 = epoch * n_batches
        if n_par == 0:
            total = kernels.mf_epoch(
                *state, users, items, np.zeros(1), negs, perm, bs, lrs, step0, 2, 0.0, 0.0,
                1.0, False, 0.0, *adam, 0, n_batches, total, *_DENSE,
            )  # fmt: skip
        else:
            total = kernels.sampled_epoch_threaded(
                *state, users, items, negs, perm, bs, lrs, step0, 2, 0.0, *adam, 0, n_batches,
                total, n_par, *_DENSE,
            )  # fmt: skip
    return total, p + m + v


def test_threaded_engine_runs_in_a_process_forked_after_its_team_started() -> None:
    # The team is Python threads (threads.run_team), renewed in a forked child, so a child
    # forked after the parent ran the threaded kernel runs it too, to the serial result.
    # (numba's OpenMP pool did not survive a fork: children had to keep to the serial kernel.)
    import os
    import signal

    from recforge.train import fused_mf

    want = _small_sampled_epochs(0)
    _small_sampled_epochs(2)  # the parent's team exists now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        signal.alarm(60)  # a hang would fail the test instead of blocking it
        try:
            ok = fused_mf.threaded_engine_usable()
            total, got = _small_sampled_epochs(2)
            ok = ok and total == want[0]
            ok = ok and all(np.array_equal(a, b) for a, b in zip(got, want[1], strict=True))
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_threaded_engine_is_not_used_where_its_barrier_does_not_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A platform without the barrier's pieces (libc's sched_yield, atomics) keeps fits on the
    # serial kernel instead of failing them.
    from recforge.train import _numba_sync, fused_mf

    assert fused_mf._barrier_compiles()

    def broken(state: Any, n: int) -> int:
        raise RuntimeError("no sched_yield to link")

    fused_mf._barrier_compiles.cache_clear()
    monkeypatch.setattr(_numba_sync, "barrier", broken)
    try:
        assert not fused_mf.threaded_engine_usable()
    finally:
        fused_mf._barrier_compiles.cache_clear()


def test_threaded_engine_is_not_used_from_inside_a_worker_thread() -> None:
    # Its team's workers could wait behind their own caller (threads.run_team).
    from recforge.threads import background
    from recforge.train import fused_mf

    assert fused_mf.threaded_engine_usable()
    assert not background(fused_mf.threaded_engine_usable).result()


def test_threaded_epochs_of_the_same_shape_share_one_picker_for_the_process() -> None:
    # The probes are paid once a process for epochs alike (thread count, loss, bias, size).
    import torch

    from recforge.train.fused_mf import _picker

    small = [torch.zeros(100, 8), torch.zeros(50, 8)]
    again = [torch.zeros(100, 8), torch.zeros(50, 8)]
    large = [torch.zeros(5000, 8), torch.zeros(50, 8)]
    a = _picker(2, 2, False, small)
    assert a.engines == ("threaded", "serial")
    assert _picker(2, 2, False, again) is a
    assert _picker(2, 2, False, large) is not a
    assert _picker(3, 2, False, small) is not a
    assert _picker(2, 1, False, small) is not a
    assert _picker(1, 2, False, small).engines == ("serial",)
    # Where the negatives are drawn: its own picker per kind of epoch and event count.
    draws = _picker(2, 2, False, small, 5000)
    assert draws.engines == ("beside", "first") and draws is not a
    assert _picker(2, 2, False, again, 5000) is draws
    assert _picker(2, 2, False, small, 50_000) is not draws


def test_a_threaded_chunk_waits_for_the_negatives_drawn_beside_the_serial_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The serial kernel leads, so an epoch's negatives are drawn beside it in a worker; when the
    # picker then tries the threaded kernel on a chunk, the chunk starts only once every range
    # is drawn (not 3 threads on 2 cores, which its timing would blame on it), and the fit is
    # still the 1-thread fit bit for bit.
    from recforge.train import _mf_kernels, fused_mf

    if not fused_mf.threaded_engine_usable():
        pytest.skip("the threaded kernel cannot run from this thread")

    def fit(threads: int) -> NeuralRecommender:
        return _bpr_fit(threads, big=True, n_factors=8)

    one = fit(1).get_state()
    futures: list[Any] = []
    real_background, real_kernel = fused_mf.background, _mf_kernels.sampled_epoch_threaded
    waited: list[bool] = []

    def spy(fn: Any) -> Any:
        futures.append(real_background(fn))
        return futures[-1]

    def kernel(*args: Any) -> Any:
        waited.append(all(f.done() for f in futures))
        return real_kernel(*args)

    def pick(self: fused_mf.EnginePicker) -> str:
        self.calls += 1
        if "beside" in self.engines:
            return "beside"
        return "threaded" if self.calls % 2 == 0 else "serial"

    monkeypatch.setattr(fused_mf, "threads_for", lambda work_ms, requested=None: requested or 1)
    monkeypatch.setattr(fused_mf, "background", spy)
    monkeypatch.setattr(_mf_kernels, "sampled_epoch_threaded", kernel)
    monkeypatch.setattr(fused_mf.EnginePicker, "pick", pick)
    monkeypatch.setattr(fused_mf.EnginePicker, "best", lambda self: self.engines[-1])  # serial
    two = fit(2).get_state()
    assert futures and waited and all(waited)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
