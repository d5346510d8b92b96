"""``precision`` option of TrainConfig: fp32 (default, unchanged) and bf16 autocast.

On CPU, torch's autocast runs matmul-like ops (the MLP layers of ncf/two_tower) in bfloat16;
the CUDA versions of these checks live in tests/gpu/test_cuda.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recforge.config import TrainConfig
from recforge.errors import ConfigError
from recforge.models import create
from recforge.models.neural import NeuralRecommender
from recforge.testing import planted_explicit, rating_rmse


def test_precision_default_and_validation() -> None:
    assert TrainConfig().precision == "fp32"
    assert TrainConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="precision"):
        create("biased_mf", precision="int8")


def test_fp32_is_the_unchanged_cpu_path() -> None:
    data = planted_explicit(0)
    a = create("ncf", device="cpu", epochs=2, verbose=False).fit(data.train)
    b = create("ncf", device="cpu", epochs=2, verbose=False, precision="fp32").fit(data.train)
    users = np.arange(30)
    np.testing.assert_array_equal(a.score_items(users), b.score_items(users))


CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    ],
)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("name", ["ncf", "two_tower"])
def test_bf16_autocast_trains_as_well_as_fp32(name: str, device: str) -> None:
    data = planted_explicit(0)
    rmse = {}
    for precision in ("fp32", "bf16"):
        model = create(
            name, device=device, precision=precision, epochs=6, verbose=False, seed=0
        ).fit(data.train)
        assert isinstance(model, NeuralRecommender)
        assert np.isfinite(model.history_["train_loss"]).all()
        assert all(p.dtype == torch.float32 for p in model.module_.parameters())
        rmse[precision] = rating_rmse(model, data.test)
    assert rmse["bf16"] <= 1.05 * rmse["fp32"]
    assert rmse["bf16"] != rmse["fp32"]  # autocast really ran in lower precision
