"""Sequential recommenders: the shared contract plus order-specific behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.models.registry import create
from recforge.testing import ModelContract

# Small networks on short windows: three fits per class must stay quick on a loaded machine.
_SMALL = {"epochs": 12, "max_len": 30, "hidden": 32, "batch_size": 32, "lr": 3e-3}


class TestSASRec(ModelContract):
    model_name = "sasrec"
    config: ClassVar[dict[str, Any]] = dict(_SMALL)
    explicit = False


class TestGRU4Rec(ModelContract):
    model_name = "gru4rec"
    config: ClassVar[dict[str, Any]] = dict(_SMALL)
    explicit = False


class TestBERT4Rec(ModelContract):
    model_name = "bert4rec"
    config: ClassVar[dict[str, Any]] = {**_SMALL, "epochs": 20}
    explicit = False


def _chain_data(n_users: int = 120, n_items: int = 30, length: int = 12) -> Interactions:
    """Users walk the catalogue in a fixed cycle i -> i+1: only order tells what comes next."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(0, n_items))
        for t in range(length):
            rows.append((u, (start + t) % n_items, t))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Interactions.from_frame(frame)


@pytest.fixture(scope="module")
def chain_model() -> Any:
    return create("sasrec", epochs=15, max_len=12, hidden=32, lr=5e-3, dropout=0.0).fit(
        _chain_data()
    )


def test_sasrec_learns_the_order(chain_model: Any) -> None:
    # After ..., 3, 4, 5 the next item is 6; after 5, 4, 3 (reversed) the cycle says 2.
    forward = chain_model.recommend_for_items([3, 4, 5], k=1)
    backward = chain_model.recommend_for_items([5, 4, 3], k=1)
    assert forward.item_ids.tolist() == [6]
    assert backward.item_ids.tolist() != [6]


def test_fold_in_of_own_history_equals_user_scores(chain_model: Any) -> None:
    data = _chain_data()
    from recforge.data.sequences import Sequences

    seq = Sequences.from_interactions(data)
    hist = seq.history(7)
    scores = chain_model.fold_in_scores(hist, np.ones(len(hist), np.float32))
    np.testing.assert_allclose(
        scores, chain_model.score_items(np.array([7]))[0], rtol=1e-5, atol=1e-6
    )


def test_fold_in_batch_reads_stored_order(chain_model: Any) -> None:
    import scipy.sparse as sp

    idx = np.array([3, 4, 5, 5, 4, 3])
    rows = sp.csr_matrix(
        (np.ones(6, np.float32), idx, np.array([0, 3, 6])), shape=(2, chain_model.n_items)
    )
    batch = chain_model.fold_in_scores_batch(rows)
    one = chain_model.fold_in_scores(idx[3:], np.ones(3, np.float32))
    np.testing.assert_allclose(batch[1], one, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batch[0], batch[1])


def test_attention_weights_sum_to_one(chain_model: Any) -> None:
    w = chain_model.attention_to_history(np.array([1, 2, 3, 4]))
    assert w.shape == (4,)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["gru4rec", "bert4rec"])
def test_other_families_learn_the_order(name: str) -> None:
    model = create(name, epochs=20, max_len=12, hidden=32, lr=5e-3, dropout=0.0, batch_size=16).fit(
        _chain_data()
    )
    # A full-length history: BERT4Rec trains on full windows only (every user has 12 events).
    assert model.recommend_for_items(list(range(10)), k=1).item_ids.tolist() == [10]


@pytest.mark.parametrize("loss", ["sampled_ce", "gbce"])
def test_sampled_losses_train(loss: str) -> None:
    data = _chain_data()
    model = create(
        "sasrec", epochs=15, max_len=12, hidden=32, lr=5e-3, dropout=0.0, loss=loss,
        n_negatives=8,
    ).fit(data)  # fmt: skip
    hist = model.history_["train_loss"].to_numpy()
    assert hist[-1] < hist[0]
    assert model.recommend_for_items([3, 4, 5], k=3).item_ids.tolist()[0] == 6


def test_genre_features_are_used() -> None:
    data = _chain_data()
    meta = pd.DataFrame(
        {"genres": [["even"] if i % 2 == 0 else ["odd"] for i in range(30)]},
        index=pd.Index(range(30), name="item_id"),
    )
    data = Interactions.from_frame(data.to_frame(), item_meta=meta)
    model = create("sasrec", epochs=2, max_len=12, hidden=16, use_features=True).fit(data)
    names = [n for n, _ in model.module_.named_parameters()]
    assert "items.proj.weight" in names


