"""recforge.threads: the default thread count from affinity and cgroup quotas, precedence, waits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recforge import threads as th
from recforge.models.registry import create
from recforge.testing import planted_implicit


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake /proc/self/cgroup holding ``proc`` and a fake /sys/fs/cgroup holding ``files``."""
    root = tmp_path / "sys"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    root.mkdir(exist_ok=True)
    proc_file = tmp_path / "cgroup"
    proc_file.write_text(proc + "\n")
    return proc_file, root


def test_v2_quota_is_quota_over_period(tmp_path: Path) -> None:
    proc, root = _cgroup(tmp_path, "0::/kubepods/pod1", {"kubepods/pod1/cpu.max": "150000 100000"})
    assert th.cgroup_cpu_limit(proc, root) == pytest.approx(1.5)


def test_v2_ancestor_limit_binds_and_max_means_none(tmp_path: Path) -> None:
    proc, root = _cgroup(
        tmp_path,
        "0::/a/b",
        {"a/b/cpu.max": "max 100000", "a/cpu.max": "300000 100000", "cpu.max": "max 100000"},
    )
    assert th.cgroup_cpu_limit(proc, root) == pytest.approx(3.0)
    proc, root = _cgroup(tmp_path / "2", "0::/a", {"a/cpu.max": "max 100000"})
    assert th.cgroup_cpu_limit(proc, root) is None


def test_v1_cfs_quota(tmp_path: Path) -> None:
    files = {
        "cpu,cpuacct/docker/x/cpu.cfs_quota_us": "200000",
        "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000",
    }
    proc, root = _cgroup(tmp_path, "4:cpu,cpuacct:/docker/x\n1:memory:/docker/x", files)
    assert th.cgroup_cpu_limit(proc, root) == pytest.approx(2.0)
    unlimited = {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1",
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
    }
    proc, root = _cgroup(tmp_path / "2", "4:cpu,cpuacct:/", unlimited)
    assert th.cgroup_cpu_limit(proc, root) is None


def test_missing_files_mean_no_limit(tmp_path: Path) -> None:
    assert th.cgroup_cpu_limit(tmp_path / "absent", tmp_path) is None
    proc, root = _cgroup(tmp_path, "0::/", {})
    assert th.cgroup_cpu_limit(proc, root) is None


@pytest.mark.parametrize(
    ("affinity", "limit", "expected"),
    [(8, 2.5, 2), (2, None, 2), (4, 0.5, 1), (3, 16.0, 3), (1, None, 1)],
)
def test_available_cpus_caps_affinity_by_quota(
    affinity: int, limit: float | None, expected: int
) -> None:
    assert th.available_cpus(affinity=affinity, cgroup_limit=limit) == expected


def test_available_cpus_reads_this_process() -> None:
    n = th.available_cpus()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_default_threads_env_and_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(th.ENV_VAR, "3")
    assert th.default_threads() == 3
    assert th.resolve_threads(None) == 3
    assert th.resolve_threads(5) == 5  # a config's num_threads beats the default
    with th.forced_threads(2):
        assert th.resolve_threads(5) == 2  # --threads beats configs
    assert th.resolve_threads(5) == 5
    monkeypatch.setenv(th.ENV_VAR, "zero")
    assert th.default_threads() == th.available_cpus()


def test_fit_runs_with_the_configured_threads_and_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    model = create("als", n_factors=4, iterations=1, num_threads=None)
    original = type(model)._fit

    def spy(self: object, train: object, valid: object) -> None:
        seen.append(torch.get_num_threads())
        original(self, train, valid)  # type: ignore[arg-type]

    monkeypatch.setattr(type(model), "_fit", spy)
    monkeypatch.setenv(th.ENV_VAR, "2")
    before = torch.get_num_threads()
    data = planted_implicit(0).train
    model.fit(data)
    with th.forced_threads(1):
        model.fit(data)
    assert seen == [2, 1]
    assert torch.get_num_threads() == before


def test_mf_config_threads_default_is_the_machine() -> None:
    assert create("mf").config.num_threads is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"), ({"GOMP_SPINCOUNT": "10"}, "")],
)
def test_import_sets_passive_wait_policy_unless_user_chose(
    env: dict[str, str], expected: str
) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import os, recforge; print(os.environ.get('OMP_WAIT_POLICY', ''))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected


def test_small_mf_asks_for_one_thread_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from recforge.models import mf as mf_mod

    monkeypatch.setenv(th.ENV_VAR, "2")
    data = planted_implicit(0).train
    seen: list[int] = []
    original = mf_mod.MF._fit

    def spy(self: mf_mod.MF, train: object, valid: object) -> None:
        seen.append(torch.get_num_threads())
        original(self, train, valid)  # type: ignore[arg-type]

    monkeypatch.setattr(mf_mod.MF, "_fit", spy)
    cfg = {"epochs": 1, "verbose": False, "n_factors": 4}
    create("mf", **cfg).fit(data)  # tiny tables: one thread
    create("mf", **cfg, num_threads=2).fit(data)  # the config wins
    monkeypatch.setattr(mf_mod, "SERIAL_CELLS", 1)
    create("mf", **cfg).fit(data)  # "large" tables: the machine's default
    assert seen == [1, 2, 2]


def test_threads_for_gives_a_thread_per_min_ms_of_work_up_to_the_request() -> None:
    per = th.MIN_MS_PER_THREAD
    assert th.threads_for(0.0, 4) == 1
    assert th.threads_for(per * 1.9, 4) == 1  # not enough for a second thread
    assert th.threads_for(per * 2.0, 4) == 2
    assert th.threads_for(per * 100, 4) == 4  # never more than asked
    assert th.threads_for(per * 100, 1) == 1
    with th.threads(3):
        assert th.threads_for(per * 100) == 3  # default request: torch's current count


def test_capped_lowers_torch_threads_for_small_work_and_restores() -> None:
    with th.threads(2):
        with th.capped(0.1) as n:
            assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with th.capped(th.MIN_MS_PER_THREAD * 10) as n:
            assert n == 2 and torch.get_num_threads() == 2


def test_map_in_threads_reuses_one_pool_keeps_order_and_runs_nested_calls_serially() -> None:
    import threading

    inner_threads: list[tuple[str, str]] = []

    def inner(x: int) -> int:
        return x * 10

    def outer(x: int) -> list[int]:
        # On a pool worker the nested map must not wait for a worker of the same pool: it runs
        # serially, on that worker.
        here = threading.current_thread().name
        result = th.map_in_threads(
            lambda y: (inner_threads.append((here, threading.current_thread().name)), inner(y))[1],
            [x, x + 1],
            2,
        )
        return result

    assert th.map_in_threads(outer, list(range(6)), 2) == [[10 * x, 10 * x + 10] for x in range(6)]
    assert all(o == i for o, i in inner_threads if o.startswith("recforge"))
    first = th._pool(1, "map")
    th.map_in_threads(inner, [1, 2, 3], 2)
    assert th._pool(1, "map") is first and th._pool(1, "background") is not first


def test_map_in_threads_does_not_wait_for_a_worker_that_never_starts() -> None:
    import threading

    # The map pool's only worker is held up (as by a scheduler that does not give it a core):
    # the caller takes every item itself and returns without it.
    release = threading.Event()
    th._pool(1, "map").submit(release.wait)
    try:
        names: list[str] = []
        out = th.map_in_threads(
            lambda x: (names.append(threading.current_thread().name), x + 1)[1], list(range(8)), 2
        )
        assert out == list(range(1, 9))
        assert set(names) == {threading.current_thread().name}
    finally:
        release.set()


def test_map_in_threads_runs_every_item_then_raises_the_first_error() -> None:
    ran: list[int] = []

    def fn(x: int) -> int:
        ran.append(x)
        if x in (3, 5):
            raise ValueError(f"item {x}")
        return x

    with pytest.raises(ValueError, match="item 3"):
        th.map_in_threads(fn, list(range(8)), 2)
    assert sorted(ran) == list(range(8))


def test_run_team_runs_every_part_at_once_and_returns_them_in_order() -> None:
    import threading

    meet = threading.Barrier(3, timeout=10)  # breaks (raises) unless all 3 parts run at once
    names: list[str] = []

    def part(k: int) -> int:
        names.append(threading.current_thread().name)
        meet.wait()
        return k * 10

    assert th.run_team(part, 3) == [0, 10, 20]
    assert len(set(names)) == 3 and threading.current_thread().name in names  # caller is part 0
    assert th.run_team(lambda k: k + 7, 1) == [7]  # one part: the caller alone


def test_run_team_started_from_two_threads_at_once_finishes_both() -> None:
    # The second team's parts queue behind the first's in the shared pool; neither deadlocks.
    import threading

    def team(out: list[list[int]]) -> None:
        meet = threading.Barrier(2, timeout=20)

        def part(k: int) -> int:
            meet.wait()
            return k

        out.append(th.run_team(part, 2))

    results: list[list[int]] = []
    others = [threading.Thread(target=team, args=(results,)) for _ in range(3)]
    for t in others:
        t.start()
    team(results)
    for t in others:
        t.join(30)
    assert results == [[0, 1]] * 4


