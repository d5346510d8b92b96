"""Every torch-backed model on CUDA: fit, score, persist, bf16 autocast. Skipped without CUDA.

The numpy/scipy families (baselines, k-NN, content, EASE, ALS) run on the CPU by design and are
not repeated here. Each neural model runs the full shared :class:`ModelContract` with
``device="cuda"`` (known-answer ranking, RMSE, save/load, fold-in, batching), with tolerances
loosened where CUDA kernels are not bit-reproducible (atomic adds in embedding backward, other
matmul kernels for other batch shapes). Run with ``pytest -m gpu tests/gpu tests/train`` on a CUDA
machine: the bf16-autocast comparison is tests/train/test_precision.py, parametrised over CPU and
CUDA (its CUDA case carries the ``gpu`` marker).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recforge.artifacts import load_run, save_run
from recforge.models import create
from recforge.models.neural import NeuralRecommender
from recforge.testing import ModelContract, planted_explicit

CUDA = torch.cuda.is_available()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA, reason="needs CUDA (torch.cuda.is_available() is False)"),
]

#: (class name, model, config, explicit): the neural cases of tests/models/test_contract.py.
NEURAL_CASES: list[tuple[str, str, Mapping[str, Any], bool]] = [
    ("NCFNeuMFExplicit", "ncf", {"variant": "neumf", "epochs": 10}, True),
    ("NCFMLPExplicit", "ncf", {"variant": "mlp", "epochs": 10}, True),
    ("NCFGMFImplicit", "ncf", {"variant": "gmf", "epochs": 10, "lr": 1e-2}, False),
    ("TwoTowerExplicit", "two_tower", {"epochs": 10}, True),
    ("TwoTowerImplicit", "two_tower", {"epochs": 10, "batch_size": 256}, False),
    ("MFExplicit", "mf", {}, True),
    ("MFImplicit", "mf", {"loss": "bpr"}, False),
    ("BiasedMF", "biased_mf", {}, True),
    ("BiasedMFImplicit", "biased_mf", {"loss": "bce"}, False),
    ("EmbeddingNet", "embedding_net", {}, True),
    (
        "AutoRecItem",
        "autorec",
        {"variant": "item", "batch_size": 64, "epochs": 40, "reg": 10.0},
        True,
    ),
    ("AutoRecUser", "autorec", {"variant": "user"}, True),
    (
        "MultVAE",
        "mult_vae",
        {"epochs": 30, "hidden": [64], "latent": 16, "batch_size": 100},
        False,
    ),
    (
        "MultDAE",
        "mult_dae",
        {"epochs": 30, "hidden": [64], "latent": 16, "batch_size": 100},
        False,
    ),
]


def _cuda_contract(name: str, model: str, config: Mapping[str, Any], explicit: bool) -> type:
    attrs = {
        "model_name": model,
        "config": {**config, "device": "cuda"},
        "explicit": explicit,
        # CUDA embedding backward accumulates with atomics: same seed, tiny differences.
        "same_seed_atol": 1e-3,
        "batch_rtol": 1e-4,
        "batch_atol": 1e-5,
        "pytestmark": pytestmark,
    }
    return type(f"TestCuda{name}", (ModelContract,), attrs)


for _case in NEURAL_CASES:
    globals()[f"TestCuda{_case[0]}"] = _cuda_contract(*_case)


@pytest.mark.parametrize("name", ["biased_mf", "ncf", "two_tower", "autorec", "mult_vae"])
def test_model_lives_and_scores_on_cuda(name: str) -> None:
    data = planted_explicit(0)
    model = create(name, device="cuda", epochs=3, verbose=False).fit(data.train)
    assert isinstance(model, NeuralRecommender)
    assert model.device_.type == "cuda"
    assert all(p.device.type == "cuda" for p in model.module_.parameters())
    scores = model.score_items(np.arange(10))
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32
    assert scores.shape == (10, model.n_items) and np.isfinite(scores).all()


def test_cpu_device_stays_on_cpu_when_cuda_exists() -> None:
    data = planted_explicit(0)
    model = create("biased_mf", device="cpu", epochs=2, verbose=False).fit(data.train)
    assert isinstance(model, NeuralRecommender)
    assert model.device_.type == "cpu"
    assert all(p.device.type == "cpu" for p in model.module_.parameters())


def test_cuda_run_saves_and_loads_with_identical_scores(tmp_path: Path) -> None:
    data = planted_explicit(0)
    model = create("biased_mf", device="cuda", epochs=3, verbose=False).fit(data.train)
    before = model.score_items(np.arange(20))
    run = save_run(tmp_path / "run", model)
    loaded = load_run(run).model
    assert isinstance(loaded, NeuralRecommender) and loaded.device_.type == "cuda"
    np.testing.assert_allclose(loaded.score_items(np.arange(20)), before, rtol=1e-5, atol=1e-6)
