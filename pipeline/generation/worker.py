"""Entry point of a generation job in its own process (the vLLM environment):

    .venv-vllm/bin/python -m pipeline.generation.worker JOB.json

vLLM starts its engine in a spawned process, so this module does nothing at import
time; the job's stats are written to job["stats_path"].
"""
from __future__ import annotations

import json
import os
import sys


def make_engine(job: dict):
    if job["backend"] == "vllm":
        from pipeline.generation.vllm_engine import VllmEngine as Engine
    else:
        from pipeline.generation.hf_engine import TransformersEngine as Engine
    return Engine(job["model"], job["chat_template"], job["engine"], seed=job.get("seed", 0))


def main(path: str) -> None:
    from pipeline.generation.runner import run_job

    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    stats = run_job(job, make_engine(job))
    tmp = job["stats_path"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(stats, f)
    os.replace(tmp, job["stats_path"])


if __name__ == "__main__":
    main(sys.argv[1])
