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

from pipeline.config import AXOLOTL_CONFIGS_DIR, ROOT, RunContext

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


def estimate(ctx: RunContext, gpu_tflops: float, mfu: float, gen_tok_s: float) -> list[dict]:
    plan = ctx.profile["plan"]
    params = float(plan["parameters"])
    rows_out = []
    for which in ("stage1", "stage2", "baseline"):
        with open(AXOLOTL_CONFIGS_DIR / f"{which}.yml", encoding="utf-8") as f:
            epochs = yaml.safe_load(f).get("num_epochs", 1)
        measured = _tokens_in(ctx.train_set(which))
        rows, tokens = measured or (plan[which]["rows"], plan[which]["rows"] * plan[which]["tokens_per_row"])
        per_token = train_flop_per_token(params, plan["layers"], plan["hidden_size"], tokens / max(rows, 1))
        flop = per_token * tokens * epochs
        rows_out.append({"stage": f"train-{which}", "rows": rows, "tokens": tokens * epochs, "flop": flop,
                         "floor_h": flop / (gpu_tflops * 1e12) / 3600, "expected_h": flop / (gpu_tflops * 1e12 * mfu) / 3600,
                         "source": "run dir" if measured else "profile"})
    gen = plan["generate"]
    out_tokens = gen["rows"] * gen["output_tokens_per_row"] * (1 + gen.get("retry_share", 0.0))
    rows_out.append({"stage": "generate", "rows": gen["rows"], "tokens": out_tokens, "flop": 2 * params * out_tokens,
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