def test_validation_metrics_in_history() -> None:
    data = _chain_data()
    from recforge.data.split import leave_latest_out

    split = leave_latest_out(data)
    model = create(
        "sasrec", epochs=3, max_len=12, hidden=16, patience=2, monitor="valid_ndcg@10",
        monitor_mode="max",
    ).fit(split.train, valid=split.test)  # fmt: skip
    assert {"valid_loss", "valid_ndcg@10"} <= set(model.history_.columns)
    assert np.isfinite(model.history_["valid_ndcg@10"]).all()


def test_window_ce_hand_computed() -> None:
    import torch

    from recforge.models.sequential import _window_ce

    target = torch.tensor([[1, 3, 0, 2]])  # items 0, 2, (no target), 1
    keep = target > 0
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    lse = torch.logsumexp(logits, dim=1)
    # position 0 -> items 0, 2; position 1 -> items 2 (col 2 has none); position 3 -> item 1.
    want = ((lse[0] - (1.0 + 3.0) / 2) + (lse[1] - 0.0) + (lse[2] - 0.0)) / 3
    got = _window_ce(logits, target, keep, window=2)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_export_sasrec_run(chain_model: Any, tmp_path: Any) -> None:
    """A saved sequential run exports every user's top-k (the store matches recommend)."""
    from recforge.export import export_run
    from recforge.store import open_store

    run = chain_model.save(tmp_path / "run")
    url = f"sqlite:///{tmp_path / 'recs.db'}"
    result = export_run(run, url, k=3, version="v1")
    assert result.users == chain_model.n_users and result.rows == 3 * chain_model.n_users
    store = open_store(url)
    user = chain_model.users_.ids[5]
    want = chain_model.recommend([user], k=3)[0]
    got = store.get(user, 3, version="v1")
    assert [r.item_id for r in got] == [str(i) for i in want.item_ids]


def test_window_ce_decay_hand_computed() -> None:
    import torch

    from recforge.models.sequential import _window_ce

    target = torch.tensor([[1, 3, 0, 2]])  # items 0, 2, (no target), 1
    keep = target > 0
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    lse = torch.logsumexp(logits, dim=1)
    # position 0 -> item 0 (weight 1), item 2 (weight 0.5); the others have one target each.
    first = ((lse[0] - 1.0) * 1.0 + (lse[0] - 3.0) * 0.5) / 1.5
    want = (first + (lse[1] - 0.0) + (lse[2] - 0.0)) / 3
    got = _window_ce(logits, target, keep, window=2, decay=0.5)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_seen_items_drops_history_keeps_targets() -> None:
    import torch

    from recforge.models.sequential import _seen_items

    def _mask_seen(logits, inputs, target, keep, window, prior=None):  # type: ignore[no-untyped-def]
        blocked = _seen_items(*logits.shape, inputs, target, keep, window, prior)
        return logits.masked_fill(blocked, float("-inf"))

    # One row, items encoded +1: inputs 0, 1, 2 (pad, item 0, item 1); targets items 0, 1, 3.
    inputs = torch.tensor([[0, 1, 2]])
    target = torch.tensor([[1, 2, 4]])
    keep = target > 0
    logits = torch.zeros(3, 4)
    out = _mask_seen(logits, inputs, target, keep, window=1)
    inf = float("-inf")
    # position 0 has read nothing; position 1 read item 0; position 2 read items 0 and 1.
    assert out.tolist() == [[0, 0, 0, 0], [inf, 0, 0, 0], [inf, inf, 0, 0]]
    # With a window of 2, position 1's targets are items 1 and 3: item 0 (read) stays masked;
    # a re-watched target stays in: position 2 reads item 1 and targets it again here.
    again = torch.tensor([[1, 2, 2]])
    out = _mask_seen(logits, inputs, again, again > 0, window=2)
    assert out.tolist() == [[0, 0, 0, 0], [inf, 0, 0, 0], [inf, 0, 0, 0]]


def test_exclude_seen_trains_finite_and_learns_order() -> None:
    model = create(
        "sasrec", epochs=15, max_len=12, hidden=32, lr=5e-3, dropout=0.0, exclude_seen=True,
        target_window=2, window_decay=0.5,
    ).fit(_chain_data())  # fmt: skip
    assert np.isfinite(model.history_["train_loss"]).all()
    assert model.recommend_for_items([3, 4, 5], k=1).item_ids.tolist() == [6]


