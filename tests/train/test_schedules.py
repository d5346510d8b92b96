"""Learning-rate schedules: hand-computed values at known steps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from recforge.config import TrainConfig
from recforge.errors import ConfigError
from recforge.train.schedules import ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV, Schedule


def test_constant_is_flat() -> None:
    s = Schedule("constant", 0.1, steps_per_epoch=3, epochs=4)
    assert [s(t) for t in range(12)] == [0.1] * 12


def test_step_decays_at_epoch_boundaries() -> None:
    s = Schedule("step", 1.0, steps_per_epoch=3, epochs=6, step_size=2, step_gamma=0.5)
    got = [s(t) for t in range(18)]
    assert got == [1.0] * 6 + [0.5] * 6 + [0.25] * 6


def test_sgdr_restarts_and_cosine_values() -> None:
    # Cycles (in epochs): [0, 1), [1, 3), [3, 7) with t0=1, mult=2.
    s = Schedule("sgdr", 1.0, steps_per_epoch=4, epochs=7, sgdr_t0=1, sgdr_mult=2, min_lr=0.1)
    assert s(0) == pytest.approx(1.0)
    assert s(2) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through cycle 0: cos(pi/2) = 0
    assert s(4) == pytest.approx(1.0)  # restart at epoch 1
    assert s(8) == pytest.approx(0.55)  # epoch 2 = middle of [1, 3)
    assert s(12) == pytest.approx(1.0)  # restart at epoch 3
    assert s(3) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.75)))
    # Strictly decreasing inside a cycle.
    inside = [s(t) for t in range(12, 28)]
    assert all(a > b for a, b in itertools.pairwise(inside))


def test_one_cycle_warms_up_then_anneals() -> None:
    lr = 0.01
    s = Schedule("one_cycle", lr, steps_per_epoch=10, epochs=4, pct_start=0.25)
    values = np.array([s(t) for t in range(40)])
    assert values[0] == pytest.approx(lr / ONE_CYCLE_DIV)
    assert values.max() == pytest.approx(lr)
    assert int(values.argmax()) == 10  # 25% of 40 steps
    assert values[-1] == pytest.approx(lr / ONE_CYCLE_DIV / ONE_CYCLE_FINAL_DIV)
    assert np.all(np.diff(values[:11]) > 0)
    assert np.all(np.diff(values[10:]) < 0)


def test_steps_past_the_end_keep_the_last_rate() -> None:
    s = Schedule("one_cycle", 0.01, steps_per_epoch=2, epochs=2)
    assert s(100) == s(3)


def test_apply_sets_every_param_group() -> None:
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opts: list[torch.optim.Optimizer] = [
        torch.optim.SGD([{"params": [p1]}, {"params": [p2]}], lr=1.0),
        torch.optim.Adam([p2], lr=1.0),
    ]
    s = Schedule("step", 1.0, steps_per_epoch=1, epochs=4, step_size=1, step_gamma=0.1)
    assert s.apply(opts, 2) == pytest.approx(0.01)
    assert all(g["lr"] == pytest.approx(0.01) for o in opts for g in o.param_groups)


def test_from_config_and_bad_sizes() -> None:
    cfg = TrainConfig(schedule="step", lr=0.2, epochs=3, step_size=1, step_gamma=0.5)
    s = Schedule.from_config(cfg, steps_per_epoch=5)
    assert s.total_steps == 15 and s(5) == pytest.approx(0.1)
    with pytest.raises(ConfigError):
        Schedule("constant", 0.1, steps_per_epoch=0, epochs=1)


@pytest.mark.parametrize("kind", ["constant", "step", "sgdr", "one_cycle"])
def test_rates_are_the_scalar_rates(kind: str) -> None:
    """A compiled epoch's batch rates (``rates``) are the per-step rates to the last bit."""
    s = Schedule(kind, 0.3, steps_per_epoch=7, epochs=5, step_size=2, min_lr=0.01)
    got = s.rates(10, 30)  # past the end too: the last rate is kept
    assert got.dtype == np.float64 and got.shape == (30,)
    assert got.tolist() == [s(t) for t in range(10, 40)]
