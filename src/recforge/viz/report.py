"""The HTML report of a saved run (``recforge report RUN``).

:func:`write_report` reads a run directory (:func:`recforge.artifacts.load_run`) and writes one
HTML file, ``report.html``, plus its figures as PNG files in the same folder (default
``RUN/report/``). The HTML has inline CSS, no scripts and no network references; images are
referenced by relative file name, so the folder can be moved, zipped or served as a whole.

Sections:

1. the run: model, hyper-parameters, data, split, sizes;
2. learning curves (train and validation loss, validation metrics, learning rate) from
   ``history.csv``;
3. the metric tables of ``metrics.json``, each captioned with its protocol
   (:func:`recforge.eval.evaluate.protocol_label`);
4. the rating-error histogram (prediction − truth on the run's test split): only for rating
   models on explicit data, and only when the run's data can be loaded again;
5. the item-embedding map (PCA, coloured by main category, extremes labelled) and, for each of
   the first three components, the items at both ends with titles and categories (the report
   says "movies" and "genres" only when the metadata names that domain; see
   :mod:`recforge.data.domain`);
6. the user-embedding map (PCA, coloured by the user's mean training rating on explicit data,
   otherwise by the number of training interactions).

Sections 5 and 6 need :meth:`Recommender.item_embeddings` / :meth:`Recommender.user_embeddings`;
for models without them the report says so. Section 4 (and the mean-rating colour) rebuilds the
test split from the manifest's ``data`` and ``split_spec`` (or ``data=`` given here); when that
fails the section explains why instead of failing the report. Which items enter the PCA is
documented in :mod:`recforge.viz.embeddings`.
"""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recforge._atomic import atomic_write_text
from recforge.artifacts import Run, load_run
from recforge.data.datasource import DataSource
from recforge.data.domain import Nouns, nouns_for
from recforge.data.interactions import Interactions
from recforge.errors import RecError
from recforge.viz import embeddings as emb

