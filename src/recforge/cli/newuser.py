"""``recforge recommend --item/--rating``: recommendations for a new user, by fold-in.

The ids arrive as text and go through :mod:`recforge.fold_in`, the code behind the service's
``POST /recommendations``, so the command line and the service give the same answer.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from recforge.errors import ConfigError

#: At most this many ignored ids are named in a note or an error (the count is always given).
_SHOWN_IDS = 5


def check_one_form(
    user: list[str] | None, items: list[str] | None, ratings: list[str] | None
) -> None:
    """ConfigError unless exactly one of ``--user``, ``--item`` and ``--rating`` is given."""
    given = [name for name, v in (("--user", user), ("--item", items), ("--rating", ratings)) if v]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise ConfigError(
            f"give exactly one of --user (a known user), --item (a new user's items, oldest "
            f"first) or --rating ID=VALUE (a new user's ratings); got {what}"
        )


def parse_ratings(values: list[str]) -> dict[str, float]:
    """Repeated ``--rating ID=VALUE`` → ``{ID: VALUE}`` in the order given (a repeated id keeps
    its first position and its last value, as a JSON object would)."""
    out: dict[str, float] = {}
    for text in values:
        # The last '=' splits: an id may itself hold one, a number never does.
        item, sep, raw = text.rpartition("=")
        try:
            value = float(raw) if sep and item else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"--rating expects ID=VALUE with a finite number, got {text!r}")
        out[item] = value
    return out


def _ids_text(ids: list[Any]) -> str:
    """``a, b, c`` for at most :data:`_SHOWN_IDS` ids, ``a, b, ... (12 in all)`` beyond."""
    shown = ", ".join(str(i) for i in ids[:_SHOWN_IDS])
    return shown if len(ids) <= _SHOWN_IDS else f"{shown}, ... ({len(ids)} in all)"


def _read(model: Any, given: dict[str, float]) -> Any:
    """:func:`recforge.fold_in.read_history` with the CLI's note (stderr) for ignored ids and a
    message naming the ids when none is known."""
    from recforge.errors import DataError
    from recforge.fold_in import read_history

    try:
        history = read_history(model, given)
    except DataError:
        raise DataError(
            f"none of the given items is known to the model ({_ids_text(list(given))}); "
            "give item ids of the training data"
        ) from None
    if history.unknown:
        n = len(history.unknown)
        sys.stderr.write(
            f"recforge: note: ignored {n} item id{'s' * (n != 1)} the model does not know: "
            f"{_ids_text(history.unknown)}\n"
        )
    return history


def _rank(model: Any, history: Any, k: int, exclude: bool) -> tuple[Any, str]:
    """The new user's RecList and its source: ``fold_in``, or ``popular`` when no given
    rating is a like (the service answers the same way)."""
    import numpy as np

    from recforge.errors import NoFoldInError
    from recforge.fold_in import fold_in_models, popular_top, popularity, rank_liked
    from recforge.models.base import RecList

    if not history.liked:
        sys.stderr.write(
            "recforge: note: no given rating is a like (above the scale's midpoint): "
            "showing the most popular items\n"
        )
        idx, scores = popular_top(model, history, popularity(model), k, exclude)
        source = "popular"
    else:
        try:
            idx, scores = rank_liked(model, history, k, exclude)
        except NoFoldInError:
            raise ConfigError(
                f"model {model.name} cannot recommend for a new user (it has no fold-in); "
                f"models that can: {', '.join(fold_in_models())}"
            ) from None
        source = "fold_in"
    ok = idx >= 0
    rec = RecList(None, model.items_.lookup(idx[ok]), np.asarray(scores)[ok], model.item_meta_)
    return rec, source


def recommend_new_user(
    run: Path,
    items: list[str] | None,
    ratings: dict[str, float] | None,
    k: int,
    include_seen: bool,
    explain: bool,
    json_out: bool,
) -> None:
    """Print the top ``k`` for a new user given by ``items`` (text ids, oldest first, read as
    likes) or by ``ratings`` (``{text item id: rating}`` in timeline order), not both."""
    from recforge.artifacts import load_run
    from recforge.cli._output import console, emit_json
    from recforge.cli.explain import render_because
    from recforge.cli.render import reclist_json, render_reclist
    from recforge.fold_in import items_as_ratings

    model = load_run(run).model
    as_items = ratings is None
    given = items_as_ratings(model, items or []) if ratings is None else ratings
    history = _read(model, given)
    rec, source = _rank(model, history, k, exclude=not include_seen)
    why = []
    if explain and source == "fold_in":
        # Explained by the liked history, as the service's `because` is.
        why = model.explain_batch(history.liked, list(rec.item_ids))
        if as_items:  # the person listed items and rated none: no "Because you rated"
            why = [dataclasses.replace(e, rated=False) for e in why]
    if json_out:
        entry = reclist_json(rec, model, explanations=why)
        known = list(history.known)  # python ids already (fold_in.coerce_id)
        emit_json([{**entry, "history": known, "ignored": history.unknown, "source": source}])
        return
    n = len(history.known)
    noun = ("item" if as_items else "rating") + "s" * (n != 1)
    con = console()
    label = "score" if source == "fold_in" else "count"  # popular: training interactions
    render_reclist(con, f"Top {k} for a new user ({n} {noun})", rec, model.item_meta_, label)
    if why:
        render_because(con, rec, why)
