"""Training throughput, peak memory and MFU of the stage-1 config, through the real `axolotl train`.

    .venv/bin/python bench/train_throughput.py --attn sdpa                 # GPU: real Llama-3.2-1B shape, every variant
    .venv/bin/python bench/train_throughput.py --variants shipped,mb4x4+ckpt --steps 60
    .venv/bin/python bench/train_throughput.py --tiny --steps 30           # CPU smoke run of the same path

Builds a random-initialised model (Llama-3.2-1B's shape: 16 layers, hidden 2048, 32 heads,
8 KV heads, intermediate 8192, a tied 128,256-row embedding; or the tiny profile's with
--tiny), writes synthetic stage-1 rows, and runs `axolotl train` on the stage-1 config
resolved for each variant (the shipped config plus a few keys) for --steps steps.

Every number comes from Axolotl's own per-log metrics (`parse_log`): the cumulative
`tokens/total` (every token slot of every micro-batch, padding included: what the GPU
computes) and `tokens/trainable` (label tokens), and `tokens/train_per_sec_per_gpu`
(trainable tokens over the wall time since the previous log), which gives each logging
window's wall time. Steady state is every window after the first --warmup-steps steps
(compilation, autotuning, allocator warm-up). Reported per variant: tokens/s over all
processed tokens and trained (label) tokens/s at steady state, the same over the whole
run (Axolotl's `train_runtime`, warm-up included), peak allocated / reserved GPU memory,
and MFU = tokens/s x FLOP per token / GPU peak, FLOP per token = 6N + attention
(`pipeline.plan.train_flop_per_token`, N counted from the built checkpoint, the attention
context the mean tokens of a training row). Writes bench/results/train_throughput_<device>.json
after every variant; a variant that fails or outlasts --variant-timeout is recorded with its
error, and the next one runs.
"""
from __future__ import annotations

import argparse
import ast
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline import prompts  # noqa: E402
from pipeline.config import RunContext, TaskSpec, load_profile  # noqa: E402
from pipeline.io import atomic_write_json, atomic_write_jsonl  # noqa: E402
from pipeline.plan import H100_BF16_DENSE_TFLOPS, train_flop_per_token  # noqa: E402

LLAMA_1B = dict(hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8, intermediate_size=8192,
                vocab_size=128256, embedding_rows=128256, max_position_embeddings=4096)
LIGER_OFF = {"plugins": None, "liger_rope": None, "liger_rms_norm": None, "liger_glu_activation": None,
             "liger_fused_linear_cross_entropy": None}
# Overrides of the shipped axolotl_configs/stage1.yml. Every variant keeps the maths:
# learning rate, schedule and 16 packed rows per optimizer step.
VARIANTS = {
    "shipped": {},
    "mb4x4+ckpt": {"micro_batch_size": 4, "gradient_accumulation_steps": 4, "gradient_checkpointing": True},
    "mb16x1+ckpt": {"micro_batch_size": 16, "gradient_accumulation_steps": 1, "gradient_checkpointing": True},
    "mb16x1": {"micro_batch_size": 16, "gradient_accumulation_steps": 1},
    "+compile": {"torch_compile": True},
    "-liger": LIGER_OFF,
    "flex": {"attn_implementation": "flex_attention"},
    "mb16x1+flex": {"micro_batch_size": 16, "gradient_accumulation_steps": 1, "attn_implementation": "flex_attention"},
}
_LOG_DICT = re.compile(r"\{'[^{}]*\}")


def parse_log(text: str) -> tuple[list[dict], dict]:
    """The trainer's per-log dicts (those with a loss) and its final summary, values as floats.

    Transformers prints each log as a Python dict, values formatted as strings
    (`'tokens/train_per_sec_per_gpu': '1.198e+04'`) or plain numbers; tqdm may share the line."""
    logs, summary = [], {}
    for match in _LOG_DICT.finditer(text):
        try:
            raw = ast.literal_eval(match.group(0))
        except (SyntaxError, ValueError):
            continue
        values = {}
        for key, value in raw.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                pass
        if "loss" in values:
            logs.append(values)
        elif "train_runtime" in values:
            summary = values
    return logs, summary