def test_run_team_raises_a_parts_error_after_all_parts_returned_and_refuses_nesting() -> None:
    done: list[int] = []

    def part(k: int) -> int:
        if k == 1:
            raise ValueError("part 1")
        done.append(k)
        return k

    with pytest.raises(ValueError, match="part 1"):
        th.run_team(part, 3)
    assert sorted(done) == [0, 2]
    with pytest.raises(RuntimeError, match="inside a recforge worker"):
        th.background(lambda: th.run_team(part, 2)).result()


def test_spin_barrier_meets_across_threads_and_releases_on_abort() -> None:
    import threading

    import numba
    import numpy as np

    from recforge.train import _numba_sync as sync

    @numba.njit(nogil=True)
    def count_rounds(state: np.ndarray, cells: np.ndarray, part: int, rounds: int) -> int:
        # Each round: write own cell, meet, check the partner's write of this round, meet.
        for r in range(rounds):
            cells[part] = r
            if sync.barrier(state, 2) < 0:
                return -1
            if cells[1 - part] != r:
                return -2
            if sync.barrier(state, 2) < 0:
                return -1
        return rounds

    state, cells = np.zeros(3, np.int64), np.zeros(2, np.int64)
    out: list[int] = []
    other = threading.Thread(target=lambda: out.append(count_rounds(state, cells, 1, 2000)))
    other.start()
    assert count_rounds(state, cells, 0, 2000) == 2000
    other.join(10)
    assert out == [2000]
    # A lone thread at the barrier waits until the abort flag releases it with -1.
    lone = np.zeros(3, np.int64)
    waiting = threading.Thread(target=lambda: out.append(count_rounds(lone, cells, 0, 1)))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive()
    lone[sync.ABORT] = 1
    waiting.join(10)
    assert out[-1] == -1


def test_background_runs_in_submission_order() -> None:
    done: list[int] = []
    futures = [th.background(lambda i=i: done.append(i)) for i in range(20)]
    for f in futures:
        f.result()
    assert done == list(range(20))


def test_blas_capped_holds_small_products_to_one_blas_thread_and_restores() -> None:
    pytest.importorskip("threadpoolctl")
    # recforge's own controller: the BLAS libraries loaded when it was first needed (numpy's,
    # loaded at import; a library loaded later, e.g. by torch, is not among them).
    controller = th._blas()
    with controller.limit(limits=2):
        before = [i["num_threads"] for i in controller.info()]
        with th.blas_capped(0.1) as n:
            assert n == 1
            assert all(i["num_threads"] == 1 for i in controller.info())
        assert [i["num_threads"] for i in controller.info()] == before
        with th.blas_capped(th.MIN_MS_PER_THREAD * 10) as n:
            assert n == 1  # enough for a thread of recforge's own pool, not for a spinning BLAS
        with th.blas_capped(th.BLAS_MIN_MS_PER_THREAD * 100) as n:
            assert n == max(before)


