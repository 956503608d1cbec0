"""Choose a backend and open a generation session: in-process (transformers) or
worker processes in the vLLM environment, one per data-parallel replica, each keeping
its engine alive across the session's jobs and swapping it only when a job names
another model (predict runs both trained models in one worker). The ray backend runs
one worker, the Ray driver, whose replicas are actors on the cluster (`ray_data.py`).

`--backend auto` picks vLLM whenever its environment is present (VLLM_PYTHON, else
ROOT/.venv-vllm/bin/python with vllm importable), else transformers.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipeline.config import ROOT
from pipeline.generation.job import GenerationJob
from pipeline.generation.runner import finished
from pipeline.io import DataError, read_json
from pipeline.procs import StageFailed, redact, stop, tied_to_parent, tool_env


def vllm_python(module: str = "vllm") -> Path | None:
    """The interpreter of the vLLM environment, if one is set up (and has `module`)."""
    candidate = Path(os.environ.get("VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
    if not candidate.exists():
        return None
    probe = subprocess.run([str(candidate), "-c", f"import importlib.util as u; print(u.find_spec('{module}') is not None)"],
                           capture_output=True, text=True)
    return candidate if probe.stdout.strip() == "True" else None


def resolve_backend(name: str) -> str:
    if name not in ("auto", "vllm", "transformers", "ray"):
        raise DataError(f"--backend {name!r}: choose auto, vllm, transformers or ray")
    if name == "auto":
        return "vllm" if vllm_python() else "transformers"
    if name == "vllm" and not vllm_python():
        raise DataError("--backend vllm: no vLLM environment found. Run `make setup` (builds .venv-vllm) "
                        "or set VLLM_PYTHON to an interpreter that has vllm installed.")
    if name == "ray" and not (vllm_python() and vllm_python("ray")):
        raise DataError("--backend ray: the vLLM environment needs vllm and ray[data] (both in "
                        "requirements-vllm*.txt: `make setup`), or set VLLM_PYTHON to an interpreter that has them.")
    return name


def sub_shard(shard: str | None, j: int, m: int) -> str | None:
    """Replica j of m inside machine shard i/N: rows[i::N][j::m] == rows[i + N*j :: N*m]."""
    if m == 1:
        return shard
    i, n = (int(x) for x in (shard or "0/1").split("/"))
    return f"{i + n * j}/{n * m}"


def _sum_stats(stats: list[dict]) -> dict:
    total = {"backend": stats[0]["backend"], "backend_version": stats[0]["backend_version"]}
    total |= {k: sum(s[k] for s in stats) for k in ("requests", "skipped_done", "generated", "output_tokens", "prompt_tokens")}
    total["seconds"] = max(s["seconds"] for s in stats)
    total["engine_start_s"] = max(s["engine_start_s"] for s in stats)  # replicas start side by side
    if all("worker_started_at" in s for s in stats):
        total["worker_started_at"] = min(s["worker_started_at"] for s in stats)
    total["output_tokens_per_s"] = total["output_tokens"] / total["seconds"] if total["seconds"] else None
    return total


class GenerationSession:
    """`with GenerationSession(...) as s: s.run(job)`: one engine per replica for many `GenerationJob`s.

    Job and stats files for the workers live in a private temporary directory, so that
    machines sharing a run directory (`--shard i/N`) never read each other's jobs.
    """

    def __init__(self, backend: str, engine: dict, log_path: Path, offline: bool,
                 worker_env: dict | None = None, echo: bool = True):
        self.backend, self.engine_cfg, self.log_path = backend, engine, Path(log_path)
        self.offline, self.worker_env, self.echo = offline, worker_env or {}, echo
        self.replicas = int(engine.get("data_parallel_size", 1)) if backend == "vllm" else 1
        self.procs: list[subprocess.Popen] = []
        self.pumps: list[threading.Thread] = []
        self.log = None
        self.engine = None
        self.jobs = 0
        self.tmp = tempfile.TemporaryDirectory(prefix="generation-session-")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        for p in self.procs:
            if p.stdin:
                try:
                    p.stdin.close()  # the end of the job list: a worker exits after its last job
                except BrokenPipeError:  # it is gone already, with an unread job
                    pass
        for p in self.procs:
            if exc_type is None:
                try:
                    p.wait(timeout=120)
                    continue
                except subprocess.TimeoutExpired:
                    pass
            stop(p, grace=30)  # interrupted or failed: do not wait for the job in flight
        for t in self.pumps:
            t.join(timeout=10)
        if self.log:
            self.log.close()
        if self.engine is not None:
            self.engine.close()
        self.tmp.cleanup()

    def _start_workers(self, preload: bool = False) -> None:
        env = tool_env(self.offline, extra={k: str(v) for k, v in self.worker_env.items()})
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
        tp = int(self.engine_cfg.get("tensor_parallel_size", 1))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "a", encoding="utf-8")
        for j in range(self.replicas):
            replica_env = dict(env)
            if self.replicas > 1:
                replica_env["CUDA_VISIBLE_DEVICES"] = ",".join(str(j * tp + g) for g in range(tp))
            cmd = [str(vllm_python()), "-m", "pipeline.generation.worker", *(["--preload"] if preload else [])]
            self.log.write(f"$ {' '.join(cmd)}\n")
            proc = subprocess.Popen(tied_to_parent(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=replica_env, cwd=ROOT, text=True, errors="replace", bufsize=1)
            self.procs.append(proc)
            pump = threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True)
            pump.start()
            self.pumps.append(pump)

    def _died(self, proc: subprocess.Popen) -> None:
        proc.kill()
        raise StageFailed(f"vLLM worker exited with status {proc.wait()}; see {self.log_path}")

    def _pump(self, stream) -> None:
        for line in stream:
            line = redact(line)
            self.log.write(line)
            self.log.flush()
            if self.echo:
                sys.stdout.write(line)

    def run(self, job: GenerationJob) -> dict:
        """Run `job` to completion (resuming from its shards); returns summed stats."""
        job = job.replace(backend=self.backend)
        done = finished(job)
        if done is not None:
            return done
        self.jobs += 1
        if self.backend == "transformers":
            from pipeline.generation.runner import run_job
            from pipeline.generation.worker import engine_for

            t0 = time.perf_counter()
            self.engine = engine_for(job, self.engine)
            started = time.perf_counter() - t0
            return {**run_job(job, self.engine), "engine_start_s": started}
        if not self.procs:
            self._start_workers()
        stats_paths = []
        for j, proc in enumerate(self.procs):
            sub = job.replace(shard=sub_shard(job.shard, j, self.replicas),
                              stats_path=str(Path(self.tmp.name) / f"stats-{self.jobs}-{j}.json"))
            job_path = Path(self.tmp.name) / f"job-{self.jobs}-{j}.json"
            sub.save(job_path)
            try:
                proc.stdin.write(f"{job_path}\n")
                proc.stdin.flush()
            except BrokenPipeError:  # it died before its first job (a prestarted worker can)
                self._died(proc)
            stats_paths.append(sub.stats_path)
        for proc in self.procs:
            reply = proc.stdout.readline()
            if not reply.startswith("DONE"):  # EOF: the worker died
                self._died(proc)
        return _sum_stats([read_json(Path(p)) for p in stats_paths])


# Sessions started ahead of the stage that will use them, by key(): adopted by `session`.
_PRESTARTED: dict[str, GenerationSession] = {}


def _key(backend: str, engine: dict, log_path: Path, offline: bool, worker_env: dict | None, echo: bool) -> str:
    """What a stage's session must ask for to adopt the one `prestart` started: the same arguments."""
    return json.dumps([backend, engine, str(log_path), offline, worker_env or {}, echo], sort_keys=True, default=str)


