"""The generation loop shared by every backend: chunk, generate, write a shard, report.

A job is a JSON-able dict (written to disk for the vLLM worker):
  model, chat_template, requests (JSONL path: {id, messages, seed}), out_dir,
  shard ("i/N" or null), chunk_size, sampling {temperature, top_p, max_tokens},
  engine {dtype, max_model_len, ...}, guided_regex (or null), backend.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.generation.shards import ShardStore


def select_shard(rows: list[dict], shard: str | None) -> list[dict]:
    """`i/N`: every N-th request starting at i (0-based), so shards balance by construction."""
    if not shard:
        return rows
    i, n = (int(x) for x in shard.split("/"))
    if not 0 <= i < n:
        raise ValueError(f"--shard {shard}: expected i/N with 0 <= i < N")
    return rows[i::n]


def load_requests(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_job(job: dict, engine) -> dict:
    """Generate every pending request of the job; returns throughput numbers."""
    from tqdm import tqdm

    store = ShardStore(Path(job["out_dir"]))
    requests = select_shard(load_requests(job["requests"]), job.get("shard"))
    done = store.done_ids()
    pending = [r for r in requests if r["id"] not in done]
    size = max(1, int(job.get("chunk_size") or len(pending) or 1))
    stats = {"backend": engine.name, "backend_version": engine.version,
             "requests": len(requests), "skipped_done": len(requests) - len(pending),
             "generated": 0, "output_tokens": 0, "prompt_tokens": 0, "seconds": 0.0}
    bar = tqdm(total=len(pending), desc=f"generate[{engine.name}]", unit="req", dynamic_ncols=True)
    for start in range(0, len(pending), size):
        chunk = pending[start:start + size]
        t0 = time.perf_counter()
        results = engine.generate(chunk, job["sampling"], job.get("guided_regex"))
        dt = time.perf_counter() - t0
        for r in results:
            r["seconds"] = dt / len(results)
            r["backend"] = engine.name
            r["backend_version"] = engine.version
        store.write(results)
        stats["generated"] += len(results)
        stats["output_tokens"] += sum(r["output_tokens"] for r in results)
        stats["prompt_tokens"] += sum(len(r["prompt_token_ids"]) for r in results)
        stats["seconds"] += dt
        bar.update(len(results))
        bar.set_postfix(tok_s=f"{stats['output_tokens'] / max(stats['seconds'], 1e-9):.0f}")
    bar.close()
    stats["output_tokens_per_s"] = stats["output_tokens"] / stats["seconds"] if stats["seconds"] else None
    return stats