def test_ce_only_options_refused_with_sampled_losses() -> None:
    from recforge.errors import ConfigError

    with pytest.raises(ConfigError, match="exclude_seen"):
        create("sasrec", loss="gbce", exclude_seen=True)
    with pytest.raises(ConfigError, match="window_decay"):
        create("sasrec", loss="sampled_ce", window_decay=0.5)


def test_bert4rec_refuses_next_item_options() -> None:
    from recforge.errors import ConfigError

    for bad in ({"exclude_seen": True}, {"target_window": 5}, {"window_decay": 0.5}):
        with pytest.raises(ConfigError, match="next-item options"):
            create("bert4rec", **bad)


def test_explanations_show_attention_beside_the_occlusion_weights(chain_model: Any) -> None:
    hist = [3, 4, 5, 6, 7]
    exp = chain_model.explain(hist, 8, k=3)
    # The weights stay the faithfulness-tested occlusion; attention is an extra field.
    assert exp.method == "occlusion"
    idx = chain_model.items_.index(hist)
    t = chain_model.items_.index_one(8)
    full = chain_model.fold_in_scores(idx, np.ones(5, np.float32))[t]
    for c in exp.contributions:
        keep = idx != chain_model.items_.index_one(c.item_id)
        drop = chain_model.fold_in_scores(idx[keep], np.ones(4, np.float32))[t]
        assert c.weight == pytest.approx(float(full - drop), abs=1e-5)
    w = chain_model.attention_to_history(idx)
    want = np.argsort(-w, kind="stable")[:3]
    assert exp.attention is not None
    assert [c.item_id for c in exp.attention] == [hist[j] for j in want.tolist()]
    assert [c.weight for c in exp.attention] == pytest.approx(w[want].tolist(), abs=1e-6)
    assert exp.to_dict()["attention"][0]["item_id"] == hist[int(want[0])]
    # Models without attention say so with None.
    gru = create("gru4rec", epochs=1, max_len=12, hidden=8).fit(_chain_data(20, 30, 6))
    assert gru.explain(hist, 8, k=3).attention is None