def session(backend: str, engine: dict, log_path: Path, offline: bool, worker_env: dict | None = None,
            echo: bool = True) -> GenerationSession:
    """A GenerationSession with these arguments: the one `prestart` started, if any, else a new one."""
    ahead = _PRESTARTED.pop(_key(backend, engine, log_path, offline, worker_env, echo), None)
    return ahead or GenerationSession(backend, engine, log_path, offline, worker_env, echo)


def prestart(backend: str, engine: dict, log_path: Path, offline: bool, worker_env: dict | None = None,
             echo: bool = True) -> None:
    """Start the vLLM worker of a session that a later stage will open with the same arguments, so
    that its imports (10-20 s on a CPU) overlap the stage running now. One replica only; a
    session nobody adopts is stopped when this process exits."""
    key = _key(backend, engine, log_path, offline, worker_env, echo)
    if backend != "vllm" or int(engine.get("data_parallel_size", 1)) != 1 or key in _PRESTARTED:
        return
    ahead = GenerationSession(backend, engine, log_path, offline, worker_env, echo)
    ahead._start_workers(preload=True)
    _PRESTARTED[key] = ahead


@atexit.register
def _stop_unused() -> None:
    while _PRESTARTED:
        _PRESTARTED.popitem()[1].__exit__(KeyboardInterrupt, None, None)  # stop, do not wait for a job