def throughput(logs: list[dict], summary: dict, logging_steps: int, warmup_steps: int, gpus: int = 1) -> dict:
    """Per-GPU tokens/s (all and trained) over the logging windows after `warmup_steps`,
    and over the whole run; peak GPU memory over every log."""
    steady = {"tokens": 0.0, "trainable": 0.0, "seconds": 0.0, "steps": 0}
    for i in range(1, len(logs)):
        prev, cur = logs[i - 1], logs[i]
        rate = cur.get("tokens/train_per_sec_per_gpu")
        if i * logging_steps < warmup_steps or not rate:  # window i covers steps (i*ls, (i+1)*ls]
            continue
        trainable = cur["tokens/trainable"] - prev["tokens/trainable"]
        steady["tokens"] += cur["tokens/total"] - prev["tokens/total"]
        steady["trainable"] += trainable
        steady["seconds"] += trainable / gpus / rate
        steady["steps"] += logging_steps
    if not steady["seconds"]:
        raise ValueError(f"no logging window after {warmup_steps} warm-up steps: {len(logs)} logs, "
                         f"logging_steps {logging_steps}; run more --steps")
    runtime = summary.get("train_runtime")
    peak = {k: max((log.get(f"memory/{k} (GiB)", 0.0) for log in logs), default=0.0) or None
            for k in ("max_allocated", "device_reserved")}
    return {"tokens_per_s": steady["tokens"] / gpus / steady["seconds"],
            "trained_tokens_per_s": steady["trainable"] / gpus / steady["seconds"],
            "steady_steps": steady["steps"], "warmup_steps": warmup_steps,
            "tokens_per_s_incl_warmup": logs[-1]["tokens/total"] / gpus / runtime if runtime else None,
            "train_runtime_s": runtime,
            "peak_allocated_gib": peak["max_allocated"], "peak_reserved_gib": peak["device_reserved"]}


def checkpoint_params(model_dir: Path) -> int:
    """Parameters of a safetensors checkpoint (tied embeddings stored once)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for name in f.keys():
                n = 1
                for d in f.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def mean_row_tokens(model_dir: Path, rows: list[dict], sample: int = 500) -> float:
    """Mean tokens of a rendered training row: the attention context of each of its tokens
    (sample packing with varlen attention keeps rows apart)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(tok.apply_chat_template(r["messages"], chat_template=prompts.chat_template(), tokenize=True,
                                           return_dict=True)["input_ids"]) for r in rows[:sample]]
    return sum(lengths) / len(lengths)


def describe(cfg: dict) -> str:
    """The speed settings of a resolved config, in words."""
    return (f"micro-batch {cfg['micro_batch_size']} x accumulation {cfg['gradient_accumulation_steps']}, "
            f"checkpointing {'on' if cfg.get('gradient_checkpointing') else 'off'}, "
            f"Liger {'on' if cfg.get('liger_fused_linear_cross_entropy') else 'off'}, "
            f"torch_compile {'on' if cfg.get('torch_compile') else 'off'}, {cfg.get('attn_implementation')}")