class _FakeClock:
    """A clock the test advances by hand: each timed block 'takes' what the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run_picked(kernel: str, clock: _FakeClock, ms_per_work: dict[int, float], work: float) -> int:
    with th.picked_threads(kernel, work, 2, clock=clock) as n:
        clock.now += ms_per_work[n] * work / 1000.0
    return n


def test_picked_threads_probes_both_then_keeps_the_faster_and_switches_when_load_changes() -> None:
    clock = _FakeClock()
    pace = {2: 0.6, 1: 1.0}  # two threads 1.67x faster (a quiet machine)
    used = [_run_picked("test.pick.quiet", clock, pace, 8.0) for _ in range(40)]
    # Two threads: a warm-up + PROBES timed calls; one thread: PROBES timed calls (the two-thread
    # calls loaded the kernel, so it needs no warm-up).
    probes = 2 * th.EnginePicker.PROBES + 1
    assert used[:probes] == [2] * (th.EnginePicker.PROBES + 1) + [1] * th.EnginePicker.PROBES
    assert used[probes:].count(1) <= 3  # then two threads, one-thread re-tries only
    # The machine gets busy: a second thread now waits for a core. The next re-try of one
    # thread finds it faster and the picker switches to it.
    pace = {2: 3.0, 1: 1.0}
    used = [_run_picked("test.pick.quiet", clock, pace, 8.0) for _ in range(60)]
    assert used[-20:].count(1) >= 18
    picker = th.thread_picker("test.pick.quiet", 8.0, 2)
    assert picker.best() == 1 and picker.engines == (2, 1)


def test_thread_pickers_are_per_kernel_thread_count_and_size_class() -> None:
    a = th.thread_picker("test.pick.keys", 5.0, 2)
    assert th.thread_picker("test.pick.keys", 7.9, 2) is a  # same power of two of work
    assert th.thread_picker("test.pick.keys", 40.0, 2) is not a
    assert th.thread_picker("test.pick.keys", 5.0, 3) is not a
    assert th.thread_picker("test.pick.other", 5.0, 2) is not a
    # Too little work for a second thread's probe, or one thread asked for: nothing to pick.
    assert th.thread_picker("test.pick.keys", 0.9, 2).engines == (1,)
    assert th.thread_picker("test.pick.keys", 500.0, 1).engines == (1,)
    # More threads are offered only as many as each get PICK_MIN_MS_PER_THREAD of work.
    assert th.thread_picker("test.pick.keys", 1.6, 8).engines == (3, 1)


def test_picked_threads_does_not_record_a_block_that_raised() -> None:
    clock = _FakeClock()
    with pytest.raises(RuntimeError), th.picked_threads("test.pick.raise", 8.0, 2, clock=clock):
        raise RuntimeError("boom")
    picker = th.thread_picker("test.pick.raise", 8.0, 2)
    assert picker.calls == 1 and picker.seen == {2: 0, 1: 1}  # (one thread starts warm)


def test_picked_threads_honours_forced_threads() -> None:
    # --threads 1 (forced_threads) must keep every picked region on one thread.
    with th.forced_threads(1), th.threads(None), th.picked_threads("test.pick.forced", 64.0) as n:
        assert n == 1


def test_engine_picker_skips_warm_ups_uses_the_faster_and_reprobes_less_when_confirmed() -> None:

    def retry_gaps(picker: th.EnginePicker[str], pace: dict[str, float]) -> list[int]:
        order = []
        for _ in range(300):
            engine = picker.pick()
            order.append(engine)
            # The warm-up (first) call of each is slow and must not count.
            picker.record(engine, 50.0 if picker.seen[engine] == 0 else pace[engine])
        probes = th.EnginePicker.PROBES + 1
        assert order[: 2 * probes] == ["threaded"] * probes + ["serial"] * probes
        calls = [i + 1 for i, e in enumerate(order) if e == "serial"][probes:]
        starts = [c for c in calls if c - 1 not in calls]
        assert all(c + 1 in calls for c in starts)  # each re-try is two calls
        ends = [2 * probes] + [c + th.EnginePicker.PROBES - 1 for c in starts]
        return [b - a for a, b in zip(ends, starts, strict=False)]

    # A loser by a small share: re-tries (PROBES calls each) start 12, 24, 48, 96, 96 ... calls
    # after the previous one ended.
    gaps = retry_gaps(th.EnginePicker(("threaded", "serial")), {"threaded": 1.0, "serial": 1.2})
    assert gaps[:4] == [12, 24, 48, 96] and set(gaps[4:]) <= {96}
    # A clear loser (the engine in use more than CLEAR_MARGIN faster): 12, then 96 at once.
    picker: th.EnginePicker[str] = th.EnginePicker(("threaded", "serial"))
    gaps = retry_gaps(picker, {"threaded": 1.0, "serial": 2.0})
    assert gaps[0] == 12 and set(gaps[1:]) == {96}
    pace = {"threaded": 1.0, "serial": 2.0}
    # When the machine gets busy the other engine wins at its next re-try, and re-tries of the
    # new loser start again at the short interval.
    pace = {"threaded": 9.0, "serial": 2.0}
    while picker.pick() != "serial":
        picker.record("threaded", pace["threaded"])
    picker.record("serial", pace["serial"])
    assert picker.pick() == "serial"  # a re-try is two calls
    picker.record("serial", pace["serial"])
    assert picker.best() == "serial" and picker.interval == th.EnginePicker.REPROBE
    assert picker.pick() == "serial"
    assert th.EnginePicker(("serial",)).pick() == "serial"


def _drive(picker: th.EnginePicker[int], pace: dict[int, float], calls: int) -> list[int]:
    """Run ``calls`` picks, each timed at its engine's ``pace``; the engines used."""
    used = []
    for _ in range(calls):
        engine = picker.pick()
        used.append(engine)
        picker.record(engine, pace[engine])
    return used


