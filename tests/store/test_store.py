"""Store round-trips, versions, safety and the export CLI, on SQLite and (marked) PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from recforge.artifacts import load_run
from recforge.batch import recommend_all
from recforge.cli import main
from recforge.export import default_version, export_run, read_user_file
from recforge.store import Recommendation, RowBlock, StoreError, open_store
from recforge.store.schema import recommendations

REPO = Path(__file__).resolve().parents[2]


def _rows(url: str, version: str | None = None) -> list[tuple[Any, ...]]:
    """Every stored recommendation row (optionally of one version), in key order."""
    store = open_store(url)
    try:
        q = sa.select(recommendations).order_by(
            recommendations.c.model_version, recommendations.c.user_id, recommendations.c.rank
        )
        if version is not None:
            q = q.where(recommendations.c.model_version == version)
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q).all()]
    finally:
        store.close()


def _expected(run: Path, k: int, version: str) -> list[tuple[Any, ...]]:
    """What the store should hold, computed from batch.recommend_all directly."""
    model = load_run(run).model
    out = []
    for part, idx, val in recommend_all(model, None, k):
        for u, row_i, row_v in zip(part, idx, val, strict=True):
            for r, (i, s) in enumerate(zip(row_i, row_v, strict=True), start=1):
                if i >= 0:
                    out.append((version, str(model.users_.ids[u]), r, str(model.items_.ids[i]), s))
    return sorted(out, key=lambda t: (t[1], t[2]))


def _same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert [g[:4] for g in got] == [w[:4] for w in want]
    np.testing.assert_array_equal(
        np.asarray([g[4] for g in got], np.float32), np.asarray([w[4] for w in want], np.float32)
    )


def test_roundtrip_equals_recommend_all(db_url: str, small_run: Path) -> None:
    res = export_run(small_run, db_url, k=7, version="v1", batch_size=13)
    want = _expected(small_run, 7, "v1")
    got = _rows(db_url)
    _same(got, want)
    assert res.rows == len(want) and res.users == 120
    # the read API returns the same list for a user, best first
    store = open_store(db_url, create=False)
    uid = want[0][1]
    recs = store.get(int(uid), k=3)
    assert [(r.item_id, r.rank) for r in recs] == [(w[3], w[2]) for w in want[:3]]
    assert np.float32(recs[0].score) == np.float32(want[0][4])
    assert store.get(uid) == store.get(int(uid))  # ids compare as text
    assert len(store.get(uid)) == 7  # default k: everything stored
    store.close()


def test_rerun_same_version_is_idempotent(db_url: str, small_run: Path) -> None:
    export_run(small_run, db_url, k=5, version="v1")
    first = _rows(db_url)
    res = export_run(small_run, db_url, k=5, version="v1", batch_size=7)
    assert _rows(db_url) == first
    store = open_store(db_url)
    assert store.versions() == ["v1"]
    assert store.list()[0].n_rows == len(first) == res.rows
    store.close()


def test_list_activate_keep(db_url: str, small_run: Path) -> None:
    for v in ("a", "b", "c"):
        export_run(small_run, db_url, k=2 if v != "c" else 3, version=v)
        time.sleep(0.002)  # distinct export times
    store = open_store(db_url)
    infos = store.list()
    assert [i.model_version for i in infos] == ["c", "b", "a"]  # newest first
    assert [i.active for i in infos] == [False, False, True]  # the first export became active
    assert infos[0].k == 3 and infos[0].n_users == 120 and infos[0].model_name == "biased_mf"
    assert len(store.get(1)) == 2
    store.activate("c")
    assert store.active() == "c" and len(store.get(1)) == 3
    store.activate("a")
    assert store.prune(1) == ["b"]  # keeps the newest (c) and the active one (a)
    assert store.versions() == ["c", "a"]
    assert _rows(db_url, "b") == []
    assert store.prune(0) == ["c"]
    assert store.versions() == ["a"] and store.active() == "a"
    store.close()


def test_unknown_user_version_and_empty_store(db_url: str, small_run: Path) -> None:
    store = open_store(db_url)
    with pytest.raises(StoreError, match="no active version"):
        store.get(1)
    export_run(small_run, db_url, k=3, version="v1")
    assert store.get("no-such-user") == []
    assert store.get(10**9) == []
    with pytest.raises(StoreError, match="no version 'v9'"):
        store.get(1, version="v9")
    with pytest.raises(StoreError, match="no such version"):
        store.activate("v9")
    with pytest.raises(StoreError, match="k must be"):
        store.get(1, k=0)
    store.close()


def test_string_ids_and_awkward_text(db_url: str) -> None:
    users = np.array(["u,1", 'u"2', "u\t3", "ü\n4"], dtype=object)
    items = np.array(["a", "b,c", 'd"e', "f\\g"], dtype=object)
    block = RowBlock(
        n_users=4,
        user_id=users,
        rank=np.ones(4, np.int64),
        item_id=items,
        score=np.array([0.1, -2.5, 1e-8, 3.4e38], np.float32),
    )
    store = open_store(db_url)
    info = store.write("s", [block, RowBlock(0, [], [], [], [])], model_name="m", k=1)
    assert info.n_rows == 4 and info.n_users == 4
    for u, i, s in zip(users, items, block.score, strict=True):
        (rec,) = store.get(u)
        assert rec.item_id == i and rec.rank == 1 and np.float32(rec.score) == s
    store.close()


def test_failed_write_leaves_previous_state(db_url: str, small_run: Path) -> None:
    export_run(small_run, db_url, k=4, version="v1")
    before = _rows(db_url)
    store = open_store(db_url)

    def broken() -> Any:
        yield RowBlock(1, ["x"], [1], ["y"], [1.0])
        raise RuntimeError("scoring crashed")

    with pytest.raises(RuntimeError):
        store.write("v1", broken(), model_name="m", k=1)
    with pytest.raises(RuntimeError):
        store.write("v2", broken(), model_name="m", k=1)
    assert _rows(db_url) == before and store.versions() == ["v1"]
    store.close()


def test_users_file(db_url: str, small_run: Path, tmp_path: Path) -> None:
    f = tmp_path / "users.txt"
    f.write_text("# wanted\n5\n\n3\n5\n", encoding="utf-8")
    assert read_user_file(f) == ["5", "3", "5"]
    res = export_run(small_run, db_url, k=2, users=read_user_file(f), version="some")
    assert res.users == 2
    assert sorted({r[1] for r in _rows(db_url)}) == ["3", "5"]


def test_default_version_is_stable(small_run: Path) -> None:
    manifest = load_run(small_run).manifest
    v = default_version(small_run, manifest)
    assert v.startswith("small-") and v == default_version(small_run, manifest)
    assert ":" not in v and "+" not in v


def test_kill_leaves_previous_version(db_url: str, big_run: Path, tmp_path: Path) -> None:
    export_run(big_run, db_url, k=10, version="v1")
    before = _rows(db_url)
    assert len(before) == 2000 * 10
    progress = tmp_path / "progress"
    env = dict(os.environ)
    env["RECFORGE_EXPORT_BLOCK_DELAY"] = "0.2"
    env["RECFORGE_EXPORT_PROGRESS_FILE"] = str(progress)
    # Re-export the *same* version with a different k: a partial replacement would be visible.
    cmd = [sys.executable, "-m", "recforge.cli", "export", str(big_run), "--db", db_url]
    cmd += ["-k", "3", "--batch-size", "50", "--version", "v1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (progress.exists() and int(progress.read_text() or 0) >= 300):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "export never started writing"
            time.sleep(0.05)
        # rows were written (uncommitted) and readers still see the old version
        assert _rows(db_url) == before
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.2)  # PostgreSQL: let the orphaned backend see the disconnect and roll back
    assert _rows(db_url) == before
    store = open_store(db_url)
    assert store.versions() == ["v1"] and store.list()[0].k == 10
    assert len(store.get(before[0][1])) == 10
    store.close()
    # the store is not wedged: a new export completes
    export_run(big_run, db_url, k=3, version="v1")
    assert len(_rows(db_url)) == 2000 * 3


def test_cli_export_list_activate_keep(
    db_url: str, small_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["export", str(small_run), "--db", db_url, "-k", "4", "--json"]
    assert main([*args, "--version", "one"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["export"]["version"] == "one" and out["export"]["rows"] == 120 * 4
    assert out["export"]["active"] is True
    assert main([*args, "--version", "two", "--activate", "two", "--keep", "1", "--list"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["activated"] == "two" and out["pruned"] == ["one"]
    assert [(v["model_version"], v["active"], v["k"]) for v in out["versions"]] == [
        ("two", True, 4)
    ]
    assert main(["export", "--db", db_url, "--list"]) == 0
    text = capsys.readouterr().out
    assert "two" in text and "biased_mf" in text and "users=120" in text
    assert main(["export", "--db", db_url, "--activate", "nope"]) == 2
    assert "no such version" in capsys.readouterr().err
    assert main(["export", "--db", db_url]) == 2


def test_read_api_does_not_import_torch(db_url: str) -> None:
    store = open_store(db_url)
    store.write("v", [RowBlock(1, ["7"], [1], ["42"], [0.5])], model_name="m", k=1)
    store.close()
    code = (
        "import sys\n"
        "from recforge.store import open_store\n"
        f"s = open_store({db_url!r}, create=False)\n"
        "assert [(r.item_id, r.rank) for r in s.get(7, 5)] == [('42', 1)]\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_bad_urls() -> None:
    with pytest.raises(StoreError, match="bad store URL"):
        open_store("not a url")
    with pytest.raises(StoreError, match="unsupported database"):
        open_store("mysql://x@localhost/db")


def test_reader_does_not_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no recforge store"):
        open_store(f"sqlite:///{tmp_path / 'none.db'}", create=False)


def test_recommendation_is_plain_data() -> None:
    assert Recommendation("1", 0.5, 1) == Recommendation("1", 0.5, 1)


def test_users_file_with_unknown_ids(db_url: str, small_run: Path) -> None:
    from recforge.errors import UnknownIdError

    with pytest.raises(UnknownIdError, match="integers"):
        export_run(small_run, db_url, k=2, users=["abc"], version="x")
    with pytest.raises(UnknownIdError):
        export_run(small_run, db_url, k=2, users=["99999"], version="x")
    assert open_store(db_url).versions() == []