def run_variant(ctx: RunContext, name: str, overrides: dict, args, work: Path) -> dict:
    from pipeline.procs import StageFailed, run_logged, tool_env
    from pipeline.train import resolve_config, train_command, validate_config

    logging_steps = max(1, args.steps // 20)
    attn = {"attn_implementation": args.attn} if args.attn else {}  # a variant's own backend wins
    ctx.profile["train"]["stage1"] = {**attn, **overrides, "max_steps": args.steps, "save_strategy": "no",
                                      "save_steps": None, "logging_steps": logging_steps, "include_tkps": True}
    cfg = resolve_config(ctx, "stage1")
    cfg["output_dir"] = str(work / name)
    cfg["dataset_prepared_path"] = str(work / "prepared" / name)
    validate_config(cfg, ctx.profile["train"].get("target_hardware"), name)
    path = work / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = work / f"{name}.log"
    limit = ["timeout", "--kill-after=30", str(args.variant_timeout)] if args.variant_timeout else []
    try:
        run_logged(limit + train_command(path, 1), log, tool_env(offline=True), cwd=work, echo=False)
    except StageFailed as e:
        why = (f"not finished after --variant-timeout {args.variant_timeout} s" if limit and e.returncode == 124
               else f"`axolotl train` exited with status {e.returncode}")
        raise StageFailed(f"{why}; see {log}") from None
    logs, summary = parse_log(log.read_text(errors="replace"))
    warmup = args.warmup_steps if args.warmup_steps is not None else max(logging_steps, args.steps // 4)
    keys = ("micro_batch_size", "gradient_accumulation_steps", "gradient_checkpointing", "torch_compile",
            "attn_implementation", "sample_packing", "liger_fused_linear_cross_entropy")
    return {"variant": name, "description": describe(cfg), "config": {k: cfg.get(k) for k in keys},
            **throughput(logs, summary, logging_steps, warmup), "log": str(log)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup-steps", type=int, help="steps left out of the steady state (default: a quarter)")
    ap.add_argument("--rows", type=int, help="synthetic stage-1 rows (default: 120 per step, enough for packing)")
    ap.add_argument("--tiny", action="store_true", help="the tiny profile's model and CPU settings")
    ap.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)} (--tiny: shipped)")
    ap.add_argument("--attn", help="attn_implementation for every variant that names none: sdpa, flex_attention, "
                                   "flash_attention_torch, flash_attention_2 (default: the config's)")
    ap.add_argument("--variant-timeout", type=int, default=900,
                    help="seconds one variant's `axolotl train` may take before it is stopped and recorded as "
                         "not finished (default 900; 0: no limit)")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                    help="the GPU's peak bf16 dense TFLOP/s for MFU (default: H100 SXM, 989)")
    ap.add_argument("--out", help="result file (default: bench/results/train_throughput_<cpu|gpu>.json)")
    args = ap.parse_args()

    from pipeline.synthetic import make_reasoning_set, tokenizer_corpus
    from pipeline.tiny_model import build_tiny_model

    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    profile = load_profile("tiny" if args.tiny else "paper")
    ctx = RunContext(profile, TaskSpec.load("emotion"), work / "run")
    shape = profile["tiny_model"] if args.tiny else LLAMA_1B
    build_tiny_model(ctx.base_model_dir, tokenizer_corpus(ctx.task.labels), **shape)
    profile["base_model"] = "tiny"  # a local, random-initialised model at ctx.base_model_dir
    rows = [{"id": f"rs-{i:06d}", "messages": prompts.stage1_messages(r["question"], r["answer"], r["reasoning"])}
            for i, r in enumerate(make_reasoning_set(args.rows or 120 * args.steps, seed=0))]
    atomic_write_jsonl(ctx.train_set("stage1"), rows)
    params = checkpoint_params(ctx.base_model_dir)
    context = mean_row_tokens(ctx.base_model_dir, rows)
    flop = train_flop_per_token(params, shape["num_layers"], shape["hidden_size"], context)
    out = {"command": "python bench/train_throughput.py " + " ".join(sys.argv[1:]), "machine": platform.platform(),
           "device": _device(), "load_average_at_start": load, "shape": shape, "parameters": params, "mean_row_tokens": context,
           "flop_per_token": flop, "peak_tflops": None if args.tiny else args.peak_tflops, "steps": args.steps,
           "results": [],
           "note": "tokens/s per GPU at steady state (after warmup_steps), all token slots incl. padding; "
                   "FLOP/token = 6N + 12 x layers x hidden x mean_row_tokens; MFU against peak_tflops"}
    dest = Path(args.out) if args.out else ROOT / "bench" / "results" / f"train_throughput_{'cpu' if args.tiny else 'gpu'}.json"
    for name in (args.variants or ("shipped" if args.tiny else ",".join(VARIANTS))).split(","):
        try:
            r = run_variant(ctx, name, VARIANTS[name], args, work)
        except Exception as e:  # noqa: BLE001 - one variant that fails (out of memory, say) leaves the others
            r = {"variant": name, "error": f"{type(e).__name__}: {e}", "log": str(work / f"{name}.log")}
            print(f"{name:<14}failed: {r['error']}", flush=True)
        else:
            r["achieved_tflop_s"] = r["tokens_per_s"] * flop / 1e12
            # MFU is a GPU's ratio: a tiny model on a CPU is reported in TFLOP/s only
            r["mfu"] = None if args.tiny else r["achieved_tflop_s"] / args.peak_tflops
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
            peak = f"{r['peak_allocated_gib']:.1f} GiB" if r["peak_allocated_gib"] else "n/a"
            print(f"{name:<14}{r['tokens_per_s']:>10,.0f} tok/s  trained {r['trained_tokens_per_s']:>9,.0f} tok/s  "
                  f"MFU {mfu:>6}  peak {peak}", flush=True)
        out["results"].append(r)
        atomic_write_json(dest, out)  # after every variant: a later one that hangs loses nothing
    print(f"wrote {dest}")


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    cores = len(os.sched_getaffinity(0))
    return f"CPU, {cores} cores"


if __name__ == "__main__":
    main()
