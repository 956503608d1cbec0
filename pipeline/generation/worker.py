"""A generation worker that keeps one engine alive across jobs (the vLLM environment):

    .venv-vllm/bin/python -m pipeline.generation.worker [--preload] < job paths, one a line

Starting a vLLM engine costs far more than a small job, so the data engine's retry
rounds all reuse one; a job on another model swaps the engine but keeps the process
and its imports (half of a worker's start-up). Protocol on stdout: `DONE <stats path>`
per finished job; all logging goes to stderr. vLLM spawns processes, so nothing runs
at import time. `--preload` imports vLLM before the first job arrives (launch.prestart).
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import sys
import time

from pipeline.generation.job import Engine, GenerationJob
from pipeline.io import atomic_write_json


def make_engine(job: GenerationJob) -> Engine:
    if job.backend == "vllm":
        from pipeline.generation.vllm_engine import VllmEngine as engine_class
    else:
        from pipeline.generation.hf_engine import TransformersEngine as engine_class
    return engine_class(job.model, job.chat_template, job.engine, seed=job.seed)


def engine_for(job: GenerationJob, engine: Engine | None = None) -> Engine:
    """`engine` when it already serves the job's model, else a new one (the old one closed first)."""
    if engine is not None and engine.model_path == job.model:
        return engine
    if engine is not None:
        engine.close()
    return make_engine(job)


def serve(protocol, started_at: float) -> None:
    """Run each job named on stdin; `DONE <stats path>` on `protocol` after each. `started_at`
    (this process's start, epoch seconds) goes into every job's stats."""
    from pipeline.generation.runner import run_job

    engine = None
    for line in sys.stdin:
        job = GenerationJob.load(line.strip())
        if job.backend == "ray":  # the engines live in the cluster's actors
            from pipeline.generation.ray_data import run_job as run_on_ray

            stats = run_on_ray(dataclasses.asdict(job))
        else:
            t0 = time.perf_counter()
            engine = engine_for(job, engine)
            started = time.perf_counter() - t0  # vLLM import and engine start (0 when reused)
            stats = {**run_job(job, engine), "engine_start_s": started}
        atomic_write_json(job.stats_path, {**stats, "worker_started_at": started_at})
        protocol.write(f"DONE {job.stats_path}\n")
        protocol.flush()


PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> None:
    """Make this worker the reaper of its orphaned descendants (Linux). Ray's agents are
    children of its raylet and vLLM's engine core is a child of the engine: when their
    parent dies first they would be handed to init and could outlive the worker; adopted,
    `stop_descendants` still finds them."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)


def stop_descendants(grace: float = 10.0) -> None:
    """SIGTERM every process this worker started, directly or not, then SIGKILL what is
    left after `grace` seconds: whatever Ray's and vLLM's own shutdown missed."""
    import psutil

    procs = psutil.Process().children(recursive=True)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    for p in psutil.wait_procs(procs, timeout=grace)[1]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def main() -> None:
    started_at = time.time()
    # Stopped by the session (or by die_with_parent): exit through Python so that vLLM's
    # finalizers shut its engine-core processes down too. The SystemExit lands wherever
    # vLLM happens to be, and vLLM may turn it into an error of its own while unwinding
    # (seen: an UnboundLocalError in its tokenizer pool); a stop asked for is not a crash.
    stopping = []

    def stop(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup short
        stopping.append(True)
        sys.exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    adopt_orphans()
    # Keep the real stdout for the protocol only: everything else that writes to fd 1
    # (vLLM's engine processes, C++ warnings) is sent to stderr, which is logged.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        if "--preload" in sys.argv[1:]:  # a session started ahead of its jobs: import vLLM while waiting
            from vllm import LLM, SamplingParams  # noqa: F401
        serve(protocol, started_at)
    except BaseException:
        if stopping:
            sys.exit(128 + signal.SIGTERM)
        raise
    finally:
        if "ray" in sys.modules:  # a private local Ray: its own shutdown first, while the worker lives
            import ray

            ray.shutdown()
        stop_descendants()


if __name__ == "__main__":
    main()