def test_cli_and_api_show_attention(
    chain_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from recforge.cli import main
    from recforge.serve.app import create_app
    from recforge.serve.settings import Settings

    run = chain_model.save(tmp_path / "sasrec")
    assert main(["explain", str(run), "--user", "7", "--item", "1", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "Attention of the model's last state" in out and "residual" in out
    with TestClient(create_app(Settings(run=str(run)))) as client:
        body = client.get("/users/7/recommendations?k=3&explain=true").json()
        plain = client.get("/users/7/recommendations?k=3").json()
    exp = chain_model.explain(7, int(body["items"][0]["item_id"]), k=3)
    assert exp.attention is not None
    for it in body["items"]:
        assert [a["item_id"] for a in it["attention"]] == [str(c.item_id) for c in exp.attention]
        assert it["because"] is not None  # beside, not instead
    assert all(it["attention"] is None for it in plain["items"])


def test_seen_items_with_prior_drops_earlier_windows_items() -> None:
    import torch

    from recforge.models.sequential import _seen_items

    def _mask_seen(logits, inputs, target, keep, window, prior=None):  # type: ignore[no-untyped-def]
        blocked = _seen_items(*logits.shape, inputs, target, keep, window, prior)
        return logits.masked_fill(blocked, float("-inf"))

    # Two rows; row 0's user read items 2 and 3 before this window, row 1's user nothing.
    inputs = torch.tensor([[0, 1], [1, 2]])
    target = torch.tensor([[1, 4], [2, 3]])  # row 0 re-watches item 3 (coded 4) at position 1
    keep = target > 0
    prior = torch.tensor([[3, 4], [0, 0]])
    logits = torch.zeros(4, 4)
    out = _mask_seen(logits, inputs, target, keep, window=1, prior=prior)
    inf = float("-inf")
    # row 0: position 0 has read items 2, 3 (earlier) and its target is item 0; position 1 has
    # read item 0 and 2, 3 earlier, but its target item 3 stays in. Row 1 is the window case.
    assert out.tolist() == [[0, 0, inf, inf], [inf, 0, inf, 0], [inf, 0, 0, 0], [inf, inf, 0, 0]]
    assert _mask_seen(logits, inputs, target, keep, 1, prior=None).tolist()[:2] == [
        [0, 0, 0, 0],
        [inf, 0, 0, 0],
    ]


def test_exclude_seen_history_scope_changes_only_long_histories() -> None:
    from recforge.data.sequences import Sequences

    data = _chain_data(n_users=40, n_items=30, length=12)
    base = {"epochs": 3, "max_len": 12, "hidden": 16, "exclude_seen": True, "dropout": 0.0}
    # Every history fits one window: the earlier-history set is empty, the fits are identical.
    scopes = ("window", "history")
    short = [create("sasrec", **base, exclude_seen_scope=s).fit(data) for s in scopes]
    users = np.arange(5)
    np.testing.assert_array_equal(short[0].score_items(users), short[1].score_items(users))
    # Windows of 4 over 12-event histories: the scope now reaches earlier windows' items.
    long = [create("sasrec", **{**base, "max_len": 4}, exclude_seen_scope=s) for s in scopes]
    for model in long:
        model.fit(data)
    assert not np.allclose(long[0].score_items(users), long[1].score_items(users))
    assert np.isfinite(long[1].history_["train_loss"]).all()
    # The default trains on the window tensors alone; "history" adds each window's priors.
    long[0]._sequences = long[1]._sequences = Sequences.from_interactions(data)
    plain, _ = long[0].training_setup(data)
    wide, _ = long[1].training_setup(data)
    assert set(plain) == {"input", "target"}
    want = Sequences.from_interactions(data).window_priors(4)
    np.testing.assert_array_equal(wide["prior"].numpy(), want)


def test_exclude_seen_scope_needs_exclude_seen() -> None:
    from recforge.errors import ConfigError

    with pytest.raises(ConfigError, match="exclude_seen_scope"):
        create("sasrec", exclude_seen_scope="history")
    assert create("gru4rec", exclude_seen=True, exclude_seen_scope="history") is not None


class TestSASRecEnsemble(ModelContract):
    """Two SASRec networks side by side pass the whole contract (save/load, determinism,
    fold-in, batch equals single, ...)."""

    model_name = "sasrec"
    config: ClassVar[dict[str, Any]] = {**_SMALL, "ensemble": 2}
    explicit = False


def test_ensemble_scores_are_the_members_mean_log_softmax() -> None:
    import torch

    from recforge.models.sequential import SequenceEnsemble

    model = create("sasrec", epochs=6, max_len=12, hidden=16, lr=5e-3, dropout=0.0, ensemble=2).fit(
        _chain_data()
    )
    net = model._module()
    assert isinstance(net, SequenceEnsemble) and len(net.members) == 2
    seqs = torch.from_numpy(model.sequences_[:5])
    with torch.no_grad():
        parts = [torch.log_softmax(m.score_last(seqs), -1) for m in net.members]
        # Different initialisations: the members are different networks.
        assert not torch.allclose(parts[0], parts[1])
        want = ((parts[0] + parts[1]) / 2).numpy()
    np.testing.assert_allclose(model.score_items(np.arange(5)), want, rtol=1e-5, atol=1e-5)
    # The ensemble learns the order too, and its attention is the members' mean (sums to 1).
    assert model.recommend_for_items([3, 4, 5], k=1).item_ids.tolist() == [6]
    w = model.attention_to_history(np.array([1, 2, 3, 4]))
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0, abs=1e-5)
    assert model.item_vectors().shape == (model.n_items, 32)


def test_ensemble_members_train_as_they_would_alone() -> None:
    """The ensemble's loss is the members' sum: each member's gradient is its own loss's."""
    import torch

    from recforge.models.sequential import EnsembleLoss, NextItemLoss, SequenceEnsemble

    model = create("sasrec", epochs=1, max_len=8, hidden=8, dropout=0.0, ensemble=2)
    model.fit(_chain_data(n_users=20, length=8))
    net = model._module()
    assert isinstance(net, SequenceEnsemble)
    inner = NextItemLoss("ce", model.n_items)
    batch = {"input": torch.from_numpy(model.sequences_[:6, :-1]),
             "target": torch.from_numpy(model.sequences_[:6, 1:])}  # fmt: skip
    net.zero_grad()
    EnsembleLoss(inner).loss(net, batch).backward()
    together = [p.grad.clone() for p in net.members[1].parameters() if p.grad is not None]
    net.zero_grad()
    inner.loss(net.members[1], batch).backward()
    alone = [p.grad.clone() for p in net.members[1].parameters() if p.grad is not None]
    assert len(together) == len(alone) > 0
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b)


def _two_block_matrix() -> Any:
    """Users 0-39 use items 0-9 only, users 40-79 items 10-19 only (items 20-21: nobody)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(4)
    dense = np.zeros((80, 22))
    dense[:40, :10] = rng.random((40, 10)) < 0.5
    dense[40:, 10:20] = rng.random((40, 10)) < 0.5
    return sp.csr_matrix(dense)


def test_svd_item_factors_put_items_that_share_users_together() -> None:
    from recforge.models.item_factors import svd_item_factors

    x = _two_block_matrix()
    f = svd_item_factors(x, 4, 0.05)
    assert f.shape == (22, 4) and f.dtype == np.float32
    assert float(f.std()) == pytest.approx(0.05, rel=1e-5)
    assert not f[20:].any()  # items nobody used stay at zero
    unit = f[:20] / np.linalg.norm(f[:20], axis=1, keepdims=True)
    cos = unit @ unit.T
    same = np.mean(
        [cos[a, b] for a in range(20) for b in range(20) if a != b and a // 10 == b // 10]
    )
    other = np.mean([abs(cos[a, b]) for a in range(10) for b in range(10, 20)])
    assert same > 0.5 and other < 0.2, (same, other)
    assert np.array_equal(f, svd_item_factors(x, 4, 0.05))  # deterministic
    wide = svd_item_factors(x, 100, 0.05)  # rank capped at min(shape) - 1, the rest zero
    assert wide.shape == (22, 100) and not wide[:, 21:].any()


def _item_table(model: Any) -> np.ndarray:
    items = [m for m in model.module_.modules() if type(m).__name__ == "ItemEmbedding"]
    return np.stack([m.emb.weight.detach().numpy()[1 : m.n_items + 1] for m in items])


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("ensemble", [1, 2])
def test_svd_item_init_adds_the_factors_to_every_item_table(name: str, ensemble: int) -> None:
    # One step at a negligible rate: the item tables are their initialisation. The "svd"
    # model's minus the "normal" model's (same seed, so the same normal draws) is the factors,
    # for every ensemble member; the fits are deterministic.
    from recforge.models.item_factors import svd_item_factors

    data = _chain_data()
    opts = {"epochs": 1, "max_len": 12, "hidden": 8, "lr": 1e-12, "ensemble": ensemble}
    normal = create(name, **opts).fit(data)
    svd = create(name, item_init="svd", item_init_scale=0.1, **opts).fit(data)
    want = svd_item_factors(data.csr("binary"), 8, 0.1)
    diff = _item_table(svd) - _item_table(normal)
    assert diff.shape[0] == ensemble
    for member in diff:
        np.testing.assert_allclose(member, want, atol=1e-6)
    again = create(name, item_init="svd", item_init_scale=0.1, **opts).fit(data)
    np.testing.assert_array_equal(_item_table(again), _item_table(svd))
    assert svd._item_init is None  # only held during the fit


def test_svd_item_init_reads_only_the_events_the_sequences_keep() -> None:
    # With positive_threshold, low ratings leave the sequences and the SVD alike.
    import scipy.sparse as sp

    from recforge.models.item_factors import svd_item_factors

    frame = _chain_data().to_frame()
    frame["rating"] = np.where(np.arange(len(frame)) % 3 == 0, 1.0, 5.0)
    data = Interactions.from_frame(frame)
    opts = {"epochs": 1, "max_len": 12, "hidden": 8, "lr": 1e-12, "positive_threshold": 4.0}
    normal = create("sasrec", **opts).fit(data)
    svd = create("sasrec", item_init="svd", **opts).fit(data)
    kept = data.rating >= 4.0
    x = sp.csr_matrix(
        (np.ones(int(kept.sum())), (data.user_idx[kept], data.item_idx[kept])),
        shape=(data.n_users, data.n_items),
    )
    want = svd_item_factors(x, 8, 0.05)
    assert not np.allclose(want, svd_item_factors(data.csr("binary"), 8, 0.05), atol=1e-3)
    np.testing.assert_allclose((_item_table(svd) - _item_table(normal))[0], want, atol=1e-6)
