"""Service settings: explicit values, or the environment with the ``RECFORGE_`` prefix."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from recforge.errors import ConfigError

ENV_PREFIX = "RECFORGE_"


class Settings(BaseModel):
    """What the service loads and how it bounds requests.

    Every field can be set from the environment as ``RECFORGE_<FIELD>`` (upper case), e.g.
    ``RECFORGE_RUN=runs/x RECFORGE_STORE=sqlite:///recs.db``. At least one of ``run``/``store``
    is required: ``run`` alone is *live* mode (the model scores each request), ``store`` alone is
    *store* mode (precomputed lists; torch is never imported), both together serve user
    recommendations from the store and everything else (new users, similar items, history) from
    the run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str | None = Field(None, description="Run directory to serve in live mode.")
    store: str | None = Field(None, description="Store URL written by `recforge export`.")
    store_version: str = Field("active", description="Store version to read ('active').")
    index: Literal["auto", "exact", "hnsw", "ivf"] = Field(
        "auto", description="Item index mode for live retrieval."
    )
    ann_threshold: int = Field(50_000, ge=1, description="Catalogue size where auto uses HNSW.")
    fallback: Literal["none", "popular"] = Field(
        "none", description="Unknown users: 404 ('none') or the most popular items ('popular')."
    )
    max_k: int = Field(1000, ge=1, le=1000, description="Largest k a request may ask for.")
    max_ratings: int = Field(500, ge=1, description="Most ratings in one new-user request.")
    max_body_bytes: int = Field(65_536, ge=1024, description="Largest request body accepted.")
    admin: bool = Field(True, description="Expose POST /admin/reload.")
    watch_interval: float = Field(
        0.0, ge=0.0, description="Seconds between checks for a new run/store version (0: off)."
    )
    web: bool = Field(True, description="Serve the web page at /.")
    api_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="When set, every route except /health, / and /static needs this key in an "
        "`X-API-Key` or `Authorization: Bearer` header. Give it through the environment "
        "(RECFORGE_API_KEY), never on a command line, where `ps` shows it.",
    )
    cors_origins: tuple[str, ...] = Field(
        (),
        description="Origins allowed to call the API from a browser (comma-separated in "
        "RECFORGE_CORS_ORIGINS). Empty: no CORS headers at all, so browsers keep other sites out.",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a connection may take to send a request's line and headers "
        "(recforge serve; see recforge.serve.timeouts).",
    )
    keep_alive_timeout: float = Field(
        5.0, gt=0, le=3600, description="Seconds an idle keep-alive connection stays open."
    )
    http_parser: Literal["auto", "httptools", "h11"] = Field(
        "auto",
        description="uvicorn's HTTP parser (recforge serve): httptools (C, the default when "
        "installed) or h11 (pure Python, ~90 µs more server CPU per request); both carry the "
        "header timeout and size limit.",
    )
    run_roots: tuple[str, ...] = Field(
        (),
        description="Folders POST /admin/reload may load runs from (links resolved; separated by "
        "commas or the OS path separator in RECFORGE_RUN_ROOTS). Empty: any path the service "
        "can read; set it whenever the admin route is reachable by others.",
    )
    state_file: str | None = Field(
        None,
        description="File through which worker processes agree on what they serve: a reload "
        "writes the desired run/store version there and every worker follows it before its next "
        "request (see recforge.serve.shared). `serve --workers N` creates a private one.",
    )
    freeze_heap: bool = Field(
        False,
        description="After loading, collect once and gc.freeze() the survivors, so the "
        "model's ~390,000 long-lived objects are never walked by a full collection again (a "
        "~210 ms pause on ML-100k, benchmarks/serve_gc_pause.py). `recforge serve` turns it "
        "on; off for apps built in tests and notebooks, whose process holds much more than "
        "the service.",
    )
    model_threads: int = Field(
        1,
        ge=1,
        description="Threads that run slow model work (iterative fold-ins and their "
        "explanations) per worker process, one call each at a time. Such calls hold the GIL "
        "for most of their time: 16 of them at once in the request thread pool cost each 2-4x "
        "the CPU of one after another (benchmarks/explain_serve.py at load ~3, before/after: "
        "NCF POST 87 -> 26 ms of server CPU a request). Scale with --workers.",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        description="torch intra-op threads in live mode. Requests already run concurrently, "
        "and on a busy 2-core machine 2 threads made POST /recommendations 30 ms instead of 4.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # The environment gives one string; origins are separated by commas.
        if isinstance(value, str):
            return tuple(o.strip() for o in value.split(",") if o.strip())
        return value

    @field_validator("run_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        # The environment gives one string: commas or os.pathsep (":") separate folders.
        if isinstance(value, str):
            parts = value.replace(os.pathsep, ",").split(",")
            return tuple(p.strip() for p in parts if p.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``RECFORGE_*`` variables, then ``overrides`` (None values ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env and env[key] != "":
                values[name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise ConfigError(
                f"service setting {field} (env {ENV_PREFIX}{field.upper()}): {err['msg']}"
            ) from None

    def to_env(self) -> dict[str, str]:
        """The ``RECFORGE_*`` variables that :meth:`from_env` turns back into these settings.

        Used to hand the settings to uvicorn worker processes, which build their own app.
        """
        env = {}
        for name, value in self.model_dump().items():
            if value is None or value == ():
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple):
                value = ",".join(value)
            env[ENV_PREFIX + name.upper()] = str(value)
        return env

    def check(self) -> Settings:
        """Raise ConfigError unless a run or a store is configured."""
        if not self.run and not self.store:
            raise ConfigError(
                "nothing to serve: give a run directory (RECFORGE_RUN) and/or --store URL "
                "(RECFORGE_STORE)"
            )
        return self
