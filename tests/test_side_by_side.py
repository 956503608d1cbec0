"""Trainings side by side (`train.concurrent`): which stages the runner groups, that grouped jobs
really overlap, that a failure keeps the others' work, that Ctrl-C stops every child process
before the run stops. (That the tiny run's two trainings overlapped: test_fair_comparison.py.)"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

import psutil
import pytest

from pipeline.config import RunContext, TaskSpec, load_profile
from pipeline.procs import run_logged, tool_env
from pipeline.run import ORDER, fingerprints, side_by_side_groups
from pipeline.side_by_side import run_side_by_side


def test_only_independent_trainings_are_grouped():
    assert side_by_side_groups(ORDER, 2) == [["prepare"], ["train-stage1"], ["generate"], ["build-stage2"],
                                              ["train-stage2", "train-baseline"], ["predict"], ["evaluate"]]
    assert side_by_side_groups(ORDER, 1) == [[name] for name in ORDER]
    # stage 2 depends on stage 1 through generate and build-stage2: never together
    assert side_by_side_groups(["train-stage1", "train-stage2", "train-baseline"], 3) == \
        [["train-stage1"], ["train-stage2", "train-baseline"]]


def test_how_many_run_at_once_is_not_part_of_a_fingerprint(tmp_path):
    def fps(**train):
        profile = load_profile("tiny")
        profile["train"].update(train)
        return fingerprints(RunContext(profile, TaskSpec.load("emotion"), tmp_path))

    assert fps(concurrent=1) == fps(concurrent=2)
    assert fps(concurrent=2) != fps(concurrent=2, gpus=2)  # while what reaches a training does count


def test_jobs_side_by_side_share_the_cores_unless_the_user_chose(monkeypatch):
    def threads():
        return tool_env(offline=True).get("OMP_NUM_THREADS")

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert run_side_by_side([threads, threads], 2) == ["4", "4"]
    assert run_side_by_side([threads, threads, threads], 4) == ["2", "2", "2"]  # three at once: 8 // 3 each
    assert run_side_by_side([threads, threads], 1) == [None, None]  # one at a time: torch's default
    assert threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert run_side_by_side([threads, threads], 2) == ["3", "3"]


def test_jobs_run_at_once_and_results_keep_their_order():
    both = threading.Barrier(2, timeout=30)  # each job waits for the other: one at a time would time out

    def job(value):
        def run():
            both.wait()
            return value
        return run

    ended = []
    assert run_side_by_side([job("a"), job("b")], 2, lambda i, r, e: ended.append((i, r, e))) == ["a", "b"]
    assert sorted(ended) == [(0, "a", None), (1, "b", None)]


def test_a_failure_lets_the_running_job_finish_and_starts_no_other():
    started, release = [], threading.Event()

    def fails():
        started.append("fails")
        raise ValueError("bad config")

    def slow():
        started.append("slow")
        release.wait(timeout=30)
        return "kept"

    def never():
        started.append("never")

    ended = {}
    threading.Timer(0.5, release.set).start()
    with pytest.raises(ValueError, match="bad config"):
        run_side_by_side([slow, fails, never], 2, lambda i, r, e: ended.__setitem__(i, (r, type(e).__name__)))
    assert ended == {0: ("kept", "NoneType"), 1: (None, "ValueError")}
    assert "never" not in started


def test_ctrl_c_stops_every_child_and_reports_each_job(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    pids = [tmp_path / f"child-{i}.pid" for i in range(2)]

    def job(i):
        code = f"import os, time; open({str(pids[i])!r}, 'w').write(str(os.getpid())); time.sleep(120)"
        return lambda: run_logged([sys.executable, "-c", code], tmp_path / f"child-{i}.log", tool_env(offline=True),
                                  echo=False)

    def interrupt_once_both_started():
        deadline = time.time() + 60
        while not all(p.exists() and p.read_text() for p in pids) and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    ended = {}
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job may ignore SIGINT
    try:
        threading.Thread(target=interrupt_once_both_started, daemon=True).start()
        t0 = time.time()
        with pytest.raises(KeyboardInterrupt):
            run_side_by_side([job(0), job(1)], 2, lambda i, r, e: ended.__setitem__(i, type(e).__name__))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.time() - t0 < 60  # not the children's 120 s
    assert ended == {0: "KeyboardInterrupt", 1: "KeyboardInterrupt"}
    children = [int(p.read_text()) for p in pids]
    assert [pid for pid in children if psutil.pid_exists(pid) and
            psutil.Process(pid).status() != psutil.STATUS_ZOMBIE] == []


def test_the_stage_benchmark_counts_time_that_ran_side_by_side_once():
    from bench.pipeline_stages import overlap

    stages = {"a": {"started": 0.0, "finished": 10.0}, "b": {"started": 5.0, "finished": 12.0},
              "c": {"started": 20.0, "finished": 21.0}, "running": {"started": 30.0}}
    assert overlap(stages) == 5.0
    assert overlap({k: v for k, v in stages.items() if k != "b"}) == 0.0
