"""Resolve, validate and run the three Axolotl trainings (stage 1, stage 2, baseline).

`axolotl_configs/<which>.yml` is the paper's config; the profile's `train.axolotl`
and `train.<which>` override it (None unsets a key), and the run directory supplies
paths. The resolved config is written to `RUN/configs/<which>.yml`, validated with
Axolotl's own schema (plus a check that every key is one Axolotl knows), and run
with the real `axolotl train` (its entry point, through axolotl_cli.py) as a subprocess.
"""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

import yaml

from pipeline.config import AXOLOTL_CONFIGS_DIR, RunContext, deep_merge
from pipeline.io import DataError, atomic_write_text, ids_digest, move_aside, read_jsonl
from pipeline.procs import run_logged, tool_env
from pipeline.prompts import CHAT_TEMPLATE, chat_template, template_file


def _drop_none(cfg: dict) -> dict:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in cfg.items() if v is not None}


def resolve_config(ctx: RunContext, which: str) -> dict:
    """The shipped config + profile overrides + this run's paths."""
    with open(AXOLOTL_CONFIGS_DIR / f"{which}.yml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    train = ctx.profile["train"]
    cfg = _drop_none(deep_merge(deep_merge(cfg, train.get("axolotl") or {}), train.get(which) or {}))
    cfg["base_model"] = ctx.base_model
    cfg["chat_template_jinja"] = str(template_file(ctx.chat_template))
    cfg["datasets"][0]["path"] = str(ctx.train_set(which))
    cfg["dataset_prepared_path"] = str(ctx.run_dir / "prepared" / which)
    cfg["output_dir"] = str(ctx.model_dir(which))
    if ctx.seed is not None and which != "stage1":
        cfg["seed"] = ctx.seed  # a replicate: the training seed of stage 2 and the baseline
    if train.get("wandb_project"):
        cfg["wandb_project"] = train["wandb_project"]
        cfg["wandb_name"] = f"{ctx.run_dir.name}-{which}"
    if train.get("distributed"):
        dist = AXOLOTL_CONFIGS_DIR / train["distributed"]
        if dist.suffix == ".json":
            cfg["deepspeed"] = str(dist)
        else:
            with open(dist, encoding="utf-8") as f:
                cfg.update(yaml.safe_load(f))
    return cfg


def token_lengths(model: str, conversations: list[list[dict]], chat: str = CHAT_TEMPLATE) -> list[int]:
    """Tokens of each whole conversation as Axolotl trains on it: the one chat template, no
    generation prompt; used to leave rows over `sequence_len` out before Axolotl drops them."""
    from transformers import AutoTokenizer

    tok, template = AutoTokenizer.from_pretrained(model), chat_template(chat)
    return [len(tok.apply_chat_template(c, chat_template=template, tokenize=True, return_dict=True)["input_ids"])
            for c in conversations]


def _known_keys(cfg: dict) -> tuple[set[str], set[str]]:
    """Top-level and dataset keys Axolotl's schema declares (plugins add their own)."""
    from axolotl.utils.config import merge_input_args, prepare_plugins
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import SFTDataset

    model = AxolotlInputConfig
    if cfg.get("plugins"):
        prepare_plugins(DictDefault(dict(cfg)))
        _, model = merge_input_args()
    names = lambda m: {n for name, f in m.model_fields.items() for n in (name, f.alias) if n}  # noqa: E731
    return names(model), names(SFTDataset)


def validate_config(cfg: dict, capabilities: dict | None, source: str) -> None:
    """Axolotl's own validation; unknown keys (which pydantic would ignore) are errors too."""
    from axolotl.cli.config import gpu_capabilities
    from axolotl.utils.config import validate_config as axolotl_validate
    from axolotl.utils.dict import DictDefault

    top, ds = _known_keys(cfg)
    unknown = sorted(set(cfg) - top)
    for i, d in enumerate(cfg.get("datasets") or []):
        unknown += [f"datasets[{i}].{k}" for k in sorted(set(d) - ds)]
    if unknown:
        raise DataError(f"{source}: key(s) Axolotl does not know: {', '.join(unknown)}")
    if capabilities is None:
        caps, env_caps = gpu_capabilities()
    else:
        caps = {"fp8": False, "n_gpu": 1, **capabilities}
        env_caps = {"torch_version": "2.13.0"}
    try:
        axolotl_validate(DictDefault(dict(cfg)), capabilities=caps, env_capabilities=env_caps)
    except Exception as e:  # pydantic.ValidationError or Axolotl's ValueError
        hint = ""
        if "MPT models" in str(e) and "mpt" in str(cfg.get("base_model", "")).lower():
            hint = (f"\n  (Axolotl takes every model whose path contains 'mpt' for an MPT model: "
                    f"base_model is {cfg['base_model']}; move it, or REASONING_MODEL_CACHE, to a path without 'mpt')")
        raise DataError(f"{source}: Axolotl rejects the config: {e}{hint}") from None


def target_hardware(ctx: RunContext) -> dict | None:
    """The capabilities a config is validated against: the profile's `train.target_hardware`
    with the GPUs the run will use, or None to probe this machine."""
    hardware = ctx.profile["train"].get("target_hardware")
    return None if hardware is None else {**hardware, "n_gpu": ctx.gpus or ctx.profile["train"]["gpus"]}


def write_config(ctx: RunContext, which: str) -> Path:
    cfg = resolve_config(ctx, which)
    validate_config(cfg, target_hardware(ctx), f"resolved config for {which}")
    path = ctx.axolotl_config(which)
    header = f"# Resolved by orchestrate.py from axolotl_configs/{which}.yml + profile {ctx.profile['name']!r}.\n"
    atomic_write_text(path, header + yaml.safe_dump(cfg, sort_keys=False))
    return path


def axolotl_command(*args: str) -> list[str]:
    """`axolotl ARGS...` (the `axolotl` command's entry point, started through axolotl_cli.py)."""
    return [sys.executable, str(Path(__file__).with_name("axolotl_cli.py")), *map(str, args)]


def train_command(config_path: Path, gpus: int) -> list[str]:
    """`axolotl train`: Axolotl's accelerate launcher for gpus > 1; one process needs no launcher.

    `--launcher python` trains in the `axolotl` process itself instead of re-executing
    it under `accelerate launch`, which imports torch, transformers and Axolotl a second
    time (~20 s per training on the tiny run, bench/README.md); the weights are identical.
    """
    cmd = axolotl_command("train", config_path)
    if gpus > 1:
        return cmd + ["--launcher", "accelerate", "--", "--num_processes", str(gpus)]
    return cmd + ["--launcher", "python"]


_LOSS = re.compile(r"'loss': '?([0-9.eE+-]+)")
_TRAIN_LOSS = re.compile(r"'train_loss': '?([0-9.eE+-]+)")


def parse_losses(log_text: str) -> dict:
    """First and last logged step loss and the final train_loss from an Axolotl/HF Trainer log."""
    losses = [float(x) for x in _LOSS.findall(log_text)]
    final = _TRAIN_LOSS.findall(log_text)
    return {"logged_steps": len(losses), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "train_loss": float(final[-1]) if final else None}


def prepared_counts(ctx: RunContext, which: str) -> dict:
    """Rows Axolotl kept after tokenising (it silently drops rows over sequence_len), and the
    tokens one pass over them holds: all of them and those with a loss (the label tokens)."""
    from datasets import load_from_disk

    prepared = ctx.run_dir / "prepared" / which
    dirs = sorted(p.parent for p in prepared.rglob("dataset_info.json"))
    if not dirs:
        return {"rows_trained": None, "tokens_per_epoch": None, "label_tokens_per_epoch": None}
    import pyarrow.compute as pc

    rows = tokens = label_tokens = 0
    for d in dirs:  # counted in Arrow: stage 1 holds ~10^8 tokens, too many for a Python loop
        labels = load_from_disk(str(d)).data.table.column("labels")
        rows += len(labels)
        tokens += pc.sum(pc.list_value_length(labels)).as_py() or 0
        label_tokens += pc.sum(pc.not_equal(pc.list_flatten(labels), -100)).as_py() or 0
    return {"rows_trained": rows, "tokens_per_epoch": tokens, "label_tokens_per_epoch": label_tokens}


def final_state(ctx: RunContext, which: str) -> dict:
    """Optimizer steps and epochs the run ended at, from the Trainer's last checkpoint state."""
    found = sorted((p for p in ctx.model_dir(which).glob("checkpoint-*/trainer_state.json")
                    if p.parent.name.rsplit("-", 1)[1].isdigit()), key=lambda p: _step(p.parent))
    if not found:
        return {"optimizer_steps": None, "epochs": None}
    state = json.loads(found[-1].read_text(encoding="utf-8"))
    return {"optimizer_steps": state.get("global_step"), "epochs": state.get("epoch")}


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def resume_point(ctx: RunContext, which: str) -> str | None:
    """The checkpoint Axolotl will resume from, after setting aside any it could not resume from.

    The Trainer writes trainer_state.json last, so a checkpoint killed mid-save has none
    (or a truncated one); Axolotl's auto-resume would take it, being the newest, and fail.
    Such checkpoints go to RUN/.stale/, never deleted."""
    found = sorted((p for p in ctx.model_dir(which).glob("checkpoint-*") if p.name.rsplit("-", 1)[1].isdigit()),
                   key=_step)
    complete = []
    for ckpt in found:
        try:
            json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
            complete.append(ckpt)
        except (OSError, ValueError):
            dest = move_aside(ckpt, ctx.run_dir, f"{which}-{ckpt.name}-incomplete")
            print(f"  {ckpt} was not completely saved; moved to {dest}")
    return complete[-1].name if complete else None


# The in-process parts of trainings that run side by side (pipeline/side_by_side.py) take turns:
# they import Axolotl and datasets, and may build the shared base-model folder.
_IN_PROCESS = threading.Lock()


def run_training(ctx: RunContext, which: str, echo: bool = False) -> dict:
    """Train one model (resuming from its last complete checkpoint); returns what the manifest
    records (config, log, losses, drops, and the seconds spent here rather than in Axolotl)."""
    from pipeline.base_model import ensure_base_model

    train = ctx.profile["train"]
    with _IN_PROCESS:
        t0 = time.perf_counter()
        ensure_base_model(ctx.profile)
        config_path = write_config(ctx, which)
        resumed_from = resume_point(ctx, which)
        if resumed_from:
            print(f"  resuming {which} from {resumed_from}")
        log_path = ctx.log(which)
        gpus = ctx.gpus or train.get("gpus", 1)
        env = tool_env(offline=ctx.profile["offline"], wandb=bool(train.get("wandb_project")))
        ours = time.perf_counter() - t0
    run_logged(train_command(config_path, gpus), log_path, env, cwd=ctx.run_dir, echo=echo)
    with _IN_PROCESS:
        t1 = time.perf_counter()
        rows = read_jsonl(ctx.train_set(which))
        cfg = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        counts = prepared_counts(ctx, which)
        kept = counts["rows_trained"]
        losses = parse_losses(log_path.read_text(encoding="utf-8", errors="replace"))
        ours += time.perf_counter() - t1
    return {"config": str(config_path), "log": str(log_path), "model_dir": str(ctx.model_dir(which)),
            "gpus": gpus, "cpu_threads": env.get("OMP_NUM_THREADS"), "resumed_from": resumed_from, "rows_in": len(rows),
            "ids_sha256": ids_digest(r["id"] for r in rows),
            "rows_dropped": None if kept is None else len(rows) - kept, **counts, **final_state(ctx, which),
            "examples_per_step": cfg["micro_batch_size"] * cfg.get("gradient_accumulation_steps", 1) * gpus,
            "sample_packing": bool(cfg.get("sample_packing")), "seed": cfg.get("seed"), **losses,
            "orchestrator_s": round(ours, 3)}
