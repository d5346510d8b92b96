"""Data-parallel training: 2 CPU processes (gloo on 127.0.0.1) against 1.

Tolerances, and why:

* 2 ranks vs 1 rank of the *same* distributed code path: the epoch permutation is the same
  (seeded ``seed + epoch``), and with the global batch fixed, each step's union of the ranks'
  batches is exactly the one-rank batch, so DDP's averaged gradient is the one-rank gradient up
  to floating-point summation order. Weights agree to 1e-5 (absolute), training losses to 1e-6
  (relative).
* 2 ranks vs the plain single-process Trainer: different shuffles, same optimisation problem;
  the test RMSE of the runs agree within 0.02 (measured gap on this data: well under 0.01).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

from recforge.config import TrainConfig
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.pipeline import train_run
from recforge.train import RatingMSE, Trainer, rating_validator
from recforge.train.checkpoint import CheckpointPolicy, training_context
from recforge.train.distributed import distributed_session, shard_indices
from recforge.train.losses import Batch

from .toys import ToyMF

pytestmark = pytest.mark.distributed


def _data(n: int) -> dict[str, torch.Tensor]:
    g = np.random.default_rng(0)
    p, q = g.normal(0, 1, (30, 2)), g.normal(0, 1, (20, 2))
    u, i = g.integers(0, 30, n), g.integers(0, 20, n)
    r = 3.0 + (p[u] * q[i]).sum(1) + g.normal(0, 0.1, n)
    return {
        "user": torch.from_numpy(u),
        "item": torch.from_numpy(i),
        "rating": torch.from_numpy(r).float(),
    }


CFG = {
    "epochs": 4,
    "batch_size": 64,
    "lr": 0.05,
    "seed": 5,
    "verbose": False,
    "device": "cpu",
    "schedule": "one_cycle",
}
MODEL_CFG = {"epochs": 4, "batch_size": 128, "seed": 3, "verbose": False, "num_threads": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(rank),
    }


def _worker(rank: int, world: int, ports: list[int], out: str, csv: str) -> None:
    """One rank of two: a Trainer fit (weights to a file), then a whole ``train_run``."""
    torch.set_num_threads(1)
    os.environ.update(_env(rank, world, ports[0]))
    _toy_fit(rank, world, out)
    _toy_crash_and_resume(rank, world, out, ports[2:])
    # A second process group for the pipeline run (a fresh rendezvous port).
    os.environ["MASTER_PORT"] = str(ports[1])
    res = train_run("biased_mf", csv, config=MODEL_CFG, out=f"{out}/run-{world}", distributed=True)
    assert (res.rank, res.run_dir is None) == (rank, rank != 0)


def _toy_fit(rank: int, world: int, out: str) -> None:
    data = _data(n=600)  # even row count and batch: the two-rank batches tile the one-rank ones
    valid = rating_validator(data["user"][:100], data["item"][:100], data["rating"][:100])
    with distributed_session("cpu") as info, training_context(distributed=info):
        module = ToyMF(bias=3.0)
        result = Trainer(TrainConfig(**CFG)).fit(  # type: ignore[arg-type]
            module, data, RatingMSE(reg=0.01), validate=valid
        )
    save_file(dict(module.state_dict()), f"{out}/toy-{world}-{rank}.safetensors")
    hist = result.history[["train_loss", "valid_loss"]].to_dict("list")
    Path(f"{out}/toy-{world}-{rank}.json").write_text(json.dumps(hist))


class Crash(RuntimeError):
    """Stands in for a killed job."""


class CrashingMSE(RatingMSE):
    """RatingMSE that raises at the first batch of epoch ``crash_at`` (on every rank alike)."""

    def __init__(self, crash_at: int) -> None:
        super().__init__(reg=0.01)
        self.crash_at = crash_at
        self.epoch = -1

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        if self.epoch == self.crash_at:
            raise Crash
        return super().loss(module, batch)


def _toy_crash_and_resume(rank: int, world: int, out: str, ports: list[int]) -> None:
    """The toy fit with a checkpoint every epoch, killed in epoch 3, resumed in a new group."""
    data = _data(n=600)
    valid = rating_validator(data["user"][:100], data["item"][:100], data["rating"][:100])
    policy = CheckpointPolicy(Path(out) / f"ckpt-{world}", every_epochs=1)
    os.environ["MASTER_PORT"] = str(ports[0])
    with (
        distributed_session("cpu") as info,
        training_context(checkpoints=policy, distributed=info),
        pytest.raises(Crash),
    ):
        Trainer(TrainConfig(**CFG)).fit(  # type: ignore[arg-type]
            ToyMF(bias=3.0), data, CrashingMSE(crash_at=2), validate=valid
        )
    os.environ["MASTER_PORT"] = str(ports[1])
    again = replace(policy, resume=True)
    module = ToyMF(bias=3.0)
    with distributed_session("cpu") as info, training_context(checkpoints=again, distributed=info):
        Trainer(TrainConfig(**CFG)).fit(  # type: ignore[arg-type]
            module, data, RatingMSE(reg=0.01), validate=valid
        )
    save_file(dict(module.state_dict()), f"{out}/resumed-{world}-{rank}.safetensors")


def _one_rank(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-rank reference in this process: a gloo group of size 1."""
    with monkeypatch.context() as mp_env:
        for key, value in _env(0, 1, _free_port()).items():
            mp_env.setenv(key, value)
        _toy_fit(0, 1, str(out))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    out = tmp_path_factory.mktemp("ddp")
    inter = make_interactions(n_users=200, n_items=100, density=0.1, seed=2).interactions
    csv = out / "ratings.csv"
    inter.to_frame().to_csv(csv, index=False)
    ports = [_free_port() for _ in range(4)]
    # fork: the children inherit the imported modules (spawn re-imports torch and recforge,
    # seconds per process); this process has started no threads or process group of its own.
    mp.start_processes(
        _worker, args=(2, ports, str(out), str(csv)), nprocs=2, join=True, start_method="fork"
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        _one_rank(out, monkeypatch)
    yield out, csv


def test_two_ranks_match_one_rank(runs: tuple[Path, Path]) -> None:
    out, _ = runs
    one = load_file(str(out / "toy-1-0.safetensors"))
    for rank in (0, 1):
        two = load_file(str(out / f"toy-2-{rank}.safetensors"))
        for key, ref in one.items():
            assert torch.allclose(two[key], ref, rtol=0, atol=1e-5), key
    h1 = json.loads((out / "toy-1-0.json").read_text())
    h2 = json.loads((out / "toy-2-0.json").read_text())
    np.testing.assert_allclose(h2["train_loss"], h1["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(h2["valid_loss"], h1["valid_loss"], rtol=1e-5)


def test_ddp_resume_after_a_crash_is_bit_identical(runs: tuple[Path, Path]) -> None:
    out, _ = runs
    ref = load_file(str(out / "toy-2-0.safetensors"))
    for rank in (0, 1):
        resumed = load_file(str(out / f"resumed-2-{rank}.safetensors"))
        assert all(torch.equal(resumed[k], ref[k]) for k in ref)
    assert [p.name for p in (out / "ckpt-2").iterdir()] == ["fit-000.safetensors"]


def test_ranks_hold_identical_weights(runs: tuple[Path, Path]) -> None:
    out, _ = runs
    a = load_file(str(out / "toy-2-0.safetensors"))
    b = load_file(str(out / "toy-2-1.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_only_rank_zero_writes_and_metrics_match_one_process(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    out, csv = runs
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("run")) == ["run-2"]
    two = json.loads((out / "run-2" / "metrics.json").read_text())
    single = train_run("biased_mf", str(csv), config=MODEL_CFG)
    rmse_2 = two["rating"]["summary"]["rmse"]
    rmse_1 = single.metrics["rating"]["summary"]["rmse"]
    assert abs(rmse_2 - rmse_1) < 0.02, (rmse_2, rmse_1)


def test_shards_follow_distributed_sampler() -> None:
    shards = [shard_indices(7, seed=1, epoch=3, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # ceil(7 / 3), padded
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1 + 3))
    padded = torch.cat([perm, perm[:2]])
    for r, s in enumerate(shards):
        assert s.tolist() == padded[r::3].tolist()
    assert set(torch.cat(shards).tolist()) == set(range(7))


def test_non_trainer_models_refuse_distributed() -> None:
    inter = make_interactions(n_users=20, n_items=10, seed=0).interactions
    with pytest.raises(ConfigError, match="drop --distributed"):
        train_run("ease", inter, distributed=True)
    rated = make_interactions(n_users=20, n_items=10, seed=0).interactions
    with pytest.raises(ConfigError, match="one SGD step per rating"):
        train_run("funk_svd", rated, distributed=True)  # Funk's SGD: a batch of one rating


def test_distributed_outside_torchrun_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    inter = make_interactions(n_users=20, n_items=10, seed=0).interactions
    with pytest.raises(ConfigError, match="torchrun"):
        train_run("biased_mf", inter, config=MODEL_CFG, distributed=True)
