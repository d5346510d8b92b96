"""The fused numba epoch of mf / biased_mf: the torch loop's results, deterministic, faster path.

The fused epoch (recforge.train.fused_mf) claims to run the very algorithm of the Trainer's torch
loop (same rows in the same order, same negatives, same loss, torch's Adam/AdamW update on the
optimizer's own state), so after a few epochs its weights and its history must equal the torch
backend's up to float rounding. Planted data, small enough for a second each.
"""

from __future__ import annotations

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
        _fit("biased_mf", True, "numba", optimizer="sgd")


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


def test_negatives_drawn_beside_the_kernel_give_the_serial_fit_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With two threads an epoch's negatives are drawn range by range in a worker thread while
    # the kernel runs the ranges already drawn: same random numbers, same items, same epoch.
    from recforge.train import fused_mf

    launched: list[int] = []
    real_background = fused_mf.background

    def spy(fn: Any) -> Any:
        launched.append(1)
        return real_background(fn)

    # ~70k draws an epoch (the compiled sampler's range); far below the work that earns the
    # second thread by default (threads_for), so the overlap is forced here.
    monkeypatch.setattr(fused_mf, "threads_for", lambda work_ms, requested=None: requested or 1)
    monkeypatch.setattr(fused_mf, "background", spy)
    fits = []
    for n in (1, 2):
        split = planted_implicit(3, n_users=400, n_items=300, density=0.3)
        model = create(
            "mf",
            {"loss": "bpr", "epochs": 2, "batch_size": 256, "verbose": False, "seed": 5,
             "num_threads": n, "backend": "numba"},
        )  # fmt: skip
        assert isinstance(model, NeuralRecommender)
        fits.append(model.fit(split.train))
        assert bool(launched) == (n == 2)
    one, two = (f.get_state() for f in fits)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    np.testing.assert_array_equal(
        fits[0].history_["train_loss"].to_numpy(), fits[1].history_["train_loss"].to_numpy()
    )
