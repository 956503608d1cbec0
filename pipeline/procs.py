"""Run the external tools (axolotl, the vLLM worker) as logged subprocesses.

The environment is built here once: telemetry off, the hub offline where the profile
says so, W&B off unless asked, the venv's bin on PATH (axolotl execs `accelerate`).
Secrets from the environment are masked in every log line we write. Every child runs
under `die_with_parent.py`, so none outlives an orchestrator that was killed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
# The children run_logged is reading now, from any thread: stop_all() ends them when the
# main thread is interrupted while other threads wait on theirs (pipeline/side_by_side.py).
_RUNNING: set[subprocess.Popen] = set()
_SHARE = threading.local()  # how many tools run side by side with the current thread's (sharing_cores)


class StageFailed(Exception):
    """An external tool exited non-zero; the message points at its log. `returncode`: the
    tool's exit status, where one process's is known."""

    def __init__(self, message: str, returncode: int | None = None):
        super().__init__(message)
        self.returncode = returncode


def tied_to_parent(cmd: list) -> list[str]:
    """`cmd`, made to receive SIGTERM when this process dies (see die_with_parent.py)."""
    return [sys.executable, str(Path(__file__).with_name("die_with_parent.py")), str(os.getpid()), *map(str, cmd)]


def secrets() -> list[str]:
    return [v for k in SECRET_VARS if len(v := os.environ.get(k, "")) >= 4]


def redact(text: str) -> str:
    for value in sorted(secrets(), key=len, reverse=True):  # a secret may be a prefix of another
        text = text.replace(value, "***")
    return text


def tool_env(offline: bool, wandb: bool = False, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["AXOLOTL_DO_NOT_TRACK"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
        env["HF_DATASETS_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    if not wandb:
        env["WANDB_MODE"] = "disabled"
    side_by_side = getattr(_SHARE, "n", 1)
    if side_by_side > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // side_by_side))
    env.update(extra or {})
    return env


@contextmanager
def sharing_cores(n: int):
    """Within it, tool_env gives this thread's tools an n-th of the machine's cores each
    (OMP_NUM_THREADS, unless already set): n trainings side by side, each with torch's default of
    a thread per core, fight for the cores (5x slower on 2 cores, bench/README.md §4)."""
    _SHARE.n = n
    try:
        yield
    finally:
        _SHARE.n = 1


def stop(proc: subprocess.Popen, grace: float) -> int:
    """SIGTERM, then SIGKILL if it is still running after `grace` seconds; the exit status."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def stop_all(grace: float) -> None:
    """`stop` every child that run_logged is reading now, all signalled at once; their readers
    then see them end."""
    procs = list(_RUNNING)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        stop(proc, grace)


def run_logged(cmd: list[str], log_path: Path, env: dict, cwd: Path | None = None, echo: bool = True) -> None:
    """Run `cmd`, appending its merged output (secrets masked) to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(redact(f"$ {' '.join(map(str, cmd))}\n"))
        log.flush()
        proc = subprocess.Popen(tied_to_parent(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, text=True, errors="replace", bufsize=1)
        _RUNNING.add(proc)
        try:
            for line in proc.stdout:
                line = redact(line)
                log.write(line)
                log.flush()  # a process killed from outside still leaves every line it was given
                if echo:
                    sys.stdout.write(line)
            rc = proc.wait()
        except BaseException:  # interrupted: SIGTERM lets a launcher stop its ranks
            stop(proc, grace=30)
            raise
        finally:
            _RUNNING.discard(proc)
    if rc != 0:
        raise StageFailed(f"{cmd[0]} exited with status {rc}; see {log_path}", returncode=rc)