def test_engine_picker_needs_a_margin_to_switch_and_retries_soon_when_its_engine_slows() -> None:
    picker: th.EnginePicker[int] = th.EnginePicker((2, 1))
    pace = {2: 1.0, 1: 1.5}

    _drive(picker, pace, 30)
    assert picker.best() == 2
    # One thread becomes 5% faster than two: within the margin, no switch (noise on a busy
    # machine must not flip the choice back and forth).
    pace = {2: 1.0, 1: 0.95}
    assert _drive(picker, pace, 200).count(1) <= 8 and picker.best() == 2
    # Two threads slow down (the machine got busy) below one thread's last pace: one thread is
    # re-tried within REPROBE // 4 calls, wins by more than the margin, and takes over.
    pace = {2: 3.0, 1: 0.95}
    # (the median of the last WINDOW timings moves after 3 slow ones)
    used = _drive(picker, pace, 3 + th.EnginePicker.REPROBE // 4 + 1)
    assert used[-1] == 1 and picker.best() == 1


def test_engine_picker_retries_afresh_so_a_past_burst_does_not_keep_an_engine_out() -> None:
    picker: th.EnginePicker[int] = th.EnginePicker((2, 1))
    pace = {2: 1.0, 1: 1.5}

    _drive(picker, pace, 20)
    assert picker.best() == 2
    pace = {2: 4.0, 1: 1.5}  # a burst of load slows two threads for a while
    _drive(picker, pace, 10)
    assert picker.best() == 1
    pace = {2: 1.0, 1: 1.5}  # the burst is over: the next re-try of two threads, timed
    used = _drive(picker, pace, 2 * th.EnginePicker.REPROBE)  # afresh, wins back the lead
    assert picker.best() == 2 and used.count(2) > len(used) // 2


class _TickClock:
    """A clock that advances by one second at each reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_picked_map_keeps_results_in_order_on_every_path() -> None:
    items = list(range(13))
    costs = [1.0] * len(items)
    for _ in range(40):  # probes, mixed probes, re-tries and plain calls alike
        out = th.picked_map("test.map.order", lambda x: x * x, items, costs, 8.0, 2)
        assert out == [x * x for x in items]
    assert th.picked_map("test.map.order1", lambda x: -x, items, costs, 8.0, 1) == [
        -x for x in items
    ]


def test_picked_map_probes_one_thread_on_every_fourth_item_and_times_both_engines() -> None:
    import threading

    clock = _TickClock()
    picker = th.thread_picker("test.map.mixed", 8.0, 2)
    recorded: list[tuple[int, float]] = []
    real_record = picker.record
    picker.record = lambda e, p: (recorded.append((e, p)), real_record(e, p))[1]  # type: ignore[method-assign]
    items = list(range(8))
    costs = [1.0, 1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0]  # item 4 costs three times the others

    def call() -> list[tuple[int, str]]:
        ran: list[tuple[int, str]] = []
        th.picked_map(
            "test.map.mixed",
            lambda x: ran.append((x, threading.current_thread().name)),
            items,
            costs,
            8.0,
            2,
            clock=clock,
        )
        return ran

    for _ in range(th.EnginePicker.PROBES + 1):  # two threads first: a warm-up + PROBES
        call()
    # (the warm-up's timing is handed over too, and not counted)
    assert [e for e, _ in recorded] == [2] * (th.EnginePicker.PROBES + 1)
    recorded.clear()
    ran = call()  # one thread's probe: items 0 and 4 alone, first, then the rest on two threads
    caller = threading.current_thread().name
    assert ran[:2] == [(0, caller), (4, caller)]
    assert sorted(x for x, _ in ran[2:]) == [1, 2, 3, 5, 6, 7]
    # Each engine's pace is its second of work over its share of the 8 ms (items 0 and 4 hold
    # 4 of the 10 units of cost): two threads first, the engine then in use.
    assert recorded == [
        (2, pytest.approx(1.0 / (8.0 * 0.6))),
        (1, pytest.approx(1.0 / (8.0 * 0.4))),
    ]


def test_picked_map_runs_on_one_thread_alone_once_one_thread_is_the_faster() -> None:
    import threading

    picker = th.thread_picker("test.map.serial", 8.0, 2)
    picker.current = 1  # measured faster (a busy machine)
    picker.seen = {2: 3, 1: 3}
    picker.pace = {2: 2.0, 1: 1.0}
    picker.next_probe = 10**9  # no re-try of two threads in this test
    names: set[str] = set()
    th.picked_map(
        "test.map.serial",
        lambda x: names.add(threading.current_thread().name),
        list(range(8)),
        [1.0] * 8,
        8.0,
        2,
    )
    assert names == {threading.current_thread().name}
