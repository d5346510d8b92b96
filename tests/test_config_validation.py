"""Every config field is range-checked, and impossible combinations fail before any work starts."""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types as at
import numpy as np
import pandas as pd
import pytest

from recforge.cli import main
from recforge.config import ModelConfig
from recforge.data.interactions import Interactions
from recforge.data.split import make_split
from recforge.data.synthetic import make_interactions
from recforge.errors import ConfigError
from recforge.eval.evaluate import evaluate, evaluate_ranking, evaluate_ratings
from recforge.models.registry import available, config_class, create
from recforge.pipeline import train_run

#: Numeric fields allowed to have no bound, and why (finiteness is still enforced for floats).
UNBOUNDED_OK = {
    "positive_threshold": "a rating threshold: any finite value on the data's own scale",
}


def _numeric_kind(annotation: Any) -> type | None:
    """int or float for ``int``, ``float``, ``X | None``; None for anything else (bool too)."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    for candidate in (annotation, *args):
        if candidate is bool:
            return None
        if candidate in (int, float):
            return candidate  # type: ignore[no-any-return]
    return None


def _violations(kind: type, metadata: list[Any]) -> list[Any]:
    """Values just outside each declared bound."""
    step = 1 if kind is int else 1e-3
    out: list[Any] = []
    for m in metadata:
        if isinstance(m, at.Ge):
            out.append(m.ge - step)
        elif isinstance(m, at.Gt):
            out.append(m.gt)
        elif isinstance(m, at.Le):
            out.append(m.le + (1 if kind is int else max(abs(m.le), 1.0)))
        elif isinstance(m, at.Lt):
            out.append(m.lt)
    return out


def _unbounded(cls: type[ModelConfig]) -> list[str]:
    """Numeric fields of ``cls`` without any bound (and not excused in UNBOUNDED_OK)."""
    return [
        field
        for field, info in cls.model_fields.items()
        if (kind := _numeric_kind(info.annotation)) is not None
        and not _violations(kind, info.metadata)
        and field not in UNBOUNDED_OK
    ]


def test_the_walker_flags_unbounded_fields() -> None:
    class Loose(ModelConfig):
        alpha: float = 1.0
        count: int | None = None
        flag: bool = True
        name: str = "x"

    assert _unbounded(Loose) == ["alpha", "count"]


def _configs() -> list[tuple[str, type[ModelConfig]]]:
    return [(name, config_class(name)) for name in available()]


@pytest.mark.parametrize(("model", "cls"), _configs())
def test_every_numeric_field_is_bounded_and_enforced(model: str, cls: type[ModelConfig]) -> None:
    cls()  # the defaults themselves are valid
    assert _unbounded(cls) == [], f"{model}: fields without a range check"
    checked = 0
    for field, info in cls.model_fields.items():
        kind = _numeric_kind(info.annotation)
        if kind is None:
            continue
        bad = _violations(kind, info.metadata)
        if kind is float:
            bad += [math.inf, -math.inf, math.nan]  # floats must be finite everywhere
        for value in bad:
            with pytest.raises(ConfigError) as exc:
                create(model, {field: value})
            assert field in str(exc.value) and "\n" not in str(exc.value), (model, field, value)
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize(("model", "cls"), _configs())
def test_tuple_fields_refuse_out_of_range_elements(model: str, cls: type[ModelConfig]) -> None:
    for field, info in cls.model_fields.items():
        args = typing.get_args(info.annotation)
        if typing.get_origin(info.annotation) is not tuple or not args:
            continue
        bad = (-1,) * (2 if args[-1] is not Ellipsis else 1)
        with pytest.raises(ConfigError, match=field):
            create(model, {field: bad})


#: (model, config) -> fragment of the one-line ConfigError.
BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("mf", {"epochs": 0}, "epochs"),
    ("mf", {"lr": math.inf}, "lr"),
    ("mf", {"weight_decay": math.inf}, "weight_decay"),
    ("mf", {"seed": -1}, "seed"),
    ("mf", {"seed": 2**64}, "seed"),
    ("mf", {"optimizer": "adamax"}, "optimizer"),
    ("mf", {"optimizer": "sparse_adam", "weight_decay": 0.1}, "cannot use weight_decay"),
    ("mf", {"betas": (0.9, 1.0)}, "betas"),
    ("mf", {"device": "gpu"}, "device"),
    ("mf", {"monitor": "ndcg"}, "monitor"),
    ("mf", {"monitor": "valid_rmse", "monitor_mode": "max"}, "set monitor_mode = 'min'"),
    ("mult_vae", {"monitor": "valid_ndcg@100", "monitor_mode": "min"}, "monitor_mode = 'max'"),
    # implicit-only models / implicit losses asked for a rating metric (RMSE, MAE)
    ("mult_vae", {"monitor": "valid_rmse"}, "learns from implicit feedback"),
    ("mult_dae", {"monitor": "valid_mae"}, "is a rating metric"),
    ("ncf", {"loss": "bce", "monitor": "valid_rmse"}, "loss='bce' trains on implicit feedback"),
    ("mf", {"loss": "bpr", "monitor": "valid_mae"}, "loss='bpr'"),
    ("two_tower", {"loss": "softmax", "monitor": "valid_rmse"}, "loss='softmax'"),
    ("ncf", {"layers": (0, 4)}, "layers"),
    ("embedding_net", {"dropouts": (1.5,)}, "dropouts"),
    ("autorec", {"hidden": (0,)}, "hidden"),
    ("mult_vae", {"hidden": (-3,)}, "hidden"),
    ("ease", {"reg": 0}, "reg"),
    ("ease", {"memory_budget": "lots"}, "not a memory size"),
    ("item_knn", {"k_neighbors": 0}, "k_neighbors"),
    ("als", {"n_factors": 0}, "n_factors"),
    ("als", {"log_eps": math.inf}, "log_eps"),
    ("biases", {"reg_u": -1}, "reg_u"),
    ("content", {"max_df": 0}, "max_df"),
    ("content", {"hybrid_with": "biases", "hybrid_config": {"reg_u": -1}}, "(biases): reg_u"),
    ("content", {"hybrid_with": "nope"}, "unknown model 'nope'"),
    ("ease", {"memory_budget": "0GB"}, "memory_budget must be positive"),
    ("popularity", {"no_such_key": 1}, "unknown key"),
    ("blend", {"members": [{"model": "ease"}]}, "ease does not predict ratings"),
    ("blend", {"members": [{"model": "als"}]}, "als does not predict ratings"),
    ("blend", {"members": [{"model": "ncf", "config": {"loss": "bce"}}]}, "members.0: ncf"),
]


@pytest.mark.parametrize(("model", "config", "fragment"), BAD_CONFIGS)
def test_bad_config_table(model: str, config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        create(model, config)
    message = str(exc.value)
    assert message.startswith(f"model {model}: "), message
    assert fragment in message and "\n" not in message, message
    assert "Value error," not in message  # pydantic's prefix is stripped


def test_good_monitor_combinations_are_accepted() -> None:
    create("mult_vae", {"monitor": "valid_ndcg@100", "monitor_mode": "max"})
    create("ncf", {"loss": "mse", "monitor": "valid_rmse"})
    create("autorec", {"monitor": "valid_rmse"})


# ---------------------------------------------------------------------- entry points
@pytest.fixture(scope="module")
def explicit_split() -> Any:
    data = make_interactions(n_users=40, n_items=30, density=0.3, seed=5).interactions
    return make_split(data, "random:0.2")


def test_rating_metrics_of_an_implicit_only_model_are_refused(explicit_split: Any) -> None:
    model = create("ease").fit(explicit_split.train)
    assert explicit_split.train.rating_scale is not None  # explicit data, but a ranking model
    with pytest.raises(ConfigError, match="does not predict ratings"):
        evaluate(model, explicit_split, metrics="rating")
    with pytest.raises(ConfigError, match="does not predict ratings"):
        evaluate_ratings(model, explicit_split)


@pytest.mark.parametrize("ks", [(0,), (-1,), ()])
def test_cut_offs_below_one_are_refused(explicit_split: Any, ks: tuple[int, ...]) -> None:
    model = create("popularity").fit(explicit_split.train)
    with pytest.raises(ConfigError, match="ks must be"):
        evaluate_ranking(model, explicit_split, ks=ks)
    with pytest.raises(ConfigError, match="k must be >= 1"):
        model.recommend(explicit_split.train.users.ids[:1], k=0)


def _forbid(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, why: str) -> None:
    """Make ``owner.name`` fail the test if it is ever called."""

    def forbidden(*args: Any) -> Any:
        raise AssertionError(why)

    monkeypatch.setattr(owner, name, forbidden)


def test_ease_refuses_a_catalogue_that_does_not_fit_before_allocating(
    explicit_split: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recforge.models import ease

    _forbid(monkeypatch, ease, "_gram", "EASE allocated its Gram matrix before refusing")
    monkeypatch.setattr(ease, "available_memory_bytes", lambda: 10_000)
    n = explicit_split.train.n_items
    with pytest.raises(ConfigError) as exc:
        create("ease").fit(explicit_split.train)
    need = ease.format_bytes(ease.ease_memory_bytes(n, "auto"))  # the default: float32 first
    assert f"{n} items need about {need}" in str(exc.value)
    assert "only 10.0 KB of memory is available" in str(exc.value)
    monkeypatch.setattr(ease, "available_memory_bytes", lambda: None)  # unknown: budget only
    with pytest.raises(ConfigError, match="over memory_budget='1KB'"):
        create("ease", {"memory_budget": "1KB"}).fit(explicit_split.train)


def test_available_memory_is_a_positive_number() -> None:
    from recforge.models.ease import available_memory_bytes

    avail = available_memory_bytes()
    assert avail is None or avail > 0


def _tiny() -> Interactions:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3],
            "item_id": [1, 2, 1, 3, 2],
            "rating": [4.0, 3.0, 5.0, 2.0, 1.0],
            "timestamp": np.arange(5),
        }
    )
    return Interactions.from_frame(frame, rating_scale=(1.0, 5.0))


def test_a_split_with_nothing_to_evaluate_is_refused_before_fitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recforge.models.baselines import Popularity

    _forbid(monkeypatch, Popularity, "_fit", "fitted before the split was checked")
    out = tmp_path / "run"
    # random:0.1 of 5 ratings puts one rating in test, of a user with no other rating.
    with pytest.raises(ConfigError, match="none of the 1 test users is in the train part"):
        train_run("popularity", _tiny(), split="random:0.1", out=out)
    assert not out.exists()


def test_cli_config_errors_exit_2_before_reading_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "not-read.csv"  # never opened: the config fails first
    out = tmp_path / "run"
    sets = ["--set", "loss=bce", "--set", "monitor=valid_rmse"]
    code = main(["train", "--model", "ncf", "--data", str(missing), "--out", str(out), *sets])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "monitor 'valid_rmse' is a rating metric" in err
    assert not out.exists()
