"""Training throughput and MFU of the stage-1 config, with and without its speed options.

    .venv/bin/python bench/train_throughput.py --steps 200            # GPU: real Llama-3.2-1B shape
    .venv/bin/python bench/train_throughput.py --tiny --steps 30      # CPU smoke run of the same path

Builds a random-initialised model (the real shape: 16 layers, hidden 2048, 32 heads, 8 KV
heads, intermediate 8192, vocab 128256, tied embeddings; or the tiny profile's with --tiny),
then runs the real `axolotl train` on the stage-1 config resolved for each variant
(plain; + sample packing; + Liger; + torch_compile) for --steps steps on synthetic stage-1
rows. Tokens/s come from Axolotl's own `tokens/train_per_sec_per_gpu` log; MFU = tokens/s x
6 x 1.236e9 FLOP / 989e12 (H100 bf16 dense). Prints one table, writes
bench/results/train_throughput_<device>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import prompts  # noqa: E402
from pipeline.config import RunContext, TaskSpec, load_profile  # noqa: E402
from pipeline.io import atomic_write_jsonl  # noqa: E402
from pipeline.procs import run_logged, tool_env  # noqa: E402
from pipeline.synthetic import make_reasoning_set, tokenizer_corpus  # noqa: E402
from pipeline.tiny_model import build_tiny_model  # noqa: E402
from pipeline.train import resolve_config, train_command, validate_config  # noqa: E402

LLAMA_1B = dict(hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8, intermediate_size=8192,
                vocab_size=128256, max_position_embeddings=4096)
FLOP_PER_TOKEN = 6 * 1.236e9
PEAK = 989e12
VARIANTS = {
    "plain": {"sample_packing": False, "plugins": None, "liger_rope": None, "liger_rms_norm": None,
              "liger_glu_activation": None, "liger_fused_linear_cross_entropy": None, "torch_compile": False},
    "+packing": {"plugins": None, "liger_rope": None, "liger_rms_norm": None, "liger_glu_activation": None,
                 "liger_fused_linear_cross_entropy": None, "torch_compile": False},
    "+packing+liger": {"torch_compile": False},
    "+packing+liger+compile": {},
}


def run_variant(ctx: RunContext, name: str, overrides: dict, steps: int, work: Path) -> dict:
    ctx.profile["train"]["stage1"] = {**overrides, "max_steps": steps, "save_strategy": "no", "save_steps": None,
                                      "logging_steps": max(1, steps // 10)}
    cfg = resolve_config(ctx, "stage1")
    cfg["output_dir"] = str(work / name)
    cfg["dataset_prepared_path"] = str(work / "prepared" / name)
    validate_config(cfg, ctx.profile["train"].get("target_hardware"), name)
    path = work / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = work / f"{name}.log"
    run_logged(train_command(path, 1), log, tool_env(offline=True), cwd=work, echo=False)
    text = log.read_text(errors="replace")
    tps = [float(x) for x in re.findall(r"'tokens/train_per_sec_per_gpu': '?([0-9.]+)", text)]
    steady = tps[len(tps) // 2:] or tps  # skip warm-up / compile steps
    tok_s = sum(steady) / len(steady) if steady else None
    return {"variant": name, "tokens_per_s": tok_s, "mfu": tok_s * FLOP_PER_TOKEN / PEAK if tok_s else None,
            "log": str(log)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--tiny", action="store_true", help="the tiny profile's model and CPU settings")
    ap.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)} (--tiny: plain only)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    profile = load_profile("tiny" if args.tiny else "paper")
    ctx = RunContext(profile, TaskSpec.load("emotion"), work / "run")
    shape = profile["tiny_model"] if args.tiny else LLAMA_1B
    build_tiny_model(ctx.base_model_dir, tokenizer_corpus(ctx.task.labels), **shape)
    profile["base_model"] = "tiny"  # a local, random-initialised model at ctx.base_model_dir
    rows = make_reasoning_set(args.rows, seed=0)
    atomic_write_jsonl(ctx.train_set("stage1"), (
        {"id": f"rs-{i:06d}", "messages": prompts.stage1_messages(r["question"], r["answer"], r["reasoning"])}
        for i, r in enumerate(rows)))
    results = []
    names = (args.variants or ("plain" if args.tiny else ",".join(VARIANTS))).split(",")
    for name in names:
        r = run_variant(ctx, name, VARIANTS[name], args.steps, work)
        if args.tiny:
            r["mfu"] = None  # the MFU formula is for Llama-3.2-1B on an H100, not a tiny model on a CPU
        results.append(r)
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(f"{r['variant']:<26}{r['tokens_per_s'] or 0:>12.0f} tok/s   MFU {mfu}", flush=True)
    device = "cpu" if args.tiny else "gpu"
    out = {"command": "python bench/train_throughput.py " + " ".join(sys.argv[1:]), "machine": platform.platform(),
           "shape": shape, "steps": args.steps, "results": results,
           "note": "MFU against 989 TFLOP/s (H100 bf16 dense) with 6 x 1.236e9 FLOP/token; not computed for --tiny"}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / f"train_throughput_{device}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