REPORT_FILE = "report.html"
#: File names of the figures, next to ``report.html``.
FIGURES = {
    "learning": "learning_curve.png",
    "errors": "rating_errors.png",
    "items": "item_map.png",
    "users": "user_map.png",
}
#: Principal components whose extremes are tabulated.
N_COMPONENTS = 3
#: Users drawn on the user map at most (a seeded sample beyond that keeps the PNG legible).
MAX_MAP_USERS = 20_000

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2.2rem}h3{margin-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-size:.85rem;color:#555;padding:.2rem 0}
img{max-width:100%;border:1px solid #eee}
.note{background:#fff8e1;border-left:4px solid #f0c040;padding:.4rem .8rem;margin:.6rem 0}
.muted{color:#666;font-size:.85rem}.pair{display:flex;gap:1.5rem;flex-wrap:wrap}
.pair>div{flex:1 1 420px}code{background:#f4f4f4;padding:0 .2rem}
"""


@dataclass
class ReportResult:
    """What :func:`write_report` wrote.

    Attributes:
        html: path of ``report.html``.
        images: the PNG files it references (all in ``html``'s folder).
        notes: sections that were skipped or qualified, one sentence each.
    """

    html: Path
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _SplitInfo:
    split: Any | None
    note: str | None


def write_report(
    run: str | Path | Run,
    out: str | Path | None = None,
    *,
    data: str | Path | DataSource | Interactions | None = None,
    n_extremes: int = 10,
    min_item_count: int = emb.MIN_ITEM_COUNT,
) -> ReportResult:
    """Write the HTML report of a saved run.

    Args:
        run: run directory (or an already loaded :class:`~recforge.artifacts.Run`).
        out: folder for ``report.html`` and its PNGs (created; default ``RUN/report``). Files
            of the same names are replaced atomically; nothing else in the folder is touched.
        data: the run's data, when the manifest's ``data`` cannot be loaded again (a MovieLens
            name, a ratings file, or Interactions). Given explicitly, a load error is raised.
        n_extremes: items listed at each end of each principal component.
        min_item_count: items need this many training interactions to enter the item PCA.

    Returns:
        A :class:`ReportResult` with the HTML path, the PNGs and the notes.
    """
    loaded = run if isinstance(run, Run) else load_run(run)
    folder = Path(out) if out is not None else loaded.path / "report"
    folder.mkdir(parents=True, exist_ok=True)
    model = loaded.model
    result = ReportResult(html=folder / REPORT_FILE)
    info = _rebuild_split(loaded, data)
    if info.note:
        result.notes.append(info.note)
    body = [
        _header(loaded),
        _learning_section(loaded, folder, result),
        _metrics_section(loaded.metrics, result),
        _errors_section(loaded, info, folder, result),
        _item_section(loaded, folder, result, n_extremes, min_item_count),
        _user_section(loaded, info, folder, result),
        _method_section(min_item_count, nouns_for(loaded.model.item_meta_)),
    ]
    title = f"recforge report: {model.name} ({loaded.path.name})"
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f'\n<p class="muted">Generated {_e(_now())} by recforge.</p>\n</body>\n</html>\n'
    )
    atomic_write_text(result.html, page)
    return result


# ---------------------------------------------------------------------------- data
def _rebuild_split(loaded: Run, data: str | Path | DataSource | Interactions | None) -> _SplitInfo:
    """The run's split, rebuilt from its data; None plus a reason when that is impossible."""
    from recforge.pipeline import ALL_DATA, run_split

    manifest = loaded.manifest
    spec = manifest.get("split_spec")
    if not spec:
        return _SplitInfo(
            None,
            "the run does not record its split (split_spec), so the test split cannot be rebuilt",
        )
    if str(spec).strip().lower() == ALL_DATA and data is None:
        return _SplitInfo(None, "the run was trained on all the data (--split none): no test part")
    explicit = data is not None
    source = data if data is not None else DataSource.from_manifest(manifest)
    if source is None:
        return _SplitInfo(None, "the run does not record its data; pass --data")
    try:
        split, inter = run_split(manifest, data=data)
    except (RecError, OSError) as exc:
        if explicit:
            raise
        return _SplitInfo(
            None,
            f"the run's data {getattr(source, 'path', str(source))!r} could not be loaded "
            f"again ({exc}); pass --data",
        )
    note = None
    recorded = manifest.get("data_fingerprint")
    if recorded and recorded != inter.fingerprint():
        note = (
            f"the data loaded ({inter.source}) differs from the data the run was trained on "
            "(fingerprint mismatch): test-split figures may not match the metric table"
        )
    return _SplitInfo(split, note)


def _test_part(info: _SplitInfo) -> Interactions | None:
    test = getattr(info.split, "test", None)
    return test if isinstance(test, Interactions) else None


def _train_part(info: _SplitInfo) -> Interactions | None:
    train = getattr(info.split, "train", None)
    return train if isinstance(train, Interactions) else None


# ---------------------------------------------------------------------------- sections
def _header(loaded: Run) -> str:
    model, mf = loaded.model, loaded.manifest
    rows = [
        ("model", model.name),
        ("run", str(loaded.path)),
        ("created", str(mf.get("created_at", "?"))),
        ("data", str(mf.get("data", "?"))),
        ("split", str(mf.get("split", mf.get("split_spec", "?")))),
        ("users × items", f"{model.n_users} × {model.n_items}"),
        ("training interactions", str(int(model.seen_.nnz))),
        ("rating scale", _scale(model.rating_scale_)),
        ("recforge", str((mf.get("versions") or {}).get("recforge", "?"))),
    ]
    config = model.config.model_dump()
    cfg_rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(str(v))}</td></tr>" for k, v in sorted(config.items())
    )
    return (
        f"<h1>{_e(model.name)} — run report</h1>\n"
        f'<p class="muted">{_e(repr(model))}</p>\n<div class="pair"><div>\n'
        + _kv_table(rows, caption="Run")
        + "</div><div>\n<table><caption>Hyper-parameters (config.json)</caption>"
        + cfg_rows
        + "</table></div></div>"
    )


def _learning_section(loaded: Run, folder: Path, result: ReportResult) -> str:
    from recforge.viz.plots import learning_curve

    out = ["<h2>Learning curves</h2>"]
    hist = loaded.history
    if hist is None or len(hist) == 0 or "train_loss" not in hist.columns:
        note = f"{loaded.model.name} has no per-epoch training history (not trained in epochs)."
        result.notes.append(note)
        return out[0] + _note(note)
    path = learning_curve(hist, folder / FIGURES["learning"], title=loaded.model.name)
    result.images.append(path)
    valid = [c for c in hist.columns if c.startswith("valid_") and hist[c].notna().any()]
    if not valid:
        note = "the run had no validation split, so only the training curve is drawn."
        result.notes.append(note)
        out.append(_note(note))
    out.append(_img(path, "Training and validation loss per epoch"))
    last = hist.iloc[-1]
    shown = [c for c in ("epoch", "train_loss", *valid, "lr") if c in hist.columns]
    out.append(
        _kv_table([(c, _fmt(last[c])) for c in shown if pd.notna(last[c])], caption="Last epoch")
    )
    return "\n".join(out)


def _metrics_section(metrics: dict[str, Any], result: ReportResult) -> str:
    from recforge.eval.evaluate import protocol_label

    out = ["<h2>Metrics</h2>"]
    if not metrics:
        note = "the run has no metrics.json (it was saved without an evaluation)."
        result.notes.append(note)
        return out[0] + _note(note)
    if metrics.get("protocol"):
        out.append(f"<p>Split: <code>{_e(str(metrics['protocol']))}</code></p>")
    for part, report in metrics.items():
        if not isinstance(report, dict) or not isinstance(report.get("summary"), dict):
            continue
        proto = report.get("protocol") or {}
        label = protocol_label(proto) if isinstance(proto, dict) else str(proto)
        values = [
            (k, v)
            for k, v in report["summary"].items()
            if isinstance(v, float) and not k.startswith("n_")
        ]
        counts = [
            f"{k.removeprefix('n_')}={_fmt(v)}"
            for k, v in report["summary"].items()
            if k.startswith("n_") and v
        ]
        rows = "".join(
            f'<tr><td>{_e(k)}</td><td class="num">{_e(_fmt(v))}</td></tr>' for k, v in values
        )
        out.append(
            f'<h3>{_e(part)} metrics</h3>\n<table class="metrics">'
            f"<caption>protocol: {_e(label)}</caption>"
            f"<tr><th>metric</th><th>value</th></tr>{rows}</table>"
        )
        if counts:
            out.append(f'<p class="muted">counts: {_e(", ".join(counts))}</p>')
    return "\n".join(out)


def _errors_section(loaded: Run, info: _SplitInfo, folder: Path, result: ReportResult) -> str:
    head = "<h2>Rating errors</h2>"
    model = loaded.model
    why = None
    if not model.predicts_ratings:
        why = f"{model.name} ranks items; its scores are not ratings, so there is no rating error."
    elif model.rating_scale_ is None:
        why = "the data is implicit (no rating scale), so there is no rating error."
    test = _test_part(info)
    if why is None and test is None:
        why = "not available: " + (info.note or "the split has no test interactions")
    if why is not None:
        result.notes.append(f"rating errors: {why}")
        return head + _note(f"Not applicable: {why}" if "not available" not in why else why)
    assert test is not None
    frame = test.to_frame()
    pred = model.predict(frame["user_id"].to_numpy(), frame["item_id"].to_numpy())
    truth = frame["rating"].to_numpy(dtype=np.float64)
    ok = np.isfinite(pred)
    if not ok.any():
        note = "the model can score none of the test pairs (all users or items unknown)."
        result.notes.append(f"rating errors: {note}")
        return head + _note(note)
    errors = pred[ok].astype(np.float64) - truth[ok]
    path = emb.error_histogram(errors, truth[ok], folder / FIGURES["errors"])
    result.images.append(path)
    dropped = int((~ok).sum())
    text = (
        f"<p>Prediction minus true rating on the {int(ok.sum())} test pairs of split "
        f"<code>{_e(str(loaded.manifest.get('split', '?')))}</code> (predictions clipped to the "
        "rating scale)."
    )
    if dropped:
        text += (
            f" {dropped} pairs with a user or item unknown to the model are left out here; the "
            "metric table scores them with its fallback."
        )
    rows = [
        ("RMSE", _fmt(float(np.sqrt(np.mean(errors**2))))),
        ("MAE", _fmt(float(np.mean(np.abs(errors))))),
        ("mean error (bias)", _fmt(float(errors.mean()))),
        ("|error| > 1 star", f"{float(np.mean(np.abs(errors) > 1)):.1%}"),
    ]
    return "\n".join(
        [head, text + "</p>", _img(path, "Rating error histogram"), _kv_table(rows, "Errors")]
    )


def _item_section(
    loaded: Run, folder: Path, result: ReportResult, n_extremes: int, min_item_count: int
) -> str:
    model = loaded.model
    words = nouns_for(model.item_meta_)  # "movies"/"genres" only when the metadata says so
    head = f"<h2>{words.item.capitalize()} embeddings</h2>"
    vecs = model.item_embeddings()
    if vecs is None:
        note = f"this model ({model.name}) has no embeddings, so there are no embedding maps."
        result.notes.append(note)
        return head + _note(note)
    counts = np.asarray(model.seen_.getnnz(axis=0)).ravel()
    chosen = emb.popular_items(counts, min_count=min_item_count)
    if len(chosen) < 3:
        note = f"fewer than 3 {words.items}: too few for a PCA map."
        result.notes.append(note)
        return head + _note(note)
    pca = emb.pca(vecs[chosen], N_COMPONENTS)
    labels = emb.item_labels(model.item_meta_, model.items_.lookup(chosen))
    labels["ratings"] = counts[chosen]
    path = emb.item_map(
        pca,
        labels,
        folder / FIGURES["items"],
        title=f"{model.name} {words.items}",
        items=words.items,
        category=words.category,
    )
    result.images.append(path)
    out = [
        head,
        f"<p>{len(chosen)} of {model.n_items} {words.items} (those with at least {min_item_count} "
        f"training interactions, at most {emb.MAX_ITEMS}; see <em>Method</em>), "
        f"{vecs.shape[1]}-dimensional embeddings. Explained variance: "
        + ", ".join(f"PC{c + 1} {v:.1%}" for c, v in enumerate(pca.explained))
        + ".</p>",
        _img(
            path,
            f"{words.item.capitalize()} embedding map (PCA), coloured by main {words.category}",
        ),
        f"<h3>Principal components: {words.items} at each end</h3>",
        '<p class="muted">Read each component through its extremes (the fast.ai '
        "“seriousness axis”): what do the high-end titles share that the low-end ones lack? "
        "Component signs are arbitrary.</p>",
    ]
    for c, ends in enumerate(emb.component_extremes(pca.scores, labels, n_extremes)):
        out.append(f'<h3>PC{c + 1} ({pca.explained[c]:.1%} of variance)</h3>\n<div class="pair">')
        for side in ("high", "low"):
            table = _extremes_table(ends[side], f"PC{c + 1} {side}est", words.categories)
            out.append("<div>" + table + "</div>")
        out.append("</div>")
    return "\n".join(out)


def _user_section(loaded: Run, info: _SplitInfo, folder: Path, result: ReportResult) -> str:
    head = "<h2>User embeddings</h2>"
    model = loaded.model
    vecs = model.user_embeddings()
    if vecs is None:
        note = f"this model ({model.name}) has no user embeddings."
        if model.item_embeddings() is None:
            return head + _note(f"this model ({model.name}) has no embeddings.")
        result.notes.append(note)
        return head + _note(note)
    n = len(vecs)
    rows = np.arange(n)
    if n > MAX_MAP_USERS:
        rows = np.sort(np.random.default_rng(0).choice(n, MAX_MAP_USERS, replace=False))
    if len(rows) < 3:
        return head + _note("fewer than 3 users: too few for a PCA map.")
    colour, label = _user_colour(loaded, info)
    pca = emb.pca(vecs[rows], 2)
    path = emb.user_map(
        pca,
        colour[rows],
        folder / FIGURES["users"],
        colour_label=label,
        title=f"{model.name} users",
    )
    result.images.append(path)
    sample = f" (a seeded sample of {len(rows)})" if len(rows) < n else ""
    return "\n".join(
        [
            head,
            f"<p>{n} users{sample}, {vecs.shape[1]}-dimensional embeddings, coloured by "
            f"{_e(label)}. Explained variance: "
            + ", ".join(f"PC{c + 1} {v:.1%}" for c, v in enumerate(pca.explained))
            + ".</p>",
            _img(path, f"User embedding map (PCA), coloured by {label}"),
        ]
    )


def _user_colour(loaded: Run, info: _SplitInfo) -> tuple[npt.NDArray[np.float64], str]:
    """Mean training rating per user (explicit data, split rebuilt), else log10 activity."""
    model = loaded.model
    train = _train_part(info)
    if train is not None and model.rating_scale_ is not None:
        frame = train.to_frame()
        idx = model.users_.index(frame["user_id"].to_numpy(), missing="negative")
        ok = idx >= 0
        sums = np.bincount(idx[ok], weights=frame["rating"].to_numpy()[ok], minlength=model.n_users)
        cnt = np.bincount(idx[ok], minlength=model.n_users)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        return mean.astype(np.float64), "mean training rating"
    activity = np.asarray(model.seen_.getnnz(axis=1), dtype=np.float64)
    return np.log10(np.maximum(activity, 1.0)), "log10 training interactions"


def _method_section(min_item_count: int, words: Nouns) -> str:
    items, category = words.items, words.category
    return (
        "<h2>Method</h2>\n<ul>"
        f"<li>{words.item.capitalize()} PCA: {items} with at least {min_item_count} training "
        f"interactions, the {emb.MAX_ITEMS} most rated of them at most; if fewer than "
        f"{emb.MIN_ITEMS} pass, the {emb.MIN_ITEMS} most rated {items} (as the fast.ai lesson "
        f"keeps only its 1000 most rated: rarely rated {items} keep near-random embeddings and "
        "would fill the extremes with noise).</li>"
        "<li>PCA: SVD of the centred embeddings; signs fixed so the largest |score| is "
        "positive.</li>"
        f"<li>Main {category}: the first {category} listed in the item metadata; the "
        f"{emb.MAX_GENRE_COLOURS} most frequent get colours, the rest are grey.</li>"
        "<li>Embeddings: <code>Recommender.item_embeddings()</code> / "
        "<code>user_embeddings()</code> (factor tables for mf/biased_mf/als/embedding_net/ncf, "
        "tower outputs for two_tower, codes or layer weights for autoencoders).</li>"
        "</ul>"
    )


# ---------------------------------------------------------------------------- html helpers
def _extremes_table(frame: pd.DataFrame, caption: str, categories: str = "genres") -> str:
    rows = "".join(
        "<tr>"
        f'<td class="num">{_e(_fmt(r.score))}</td><td>{_e(str(r.title))}</td>'
        f'<td>{_e(str(r.genres))}</td><td class="num">{_e(str(r.ratings))}</td>'
        "</tr>"
        for r in frame.itertuples(index=False)
    )
    return (
        f'<table class="extremes"><caption>{_e(caption)}</caption>'
        f"<tr><th>score</th><th>title</th><th>{_e(categories)}</th><th>ratings</th></tr>"
        f"{rows}</table>"
    )


def _kv_table(rows: list[tuple[str, str]], caption: str) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table><caption>{_e(caption)}</caption>{body}</table>"


def _img(path: Path, alt: str) -> str:
    return f'<p><img src="{_e(path.name)}" alt="{_e(alt)}"></p>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if v.is_integer() and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.4f}" if 1e-3 <= abs(v) < 1e6 else f"{v:.3g}"
    return str(value)


def _scale(scale: tuple[float, float] | None) -> str:
    return "implicit" if scale is None else f"{scale[0]:g}–{scale[1]:g}"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
