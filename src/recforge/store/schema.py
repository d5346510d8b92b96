"""Store tables (DESIGN.md §7), identical on SQLite and PostgreSQL (SQLAlchemy Core).

``runs``
    One row per exported model version: when the run was trained (``created_at``) and exported
    (``exported_at``), the model name, its resolved config and evaluation metrics as JSON text,
    the list length ``k``, ``n_users`` scored and ``n_rows`` written.
``recommendations``
    ``(model_version, user_id, rank, item_id, score)``, primary key
    ``(model_version, user_id, rank)``; ``rank`` counts from 1. Ids are the model's *raw* ids
    stored as text (``str(raw_id)``), so integer and string vocabularies share one schema; a
    reader passes ``str(user_id)`` and gets item ids back as strings.
``active_version``
    At most one row (``slot = 'default'``): the version the service reads.

Times are ISO-8601 UTC strings, which sort chronologically as text on both backends.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("model_version", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.String(40), nullable=True),
    sa.Column("exported_at", sa.String(40), nullable=False),
    sa.Column("model_name", sa.String(100), nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("k", sa.Integer, nullable=False),
    sa.Column("n_users", sa.Integer, nullable=False),
    sa.Column("n_rows", sa.BigInteger, nullable=False),
    sa.Column("run_path", sa.Text, nullable=True),
)

recommendations = sa.Table(
    "recommendations",
    metadata,
    sa.Column("model_version", sa.String(200), primary_key=True),
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("item_id", sa.String(200), nullable=False),
    # float4 on PostgreSQL (half the bytes of double); the scores are float32 anyway.
    sa.Column("score", sa.REAL, nullable=False),
    # SQLite: the primary key *is* the table (no rowid B-tree plus a separate PK index).
    sqlite_with_rowid=False,
)

active_version = sa.Table(
    "active_version",
    metadata,
    sa.Column("slot", sa.String(20), primary_key=True),
    sa.Column("model_version", sa.String(200), nullable=False),
)

#: Column order of bulk writes (COPY / executemany).
REC_COLUMNS = ("model_version", "user_id", "rank", "item_id", "score")

__all__ = ["REC_COLUMNS", "active_version", "metadata", "recommendations", "runs"]
