"""Live mode: answer requests from a loaded run (imports torch through the model classes).

For embedding models the user's top-k comes from an :class:`~recforge.index.ItemIndex` over
"retrieval vectors" ``(U, V)`` chosen so that the model's score is ``f(U[u] · V[i])`` for a
monotone ``f`` (the output head's offset / scaled sigmoid). They are derived per family:

* two_tower: its own ``user_vectors``/``item_vectors`` (biases already folded in);
* ALS: ``[x_u; 1; μ + b_u] · [y_i; b_i; 1]`` (explicit) or ``x_u · y_i`` (implicit);
* mf / biased_mf networks: ``p_u · q_i`` and ``[p_u; 1; b_u] · [q_i; b_i; 1]``.

The derivation is *checked* against ``model.score_items`` on a sample of users when the service
loads; models for which no derivation exists or the check fails are served by
``model.recommend`` (exact scoring of every item), so the index can never change an answer
beyond the approximation of the ANN mode.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from recforge.errors import ConfigError, RecError, UnknownIdError
from recforge.fold_in import coerce_id as _coerce
from recforge.fold_in import items_as_ratings, popular_top, popularity, rank_liked, read_history
from recforge.index import ItemIndex
from recforge.serve.catalog import Catalog
from recforge.serve.schemas import Because, Item, ScoredItem
from recforge.serve.settings import Settings

Transform = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
_CHECK_USERS = 32


#: Fold-ins measured faster than this at load run on the event loop; slower ones in a worker
#: thread. A thread hop costs about as much as a closed-form fold-in and, under concurrency,
#: waits for the GIL, so for cheap models inline is faster; a slow (iterative) fold-in inline
#: would stall every other request for its whole duration.
INLINE_FOLD_IN_SECONDS = 0.002

_T = TypeVar("_T")


def _limit_blas_threads(n: int) -> None:
    """At most ``n`` threads in the BLAS behind numpy and scipy, for the whole process.

    A request's matrix products are small (ALS's explanation: a ``k × k`` solve and a few
    ``|H| × k`` products), and OpenBLAS splits even those over every core: its threads then
    spin against each other and against the other requests. Measured on the 2-core machine at
    load ~7: ALS's explanation of 10 items took 3.8 ms with 2 BLAS threads, 1.1 ms with 1.
    """
    # scipy ships its own OpenBLAS, loaded with scipy.linalg: load it first, or it keeps every
    # core (measured: 2 threads in a served item-kNN, whose every ranking then paid a
    # threadpoolctl limit, ~30 µs, and a BLAS call split over spinning threads).
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=n, user_api="blas")


def _identity(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return x


def _head_transform(head: Any) -> Transform:
    """``head.activate`` on a numpy array: in numpy for :class:`OutputHead` (offset and scaled
    sigmoid: ~5 µs on a top-10 row against ~30 µs for torch's ``no_grad`` + ``from_numpy`` +
    two ops on every served request), through torch for any other head."""
    import torch

    from recforge.models.neural import OutputHead

    if isinstance(head, OutputHead):
        offset = np.float32(head.offset.item())
        y_range = head.y_range
        if y_range is None:
            return lambda x: np.asarray(x, dtype=np.float32) + offset
        low, span = np.float32(y_range[0]), np.float32(y_range[1] - y_range[0])

        def scaled(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            z = np.asarray(x, dtype=np.float32) + offset
            out: npt.NDArray[np.float32] = low + span / (np.float32(1.0) + np.exp(-z))
            return out

        return scaled

    def apply(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            out: npt.NDArray[np.float32] = (
                head.activate(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()
            )
        return out

    return apply


def _derive(model: Any) -> tuple[np.ndarray, np.ndarray, Transform] | None:
    """Candidate ``(U, V, f)`` for the families we know; None for the others."""
    n_users = model.n_users
    if hasattr(model, "user_vectors") and callable(model.user_vectors):
        vecs = model.item_vectors()
        head = model._module() if hasattr(model, "_module") else None
        if vecs is None or head is None or not hasattr(head, "activate"):
            return None
        users = model.user_vectors(np.arange(n_users))
        return users, vecs, _head_transform(head)
    if hasattr(model, "user_factors_") and hasattr(model, "item_factors_"):
        x, y = model.user_factors_, model.item_factors_
        if getattr(model, "_explicit", False):
            ones_u, ones_i = np.ones((len(x), 1)), np.ones((len(y), 1))
            mu_bu = (model.global_mean_ + model.user_bias_)[:, None]
            return (
                np.hstack([x, ones_u, mu_bu]),
                np.hstack([y, model.item_bias_[:, None], ones_i]),
                _identity,
            )
        return x, y, _identity
    module = getattr(model, "module_", None)
    inner = getattr(module, "inner", None)
    if module is None or inner is None or not hasattr(module, "activate"):
        return None
    if not (hasattr(inner, "user_emb") and hasattr(inner, "item_emb")):
        return None
    # Only plain dot-product networks (mf, biased_mf); anything with more layers is not u·v.
    if type(inner).__name__ not in {"DotModule", "BiasedDotModule"}:
        return None
    p = inner.user_emb.weight.detach().float().cpu().numpy()
    q = inner.item_emb.weight.detach().float().cpu().numpy()
    if hasattr(inner, "user_bias") and hasattr(inner, "item_bias"):
        bu = inner.user_bias.weight.detach().float().cpu().numpy()
        bi = inner.item_bias.weight.detach().float().cpu().numpy()
        p = np.hstack([p, np.ones((len(p), 1), np.float32), bu])
        q = np.hstack([q, bi, np.ones((len(q), 1), np.float32)])
    return p, q, _head_transform(module)


def retrieval_vectors(model: Any) -> tuple[np.ndarray, np.ndarray, Transform] | None:
    """``(U, V, f)`` with ``model.score_items(u) == f(U[u] @ V.T)``, verified; else None."""
    try:
        found = _derive(model)
    except (AttributeError, TypeError, ValueError, ConfigError):
        return None
    if found is None:
        return None
    users, items, transform = found
    users = np.ascontiguousarray(users, dtype=np.float32)
    items = np.ascontiguousarray(items, dtype=np.float32)
    if users.shape[0] != model.n_users or items.shape[0] != model.n_items:
        return None
    if users.shape[1] != items.shape[1]:
        return None
    sample = np.random.default_rng(0).choice(
        model.n_users, size=min(_CHECK_USERS, model.n_users), replace=False
    )
    want = np.asarray(model.score_items(sample), dtype=np.float32)
    got = transform(users[sample] @ items.T)
    scale = max(1.0, float(np.abs(want).max()))
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-3, atol=1e-3 * scale):
        return None
    return users, items, transform


class LiveBackend:
    """A loaded run: recommendations, fold-in, similar items, history and popularity.

    Args:
        run_dir: the run directory.
        settings: index mode and threshold.
    """

    def __init__(self, run_dir: str | Path, settings: Settings) -> None:
        import torch

        from recforge.artifacts import load_run
        from recforge.export import default_version

        # Per-request work is small; parallelism comes from concurrent requests. More intra-op
        # threads only spin-wait against each other (measured: 30 ms vs 4 ms per fold-in).
        torch.set_num_threads(settings.torch_threads)
        _limit_blas_threads(settings.torch_threads)
        loaded = load_run(run_dir)
        self.run_dir = Path(run_dir)
        self.model = loaded.model
        self.manifest = loaded.manifest
        self.model_name = str(self.model.name)
        self.model_version = default_version(run_dir, loaded.manifest)
        model = self.model
        self._user_kind = model.users_.ids.dtype.kind
        self._item_kind = model.items_.ids.dtype.kind
        self._item_text = np.asarray([str(i) for i in model.items_.ids.tolist()], dtype=object)
        seen = model.seen_.tocsr()
        self._seen_indptr, self._seen_indices = seen.indptr, seen.indices
        self._popular, pop = self._popular_counts = popularity(model)
        self._popularity = pop
        self.catalog = Catalog(
            model.item_meta_,
            {t: float(c) for t, c in zip(self._item_text, pop, strict=True)},
            known_ids=self._item_text,
        )
        self.user_vectors: np.ndarray | None = None
        self.index: ItemIndex | None = None
        self._transform: Transform = _identity
        found = retrieval_vectors(model)
        if found is not None:
            self.user_vectors, items, self._transform = found
            self.index = ItemIndex(items, mode=settings.index, ann_threshold=settings.ann_threshold)
        self.similar_index: ItemIndex | None = None
        vecs = model.item_vectors()
        if vecs is not None:
            vecs = np.asarray(vecs, dtype=np.float32)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            unit = vecs / np.where(norms > 0, norms, 1.0)
            self.similar_index = ItemIndex(
                unit, mode=settings.index, ann_threshold=settings.ann_threshold
            )
        #: Where slow model work runs (:meth:`offload`): its own threads, not the request pool.
        self._model_work = ThreadPoolExecutor(
            max_workers=settings.model_threads, thread_name_prefix="recforge-model"
        )
        #: Whether POST /recommendations may fold in on the event loop (see INLINE_FOLD_IN_SECONDS).
        self.fold_in_inline = self._time_fold_in() < INLINE_FOLD_IN_SECONDS
        from recforge.models.base import Recommender

        #: Explanations are a closed form (not |history| fold-ins): cheap enough for the loop.
        self.explain_inline = self.fold_in_inline and (
            type(model).explain_rows is not Recommender.explain_rows
        )
        self._because_base: dict[int, tuple[str, str | None]] = {}
        #: The model ranks similar items its own way (EASE weights, stored kNN neighbours).
        self._own_similar = type(model).similar_items is not Recommender.similar_items

    async def offload(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the backend's model threads (``Settings.model_threads``), awaited.

        Iterative fold-ins and their explanations are too slow for the event loop and hold the
        GIL most of the time; in the shared request thread pool 16 of them ran at once and each
        took 2-4x the CPU it takes alone (:attr:`Settings.model_threads`). Queued on a few
        threads, they run one after another.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._model_work, functools.partial(fn, *args))

    def _time_fold_in(self) -> float:
        """Best of three fold-ins of the five most popular items, in seconds (inf if it fails).

        Doubles as a warm-up, so the first real request does not pay first-call costs.
        """
        ratings = {str(self._item_text[i]): 4.0 for i in self._popular[:5].tolist()}
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            try:
                self.fold_in(ratings, 10, True)
            except (RecError, NotImplementedError):
                return float("inf")
            best = min(best, time.perf_counter() - start)
        return best

    # ------------------------------------------------------------------ ids
    @property
    def n_users(self) -> int:
        return int(self.model.n_users)

    @property
    def n_items(self) -> int:
        return int(self.model.n_items)

    def user_index(self, user_id: str) -> int | None:
        """Index of a raw user id given as text, or None when unknown."""
        raw = _coerce(user_id, self._user_kind)
        if raw is None:
            return None
        idx = int(self.model.users_.index([raw], missing="negative")[0])
        return idx if idx >= 0 else None

    def item_index(self, item_id: str) -> int | None:
        """Index of a raw item id given as text, or None when unknown."""
        raw = _coerce(item_id, self._item_kind)
        if raw is None:
            return None
        idx = int(self.model.items_.index([raw], missing="negative")[0])
        return idx if idx >= 0 else None

    def _scored(
        self, idx: npt.NDArray[np.int64], scores: npt.NDArray[np.float32]
    ) -> list[ScoredItem]:
        ok = idx >= 0
        out = []
        item = self.catalog.item
        # Validated construction on purpose: pydantic-core builds a ScoredItem in ~1.7 µs,
        # model_construct (pure Python) in ~3.7 µs (measured; Because: 1.0 vs 1.9 µs).
        for rank, (i, s) in enumerate(zip(idx[ok].tolist(), scores[ok].tolist(), strict=True), 1):
            base = item(self._item_text[i])
            out.append(ScoredItem(**base.__dict__, rank=rank, score=float(s)))
        return out

    # ------------------------------------------------------------------ answers
    def recommend(self, user_id: str, k: int, exclude_seen: bool) -> list[ScoredItem] | None:
        """Top-k for a known user (None when unknown)."""
        u = self.user_index(user_id)
        if u is None:
            return None
        return self._scored(*self._recommend_idx(u, k, exclude_seen))

    def _recommend_idx(
        self, u: int, k: int, exclude_seen: bool
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k item indices and served scores of user index ``u`` (-1: unfilled)."""
        if self.index is not None and self.user_vectors is not None:
            seen = self._seen_indices[self._seen_indptr[u] : self._seen_indptr[u + 1]]
            idx, raw = self.index.search(
                self.user_vectors[u], k, exclude=[seen] if exclude_seen else None
            )
            scores = np.where(np.isfinite(raw), self._transform(raw), raw)
            return idx[0], self.model.display_scores(scores[0])
        idx2, val = self.model.recommend_idx(np.asarray([u]), k, exclude_seen=exclude_seen)
        return idx2[0], val[0]

    def popular(self, k: int) -> list[ScoredItem]:
        """The ``k`` most-interacted items of the training data."""
        top = self._popular[:k]
        return self._scored(top, self._popularity[top].astype(np.float32))

    def fold_in(
        self, ratings: Mapping[str, float], k: int, exclude_rated: bool, explain: bool = False
    ) -> list[ScoredItem]:
        """Recommendations for a new user's ratings (unknown items ignored).

        For models trained on implicit feedback, ratings at or below the like threshold are
        dropped before the fold-in (:func:`recforge.explain.liked_only`): a 1★ is no evidence
        that the user wants similar items. They are still excluded from the answer; with no
        liked item left, the answer is the most popular items the user has not rated.
        """
        history = read_history(self.model, ratings)
        known, liked = history.known, history.liked
        if not liked:
            top, counts = popular_top(self.model, history, self._popular_counts, k, exclude_rated)
            popular = self._scored(top, counts)
            for item in popular if explain else []:
                item.because = []  # nothing the user rated raised these: they are just popular
            return popular
        fused = getattr(self.model, "rank_history_top", None) if explain else None
        if fused is not None:
            # Ranked and explained from one pass, as recommend_explained: excluding every
            # rated item is what dropping the disliked ones from a longer list gives.
            hist_items, hist_ratings = self.model._fold_in_inputs(liked)
            exclude = (
                self.model.items_.index(list(known)) if exclude_rated else np.zeros(0, np.int64)
            )
            got = fused(hist_items, hist_ratings, k, exclude, 3, new_user=True)
            if got is not None:
                return self._explained(got, hist_items.astype(np.int64), 3)
        items = self._scored(*rank_liked(self.model, history, k, exclude_rated))
        if explain:
            self.add_because(liked, items)
        return items

    def recommend_explained(
        self, user_id: str, k: int, exclude_seen: bool, n: int = 3
    ) -> list[ScoredItem] | None:
        """:meth:`recommend` with ``because`` filled as :meth:`add_because` fills it (None when
        the user is unknown).

        A model with ``rank_history_top`` (Mult-VAE/DAE) ranks and explains from one pass: its
        screened explanation computes the full history's catalogue-wide logits anyway, so the
        ranking reads them instead of a second, torch forward (:meth:`MultDAE.rank_history_top`;
        same top-k, scores equal to the plain ranking's up to float32 rounding). Every other
        model (and a model's case the fused pass does not cover) ranks, then explains.
        """
        fused = getattr(self.model, "rank_history_top", None)
        u = self.user_index(user_id) if fused is not None and self.index is None else None
        if u is not None and fused is not None:
            from recforge.explain import history_of

            hist_items, hist_ratings = history_of(self.model, u)
            seen = self._seen_indices[self._seen_indptr[u] : self._seen_indptr[u + 1]]
            exclude = seen if exclude_seen else np.zeros(0, dtype=np.int64)
            got = fused(hist_items, hist_ratings, k, exclude, n)
            if got is not None:
                return self._explained(got, hist_items, n)
        u = self.user_index(user_id) if u is None else u
        if u is None:
            return None
        top, scores = self._recommend_idx(u, k, exclude_seen)
        items = self._scored(top, scores)
        self._fill_because(_coerce(user_id, self._user_kind), items, top[top >= 0], n)
        return items

    def _explained(
        self,
        got: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float64]],
        hist_items: npt.NDArray[np.int64],
        n: int,
    ) -> list[ScoredItem]:
        """Served items of a fused ``rank_history_top`` answer ``(top, scores, weights)``."""
        from recforge.explain import because_lists

        top, scores, weights = got
        items = self._scored(top, self.model.display_scores(scores))
        lists = because_lists(hist_items, weights, n)
        for it, pairs in zip(items, lists, strict=True):
            it.because = [self._because(j, w) for j, w in pairs]
        return items

    def add_because(self, user: Any, items: list[ScoredItem], n: int = 3) -> None:
        """Fill ``because`` of each item: the (at most ``n``) rated items that raised it most.

        ``user`` is a known user's raw id (as text) or a new user's ``{raw item id: rating}``.
        """
        if not items:
            return
        if isinstance(user, str):
            # A user only the store knows (another version) has no history here to explain by.
            raw_user: Any = (
                _coerce(user, self._user_kind) if self.user_index(user) is not None else None
            )
        else:
            raw_user = user
        # Items this model does not know (a store list of another version) get an empty list.
        raw = [_coerce(it.item_id, self._item_kind) for it in items]
        idx = self.model.items_.index(raw, missing="negative") if raw else np.zeros(0, np.int64)
        self._fill_because(raw_user, items, idx, n)

    def _fill_because(
        self, raw_user: Any, items: list[ScoredItem], idx: npt.NDArray[np.int64], n: int
    ) -> None:
        """:meth:`add_because` given the items' indices ``idx`` (-1: unknown to the model) and
        the user as the model sees it (None: nothing to explain by)."""
        from recforge.explain import attention_idx, because_idx, history_items

        known = np.flatnonzero(idx >= 0)
        # Each item's `because` is assigned once (a validated assignment costs ~2 µs).
        lists: list[list[Because]] = [[] for _ in items]
        if raw_user is not None and len(known):
            found = because_idx(self.model, raw_user, idx[known], n)
            if hasattr(self.model, "attention_to_history"):
                history = history_items(self.model, raw_user)
                att = attention_idx(self.model, history, n)
                attention = None if att is None else [self._because(history[j], w) for j, w in att]
                for it in items:
                    it.attention = attention
            for p, pairs in zip(known.tolist(), found, strict=True):
                lists[p] = [self._because(j, w) for j, w in pairs]
        for it, because in zip(items, lists, strict=True):
            it.because = because

    def _because(self, item: int, weight: float) -> Because:
        found = self._because_base.get(item)
        if found is None:
            # (item id, title) per item, read from the catalogue once (~30 per request).
            text = self._item_text[item]
            found = self._because_base[item] = (text, self.catalog.item(text).title)
        return Because(item_id=found[0], title=found[1], weight=round(weight, 6))

    def items_as_ratings(self, item_ids: Sequence[str]) -> dict[str, float]:
        """Ordered item ids as implicit positives (:func:`recforge.fold_in.items_as_ratings`)."""
        return items_as_ratings(self.model, item_ids)

    def similar(self, item_id: str, k: int) -> list[ScoredItem]:
        """The ``k`` items most cosine-similar to ``item_id`` (UnknownIdError when unknown)."""
        i = self.item_index(item_id)
        if i is None:
            raise UnknownIdError(f"unknown item: {item_id}")
        if self._own_similar or self.similar_index is None:
            # The model's own ranking (EASE through its weights, kNN through its neighbours),
            # exactly as `recforge similar`; ConfigError when it has none.
            rec = self.model.similar_items(self.model.items_.ids[i], k)
            return self._scored(self.model.items_.index(rec.item_ids.tolist()), rec.scores)
        vecs = self.similar_index.vectors
        idx, val = self.similar_index.search(vecs[i], k, exclude=[np.asarray([i])])
        return self._scored(idx[0], val[0])

    def history(self, user_id: str) -> list[Item] | None:
        """Items a known user interacted with in training (None when unknown)."""
        u = self.user_index(user_id)
        if u is None:
            return None
        seen = self._seen_indices[self._seen_indptr[u] : self._seen_indptr[u + 1]]
        return [self.catalog.item(self._item_text[i]) for i in seen.tolist()]

    def describe_index(self) -> dict[str, int | str] | None:
        """The retrieval index, or None when the model scores every item itself."""
        return None if self.index is None else self.index.describe()
