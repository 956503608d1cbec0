"""The generation loop shared by every backend: chunk, generate, write a shard, report.

It runs one `job.GenerationJob` on any `job.Engine`, in process (transformers) or in the
vLLM worker.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from pipeline.generation.shards import ShardStore
from pipeline.generation.job import Engine, GenerationJob
from pipeline.io import DataError, read_jsonl


def parse_shard(shard: str) -> tuple[int, int]:
    """Parse `i/N` into (i, N), 0 <= i < N; anything else is a DataError naming the flag."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise DataError(f"--shard {shard!r}: expected i/N with 0 <= i < N, e.g. --shard 0/4 ... --shard 3/4")
    return int(m.group(1)), int(m.group(2))


def select_shard(rows: list, shard: str | None) -> list:
    """`i/N`: every N-th row starting at i (0-based), so shards balance by construction."""
    if not shard:
        return rows
    i, n = parse_shard(shard)
    return rows[i::n]


def finished(job: GenerationJob) -> dict | None:
    """The job's stats when its shards already hold every request (a merge, or a rerun after
    the last chunk): then no engine need start. None while any request is pending."""
    requests = select_shard(read_jsonl(job.requests), job.shard)
    rows = {r["id"]: r for r in ShardStore(Path(job.out_dir)).rows()}
    if not requests or any(r["id"] not in rows for r in requests):
        return None
    first = rows[requests[0]["id"]]
    return {"backend": first["backend"], "backend_version": first["backend_version"], "requests": len(requests),
            "skipped_done": len(requests), "generated": 0, "output_tokens": 0, "prompt_tokens": 0, "seconds": 0.0,
            "output_tokens_per_s": None, "engine_start_s": 0.0}


def run_job(job: GenerationJob, engine: Engine) -> dict:
    """Generate every pending request of the job; returns throughput numbers."""
    from tqdm import tqdm

    store = ShardStore(Path(job.out_dir))
    requests = select_shard(read_jsonl(job.requests), job.shard)
    done = store.done_ids()
    pending = [r for r in requests if r["id"] not in done]
    size = max(1, int(job.chunk_size or len(pending) or 1))
    stats = {"backend": engine.name, "backend_version": engine.version,
             "requests": len(requests), "skipped_done": len(requests) - len(pending),
             "generated": 0, "output_tokens": 0, "prompt_tokens": 0, "seconds": 0.0}
    bar = tqdm(total=len(pending), desc=f"generate[{engine.name}]", unit="req", dynamic_ncols=True)
    for start in range(0, len(pending), size):
        chunk = pending[start:start + size]
        t0 = time.perf_counter()
        results = engine.generate(chunk, job.sampling, job.guided_regex)
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
