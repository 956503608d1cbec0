"""`orchestrate.py plan`: what a run costs, before any work is done.

Tokens per stage come from the prepared data in the run directory when it exists
(4 characters per token, an estimate) and from the profile's `plan` section
otherwise. Training FLOP = tokens x epochs x `train_flop_per_token`; hours = FLOP /
(GPU peak x MFU). Generation time = output tokens / throughput. The MFU default is the
one measured for the shipped stage-1 config (bench/results/train_throughput_gpu.json,
`measured_mfu`); the generation throughput is an assumption until measured: pass
--mfu / --gen-tok-s for your GPU.
"""
from __future__ import annotations

import json

import yaml

from pipeline.config import ROOT, RunContext
from pipeline.train import resolve_config

CHARS_PER_TOKEN = 4.0
H100_BF16_DENSE_TFLOPS = 989.0
MEASURED_TRAINING = ROOT / "bench" / "results" / "train_throughput_gpu.json"
ASSUMED_MFU = 0.35


def train_flop_per_token(params: float, layers: int, hidden: int, context: float) -> float:
    """Forward and backward FLOP per trained token: 6N for the weights plus 12 x layers x
    hidden x context for attention's two matmuls (PaLM's count, Chowdhery et al. 2022,
    appendix B), where context is the tokens each token attends over: its row's length,
    since sample packing with varlen attention keeps packed rows apart."""
    return 6 * params + 12 * layers * hidden * context


def measured_mfu(path=MEASURED_TRAINING) -> tuple[float, str] | None:
    """The MFU measured for the config as shipped (variant "shipped") and a line saying where from."""
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    for r in data["results"]:
        if r["variant"] == "shipped" and r.get("mfu"):
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            return r["mfu"], (f"{where}, variant 'shipped' ({r['description']}), "
                              f"{data['device']}")
    return None


def _tokens_in(path) -> tuple[int, float] | None:
    if not path.exists():
        return None
    rows, chars = 0, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows += 1
                chars += len(line)
    return rows, chars / CHARS_PER_TOKEN


def _task_rows(ctx: RunContext) -> int | None:
    """Train rows the task will have: the run's prepared split, else --data-dir's train file (with the
    profile's limit), else the synthetic size; None for a hub dataset not yet downloaded."""
    spec = ctx.profile["task_data"]
    if ctx.task_split("train").exists():
        return _tokens_in(ctx.task_split("train"))[0]
    if ctx.data_dir is not None:
        from pipeline.data import read_data_dir

        return len(read_data_dir(ctx)["train"])
    return spec["n_train"] if spec["source"] == "synthetic" else spec.get("limit_train")


def _reasoning_rows(ctx: RunContext) -> int | None:
    spec = ctx.profile["reasoning_set"]
    return spec["limit"] or (spec["n"] if spec["source"] == "synthetic" else None)


def estimate(ctx: RunContext, gpu_tflops: float, mfu: float, gen_tok_s: float) -> list[dict]:
    from pipeline.preflight.resources import param_count

    plan = ctx.profile["plan"]
    params = float(param_count(ctx)[0] or plan["parameters"])  # the base model's own count where known
    tiny = ctx.profile["base_model"] == "tiny"
    layers = ctx.profile["tiny_model"]["num_layers"] if tiny else plan["layers"]
    hidden = ctx.profile["tiny_model"]["hidden_size"] if tiny else plan["hidden_size"]
    rows_out = []
    task_rows = _task_rows(ctx)
    for which in ("stage1", "stage2", "baseline"):
        cfg = resolve_config(ctx, which)  # the profile's own overrides: epochs, max_steps, batch sizes
        measured = _tokens_in(ctx.train_set(which))
        rows = (_reasoning_rows(ctx) or plan[which]["rows"]) if which == "stage1" else task_rows or plan[which]["rows"]
        rows, tokens = measured or (rows, rows * plan[which]["tokens_per_row"])
        per_token = train_flop_per_token(params, layers, hidden, tokens / max(rows, 1))
        seen = tokens * cfg.get("num_epochs", 1)
        if cfg.get("max_steps"):  # a step count caps the pass over the data
            per_step = cfg["micro_batch_size"] * cfg.get("gradient_accumulation_steps", 1)
            seen = cfg["max_steps"] * per_step * tokens / max(rows, 1)
        flop = per_token * seen
        rows_out.append({"stage": f"train-{which}", "rows": rows, "tokens": seen, "flop": flop,
                         "floor_h": flop / (gpu_tflops * 1e12) / 3600, "expected_h": flop / (gpu_tflops * 1e12 * mfu) / 3600,
                         "source": "run dir" if measured else "profile" if which == "stage1" or not task_rows else "data"})
    gen = plan["generate"]
    gen_rows = task_rows or gen["rows"]
    out_tokens = gen_rows * gen["output_tokens_per_row"] * (1 + gen.get("retry_share", 0.0))
    rows_out.append({"stage": "generate", "rows": gen_rows, "tokens": out_tokens, "flop": 2 * params * out_tokens,
                     "floor_h": 2 * params * out_tokens / (gpu_tflops * 1e12) / 3600,
                     "expected_h": out_tokens / gen_tok_s / 3600, "source": "profile"})
    pred = plan["predict"]
    pred_tokens = pred["rows"] * (pred["reasoning_tokens_per_row"] + pred["baseline_tokens_per_row"])
    rows_out.append({"stage": "predict", "rows": pred["rows"], "tokens": pred_tokens, "flop": 2 * params * pred_tokens,
                     "floor_h": 2 * params * pred_tokens / (gpu_tflops * 1e12) / 3600,
                     "expected_h": pred_tokens / gen_tok_s / 3600, "source": "profile"})
    return rows_out


def render(rows: list[dict], gpu_tflops: float, mfu: float, gen_tok_s: float, mfu_source: str) -> str:
    lines = [f"{'stage':<16}{'rows':>10}{'tokens':>14}{'FLOP':>11}{'floor h':>10}{'expected h':>12}  source",
             "-" * 80]
    for r in rows:
        lines.append(f"{r['stage']:<16}{r['rows']:>10,.0f}{r['tokens']:>14,.0f}{r['flop']:>11.2e}"
                     f"{r['floor_h']:>10.3f}{r['expected_h']:>12.3f}  {r['source']}")
    total = sum(r["expected_h"] for r in rows)
    lines += ["-" * 80, f"expected total: {total:.2f} GPU-hours at {gpu_tflops:g} TFLOP/s peak, MFU {mfu:.1%} for "
              f"training, {gen_tok_s:,.0f} output tokens/s for generation (assumed; measure: bench/)",
              f"training MFU from: {mfu_source}"]
    return "\n".join(lines)
