"""The Ray Data backend runs the generate job of the vLLM backend and gives its outputs.

On a private one-node Ray with the CPU vLLM build: the first 96 generate requests of
the tiny run (attempt 0: the same ids, messages and per-request seeds, engine seed 0)
go through `GenerationSession("ray")` in a child process, in 24 chunks of 4 (the tiny
reasonings are a few tokens: with fewer chunks all may finish before the kill lands); the
child is SIGKILLed once the first shard is on disk. Its worker, Ray's processes and the vLLM
actor must all die with it; a rerun must skip the finished ids, generate only the
rest, and end with every id exactly once and the same outputs, prompt token ids and
token counts as the tiny run's own vLLM shards (per-request seeds make each output
independent of batching and of the replica that ran it).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.backend_agreement import run_context
from pipeline.generation.launch import GenerationSession, vllm_python
from pipeline.generation.shards import ShardStore
from pipeline.io import atomic_write_jsonl, read_jsonl
from pipeline.generation.job import GenerationJob, engine_config
from tests.conftest import ROOT, survivors

pytestmark = [pytest.mark.vllm,
              pytest.mark.skipif(vllm_python() is None or vllm_python("ray") is None,
                                 reason="no vLLM environment with ray[data] (.venv-vllm or VLLM_PYTHON)")]

N, CHUNK = 96, 4
CHILD = """import json, sys
from pipeline.generation.job import GenerationJob
from pipeline.generation.launch import GenerationSession
job, env = GenerationJob.load(sys.argv[1]), json.loads(sys.argv[3])
with GenerationSession("ray", job.engine, sys.argv[2], True, env, echo=False) as s:
    s.run(job)
"""


def test_ray_backend_equals_vllm_and_resumes_after_a_kill(tiny_run, tmp_path):
    run = Path(tiny_run).resolve()
    ctx = run_context(run, "tiny")
    attempt0 = run / "generations" / "attempt-0"
    reference = {r["id"]: r for r in ShardStore(attempt0 / "shards").rows()}
    requests = read_jsonl(attempt0 / "requests.jsonl")[:N]
    assert {reference[r["id"]]["backend"] for r in requests} == {"vllm"}
    atomic_write_jsonl(tmp_path / "requests.jsonl", requests)
    ctx.profile["generation"]["chunk_size"] = CHUNK
    gen = ctx.generation
    job = GenerationJob.from_profile(gen, ctx.model_dir("stage1"), tmp_path / "requests.jsonl", tmp_path / "shards",
                                     {k: gen[k] for k in ("temperature", "top_p", "max_tokens")}, seed=gen["seed"],
                                     chat=ctx.chat_template)
    job.save(tmp_path / "job.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)  # a private local Ray, never a cluster the developer happens to run

    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "job.json"), str(tmp_path / "killed.log"),
                              json.dumps(gen["worker_env"])], cwd=ROOT, env=env)
    store = ShardStore(tmp_path / "shards")
    deadline = time.time() + 600
    while not store.shards():
        assert child.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.time() < deadline, "no shard after 600 s"
        time.sleep(0.05)
    descendants = psutil.Process(child.pid).children(recursive=True)
    names = [p.name() for p in descendants]
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert "raylet" in names, names  # the local Ray itself ran under the killed process
    assert survivors(descendants, timeout=60) == [], "a worker, Ray process or vLLM actor outlived the killed run"
    done_before = len(store.done_ids())
    assert 0 < done_before < N, done_before

    with GenerationSession("ray", engine_config(gen), tmp_path / "resumed.log", True, gen["worker_env"],
                           echo=False) as session:
        stats = session.run(job)
    assert stats["backend"] == "ray" and stats["requests"] == N
    assert stats["skipped_done"] == done_before and stats["generated"] == N - done_before, stats
    ids = [r["id"] for r in store.rows()]
    assert sorted(ids) == sorted(r["id"] for r in requests) and len(ids) == len(set(ids))
    got = {r["id"]: r for r in store.rows()}
    for r in requests:
        want, have = reference[r["id"]], got[r["id"]]
        assert have["prompt_token_ids"] == want["prompt_token_ids"], r["id"]
        assert (have["output"], have["output_tokens"]) == (want["output"], want["output_tokens"]), r["id"]
