"""A generation worker that keeps one engine alive across jobs (the vLLM environment):

    .venv-vllm/bin/python -m pipeline.generation.worker < job paths, one a line

Starting a vLLM engine costs far more than a small job, so the data engine's retry
rounds all reuse one; a job on another model swaps the engine but keeps the process
and its imports (half of a worker's start-up). Protocol on stdout: `DONE <stats path>`
per finished job; all logging goes to stderr. vLLM spawns processes, so nothing runs
at import time.
"""
from __future__ import annotations

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


def serve(protocol) -> None:
    """Run each job named on stdin; `DONE <stats path>` on `protocol` after each."""
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
        atomic_write_json(job.stats_path, stats)
        protocol.write(f"DONE {job.stats_path}\n")
        protocol.flush()


def main() -> None:
    # Stopped by the session (or by die_with_parent): exit through Python so that vLLM's
    # finalizers shut its engine-core processes down too. The SystemExit lands wherever
    # vLLM happens to be, and vLLM may turn it into an error of its own while unwinding
    # (seen: an UnboundLocalError in its tokenizer pool); a stop asked for is not a crash.
    stopping = []

    def stop(*_):
        stopping.append(True)
        sys.exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    # Keep the real stdout for the protocol only: everything else that writes to fd 1
    # (vLLM's engine processes, C++ warnings) is sent to stderr, which is logged.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        serve(protocol)
    except BaseException:
        if stopping:
            sys.exit(128 + signal.SIGTERM)
        raise


if __name__ == "__main__":
    main()
