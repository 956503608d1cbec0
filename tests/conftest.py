"""Shared fixtures: the repository paths, the real emotion data when present, and
one tiny end-to-end run (real Axolotl, real vLLM when its environment exists) that
many tests inspect."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_EMOTION = ROOT.parent / "shared" / "data" / "emotion"


# The two files that build the session's runs come first, one per worker (make test runs two,
# in this order): the kill test builds the own-task run, then runs it nine times over; the
# experiments build the tiny run, then train eight arms. Every later file finds both runs built.
FIRST = ("test_kill_each_stage.py", "test_experiments.py")


def share_the_cores() -> None:
    """Under `pytest -n N`, each worker's processes (Axolotl, vLLM, torch in the worker) get
    cores/N OpenMP threads: N workers with a thread per core each oversubscribe the cores, and
    OpenMP's spinning threads then slow everything (two tiny_fast.yml runs side by side on 2 cores:
    236 s each with 2 threads, 168 s with 1)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))


share_the_cores()


def pytest_collection_modifyitems(items):
    """`slow`: every test that needs the tiny run (or the own-task run), trains, or starts vLLM (`pytest -m "not slow"` skips them).

    Files are ordered for `pytest -n 2 --dist loadfile --no-loadscope-reorder` (make test): FIRST,
    then the other users of the own-task run, of the tiny run, the other slow files, the rest. No
    worker waits for a run the other is building, and the short files at the end even out the
    workers' finishing times."""
    rank = {}
    for item in items:
        runs = {"tiny_run", "own_task_run"} & set(item.fixturenames)
        if runs or item.get_closest_marker("vllm") or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.slow)
        kind = FIRST.index(item.path.name) if item.path.name in FIRST \
            else 2 if "own_task_run" in runs else 3 if runs \
            else 4 if item.get_closest_marker("slow") else 5
        rank[item.path] = min(rank.get(item.path, kind), kind)
    items.sort(key=lambda item: rank[item.path])


@pytest.fixture(scope="session")
def shared_emotion() -> Path:
    if not (SHARED_EMOTION / "train.txt").exists():
        pytest.skip(f"{SHARED_EMOTION} not present")
    return SHARED_EMOTION


def orchestrate(*args: str, check: bool = True, timeout: int = 1500, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would; output is echoed so CI logs show each stage."""
    proc = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          env={**os.environ, **(env or {})})
    print(proc.stdout)
    if check and proc.returncode != 0:
        raise AssertionError(f"orchestrate.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}")
    return proc


def survivors(procs: list, timeout: float) -> list:
    """The processes still running after `timeout` s (zombies count as dead: a container's
    PID 1 may never reap an orphan)."""
    import time

    import psutil

    deadline = time.time() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.1)


def once_for_all_workers(tmp_path_factory, name: str, build):
    """`build(folder)` once per test session, also when `pytest -n N` runs N workers: the first
    worker builds under a file lock, the others wait and reuse its result (JSON-able)
    (pytest-xdist's documented pattern for session fixtures)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by the session's workers
    done = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            folder = root / name  # a worker whose build failed may have left it: the next one resumes it
            folder.mkdir(exist_ok=True)
            done.write_text(json.dumps(build(folder)))
    return json.loads(done.read_text())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, pytestconfig) -> Path:
    """`orchestrate.py all --profile tiny` once for the session: the demo, as CI runs it.

    TINY_RUN_DIR=DIR reuses (and completes) a run directory across sessions while developing."""
    def build(folder: Path) -> str:
        run_dir = Path(os.environ["TINY_RUN_DIR"]) if os.environ.get("TINY_RUN_DIR") else folder / "run"
        out = orchestrate("all", "--profile", "tiny", "--run-dir", str(run_dir)).stdout
        keep = re.compile(r"^\[[a-z0-9-]+\] |^generate( round \d+)?: |^predict\[|Initializing a V1 LLM engine")
        shown = [line for line in out.splitlines() if keep.search(line)]
        with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print("\n--- tiny demo run (orchestrate.py all --profile tiny), stage and engine lines ---")
            print("\n".join(line[:300] for line in shown))
        return str(run_dir)

    return Path(once_for_all_workers(tmp_path_factory, "tiny", build))


@pytest.fixture(scope="session")
def own_task_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """README's own-data walkthrough: examples/own_task copied to a folder outside the project and
    run with `all` on a shortened tiny profile; (task folder, run dir, output). Shared by the
    own-task and CLI-hint tests so CI trains it once. OWN_TASK_RUN_DIR=DIR reuses DIR/my-task
    and DIR/reviews across sessions while developing."""
    import shutil

    def build(folder: Path) -> list[str]:
        root = Path(os.environ.get("OWN_TASK_RUN_DIR") or folder)
        task_dir = root / "my-task"
        task_dir.mkdir(parents=True, exist_ok=True)
        for f in (ROOT / "examples" / "own_task").iterdir():
            shutil.copy(f, task_dir / f.name)
        run = root / "reviews"
        out = orchestrate("all", "--profile", str(ROOT / "tests" / "helpers" / "tiny_fast.yml"),
                          "--task", str(task_dir / "task.yml"), "--run-dir", str(run)).stdout
        return [str(task_dir), str(run), out]

    task_dir, run, out = once_for_all_workers(tmp_path_factory, "own-task", build)
    return Path(task_dir), Path(run), out
