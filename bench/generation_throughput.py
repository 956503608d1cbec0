#!/usr/bin/env python
"""Generation throughput of the two backends on the data engine's own workload: the
stage-1 requests of a run (RUN/generations/attempt-0/requests.jsonl) on its stage-1
model, with the profile's sampling (temperature, top_p, max_tokens) and engine settings.

    .venv/bin/python bench/generation_throughput.py --run-dir runs/tiny           # CPU: tiny profile
    .venv/bin/python bench/generation_throughput.py --run-dir runs/paper          # GPU: paper profile
    python bench/generation_throughput.py --random-model --backends transformers --limit 256   # GPU, no weights

`--random-model` needs no run: it builds a random-initialised model of Llama-3.2-1B's shape
(bench/train_throughput.py's, 128,256-row embedding) and stage-1 requests on synthetic emotion
rows, for a machine without the real weights. Random weights rarely sample the end-of-turn
token, so nearly every request writes max_tokens: a throughput at full length.

The profile defaults to `paper` on a CUDA machine (bfloat16, max_model_len 2048,
gpu_memory_utilization 0.9, prefix caching, CUDA graphs) and `tiny` elsewhere (float32,
eager). Each backend runs in its own `GenerationSession`, as `orchestrate.py generate`
does: first a one-request warm-up job, whose wall time minus its generation time is the
engine start (vLLM: worker process, engine processes, model load, KV cache, compile;
transformers: model load), then the timed job on all requests. Reported: output
tokens/s and requests/s over generation time (what the pipeline's generation_stats.json
reports), the job's wall time (shards, IPC included), engine start, and the session's
total wall time (start to shutdown). One table; JSON in
bench/results/generation_throughput_<device>.json with the command that produced it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.backend_agreement import command_line, device_info, run_context, versions  # noqa: E402
from pipeline.generation.launch import GenerationSession, vllm_python  # noqa: E402
from pipeline.generation.shards import ShardStore  # noqa: E402
from pipeline.io import atomic_write_json, atomic_write_jsonl, read_jsonl  # noqa: E402


def bench_backend(ctx, backend: str, model_dir: Path, requests: list[dict], work: Path, echo: bool) -> dict:
    from pipeline.generation.job import GenerationJob, engine_config

    gen = ctx.generation
    sampling = {k: gen[k] for k in ("temperature", "top_p", "max_tokens")}
    atomic_write_jsonl(work / "warmup.jsonl", [{**requests[0], "id": "warmup"}])
    atomic_write_jsonl(work / "requests.jsonl", requests)
    warm_job = GenerationJob.from_profile(ctx.generation, model_dir, work / "warmup.jsonl", work / "warmup", sampling,
                                          chat=ctx.chat_template)
    job = GenerationJob.from_profile(ctx.generation, model_dir, work / "requests.jsonl", work / "shards", sampling,
                                     chat=ctx.chat_template)
    t_open = time.perf_counter()
    with GenerationSession(backend, engine_config(ctx.generation), work / "session.log", offline=True,
                           worker_env=gen.get("worker_env"), echo=echo) as session:
        t0 = time.perf_counter()
        warm = session.run(warm_job)
        start_s = time.perf_counter() - t0 - warm["seconds"]
        t1 = time.perf_counter()
        stats = session.run(job)
        job_wall = time.perf_counter() - t1
    total_wall = time.perf_counter() - t_open
    rows = ShardStore(work / "shards").rows()
    finish = {}
    for r in rows:
        finish[r["finish_reason"]] = finish.get(r["finish_reason"], 0) + 1
    return {"backend": backend, "backend_version": rows[0]["backend_version"] if rows else None,
            "requests": stats["generated"], "prompt_tokens": stats["prompt_tokens"],
            "output_tokens": stats["output_tokens"], "mean_output_tokens": stats["output_tokens"] / max(len(rows), 1),
            "median_output_tokens": statistics.median(r["output_tokens"] for r in rows) if rows else None,
            "finish_reasons": finish, "generate_s": round(stats["seconds"], 3),
            "output_tokens_per_s": round(stats["output_tokens"] / stats["seconds"], 1),
            "requests_per_s": round(stats["generated"] / stats["seconds"], 2),
            "engine_start_s": round(start_s, 2), "job_wall_s": round(job_wall, 3),
            "session_wall_s": round(total_wall, 2)}


def random_model_run(ctx, n: int) -> Path:
    """A random-initialised model of the real shape at models/stage1 and n stage-1 requests on
    synthetic emotion rows (the pipeline's own prompts), for a machine without the weights."""
    from bench.train_throughput import LLAMA_1B
    from pipeline import prompts
    from pipeline.synthetic import make_emotion_split, tokenizer_corpus
    from pipeline.tiny_model import build_tiny_model

    build_tiny_model(ctx.model_dir("stage1"), tokenizer_corpus(ctx.task.labels), **LLAMA_1B)
    train, _ = make_emotion_split(n, 0, ctx.task.labels)
    path = ctx.generations / "attempt-0" / "requests.jsonl"
    atomic_write_jsonl(path, [{"id": f"random-{i:05d}", "messages": prompts.generation_messages(ctx.task, r, r["label"])}
                              for i, r in enumerate(train)])
    return path


def print_table(rows: list[dict]) -> None:
    head = f"{'backend':<13} {'requests':>8} {'out tok':>8} {'tok/req':>7} {'gen s':>8} {'out tok/s':>10} " \
           f"{'req/s':>8} {'start s':>8} {'job wall s':>10} {'total s':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['backend']:<13} {r['requests']:>8} {r['output_tokens']:>8} {r['mean_output_tokens']:>7.1f} "
              f"{r['generate_s']:>8.2f} {r['output_tokens_per_s']:>10.1f} {r['requests_per_s']:>8.2f} "
              f"{r['engine_start_s']:>8.2f} {r['job_wall_s']:>10.2f} {r['session_wall_s']:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", help="a run with models/stage1 and generations/attempt-0/requests.jsonl")
    p.add_argument("--random-model", action="store_true",
                   help="no run: a random-initialised Llama-3.2-1B-shape model and synthetic requests (--limit, default 256)")
    p.add_argument("--profile", help="engine settings and sampling (default: paper on CUDA, else tiny)")
    p.add_argument("--task", default="emotion")
    p.add_argument("--backends", default="transformers,vllm")
    p.add_argument("--limit", type=int, help="first N requests only (default: all)")
    p.add_argument("--requests", help="requests JSONL (default: RUN/generations/attempt-0/requests.jsonl)")
    p.add_argument("--out", help="default: bench/results/generation_throughput_<device>.json")
    p.add_argument("--work-dir", help="keep the generations here (default: a temporary folder)")
    p.add_argument("--echo", action="store_true", help="show the backends' logs")
    args = p.parse_args(argv)
    if not (args.run_dir or args.random_model):
        p.error("give --run-dir or --random-model")
    cuda = torch.cuda.is_available()
    profile = args.profile or ("paper" if cuda else "tiny")
    scratch = tempfile.TemporaryDirectory(prefix="gen-random-model-") if args.random_model else None
    ctx = run_context(Path(args.run_dir or scratch.name), profile, args.task)
    if args.random_model:
        req_path = random_model_run(ctx, args.limit or 256)
    else:
        req_path = Path(args.requests) if args.requests else ctx.generations / "attempt-0" / "requests.jsonl"
    requests = read_jsonl(req_path)[:args.limit]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "vllm" in backends and vllm_python() is None:
        print("no vLLM environment: benchmarking transformers only", file=sys.stderr)
        backends.remove("vllm")
    device = device_info()
    results = []
    with tempfile.TemporaryDirectory(prefix="gen-throughput-") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        for b in backends:
            print(f"[{b}] {len(requests)} requests, profile {profile} ...", flush=True)
            results.append(bench_backend(ctx, b, ctx.model_dir("stage1"), requests, work / b, args.echo))
    print(f"device: {device['name']} x{device['count']} ({device['kind']}); profile {profile}; "
          f"dtype {ctx.generation['dtype']}; sampling T={ctx.generation['temperature']} "
          f"top_p={ctx.generation['top_p']} max_tokens={ctx.generation['max_tokens']}")
    print_table(results)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"generation_throughput_{device['slug']}.json"
    atomic_write_json(out, {
        "command": command_line(), "cwd": str(Path.cwd()), "run_dir": str(ctx.run_dir), "model": str(ctx.model_dir("stage1")),
        "requests_file": str(req_path), "n_requests": len(requests), "profile": profile, "device": device,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch_threads_in_process": torch.get_num_threads(), "versions": versions(),
        "engine": {k: v for k, v in ctx.generation.items() if k != "backend"},
        "sampling": {k: ctx.generation[k] for k in ("temperature", "top_p", "max_tokens")},
        "definitions": {"output_tokens_per_s": "output tokens (EOS included) / generate_s",
                        "generate_s": "sum over chunks of the engine's generate() call",
                        "engine_start_s": "warm-up job wall time minus its generate time",
                        "job_wall_s": "timed job, as seen by the caller (shards, worker IPC included)",
                        "session_wall_s": "session open to close: start, warm-up, job, shutdown"},
        "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
