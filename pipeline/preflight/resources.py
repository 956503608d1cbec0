"""Preflight checks of what the run needs from the machine: the base model (and a hub token),
GPUs, disk for checkpoints, and Axolotl's own schema for the resolved configs."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

from pipeline.config import RunContext
from pipeline.io import DataError

TRAINING = {"train-stage1": "stage1", "train-stage2": "stage2", "train-baseline": "baseline"}
GATED_PREFIXES = ("meta-llama/",)
# Parameter counts of hub models we know; others are read from a local checkpoint or
# estimated from the name ("...-3B-...").
KNOWN_PARAMS = {"meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400, "meta-llama/Llama-3.2-1B": 1_235_814_400}


# ================================================================== base model
def hub_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def check_base_model(ctx: RunContext) -> None:
    base = str(ctx.profile.get("base_model"))
    name = ctx.profile.get("name")
    if ctx.profile.get("base_model_gguf"):  # built from an installed package's GGUF: the file must be there
        from pipeline.base_model import package_file

        spec = ctx.profile["base_model_gguf"]
        package_file(spec["package"], spec["file"])
        return
    if base == "tiny" or Path(base).expanduser().is_dir():
        return
    if base.startswith(("/", "./", "../", "~")):
        raise DataError(f"profile {name!r}: base_model {base!r} is not a folder on this machine")
    if ctx.profile.get("offline"):
        from huggingface_hub import constants, try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(base, "config.json"), str):
            raise DataError(f"profile {name!r}: offline is true but base_model {base!r} is not in the Hugging Face "
                            f"cache ({constants.HF_HUB_CACHE}); download it once online, point base_model at a "
                            f"local folder, or set offline: false")
        return
    if base.startswith(GATED_PREFIXES) and not hub_token():
        raise DataError(f"profile {name!r}: base_model {base!r} is gated on the Hugging Face hub and no token was "
                        f"found (HF_TOKEN, HUGGING_FACE_HUB_TOKEN or `hf auth login`). Accept its licence at "
                        f"https://huggingface.co/{base}, then export HF_TOKEN=... or log in")


# ================================================================== devices
def profile_device(profile: dict) -> str:
    """`device` (cuda | cpu, checked by the profile schema); unset: cpu when vLLM's CPU KV cache is sized."""
    if profile["device"] is not None:
        return profile["device"]
    return "cpu" if "VLLM_CPU_KVCACHE_SPACE" in profile["generation"]["worker_env"] else "cuda"


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use (nvidia-smi, else /dev/nvidiaN), within CUDA_VISIBLE_DEVICES."""
    physical = 0
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
            physical = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU ")) if out.returncode == 0 else 0
        except (OSError, subprocess.TimeoutExpired):
            physical = 0
    if not physical:
        physical = sum(1 for p in Path("/dev").glob("nvidia[0-9]*"))
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        ids = [x for x in cvd.split(",") if x.strip() and x.strip() != "-1"]
        return min(len(ids), physical)
    return physical


def _enough_gpus(gpus: int, want: int, none_visible: str, too_few: str) -> None:
    if gpus == 0:
        raise DataError(none_visible)
    if want > gpus:
        raise DataError(too_few)


def check_devices(ctx: RunContext, pending: list[str]) -> bool:
    """vLLM generation and training on a `cuda` profile need enough visible GPUs."""
    from pipeline.generation.launch import resolve_backend

    needs_gen = bool({"generate", "predict"} & set(pending))
    training = [s for s in pending if s in TRAINING]
    if not needs_gen and not training:
        return False
    backend = resolve_backend(ctx.generation.get("backend", "auto")) if needs_gen else None
    want = ctx.gpus or int((ctx.profile.get("train") or {}).get("gpus", 1))
    if training and want > 1:  # Axolotl's multi-GPU launcher, whatever the profile's device
        _enough_gpus(visible_gpus(), want, f"training asks for {want} GPUs (--gpus / train.gpus) but no NVIDIA GPU "
                                           f"is visible; drop --gpus or run on a GPU machine",
                     f"training asks for {want} GPUs (--gpus / train.gpus) but {visible_gpus()} are visible")
    if profile_device(ctx.profile) == "cpu":
        return True
    name = ctx.profile.get("name")
    gpus = visible_gpus()
    fix = (f"run on a GPU machine, or use a CPU profile (e.g. --profile tiny, or set device: cpu in profile {name!r})")
    if backend == "vllm":
        gen = ctx.generation
        want = int(gen.get("tensor_parallel_size", 1)) * int(gen.get("data_parallel_size", 1))
        _enough_gpus(gpus, want, f"profile {name!r} (device: cuda): generation backend vllm needs an NVIDIA GPU and "
                                 f"none is visible; {fix}, or pass --backend transformers",
                     f"profile {name!r}: generation.tensor_parallel_size x data_parallel_size = {want} GPUs, but "
                     f"{gpus} visible; lower them in the profile")
    if training:
        want = ctx.gpus or int((ctx.profile.get("train") or {}).get("gpus", 1))
        _enough_gpus(gpus, want, f"profile {name!r} (device: cuda): training ({', '.join(training)}) needs an NVIDIA "
                                 f"GPU and none is visible; {fix}",
                     f"training asks for {want} GPUs (--gpus / train.gpus) but {gpus} are visible; pass --gpus {gpus}")
    return True


# ================================================================== disk
def _safetensors_params(folder: Path) -> int | None:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def param_count(ctx: RunContext) -> tuple[int | None, str]:
    """(parameters of the base model, how that number was found)."""
    base = str(ctx.profile.get("base_model"))
    folder = ctx.base_model_dir if base == "tiny" else Path(base).expanduser()
    if folder.is_dir() and (n := _safetensors_params(folder)):
        return n, f"counted in {folder}"
    if base == "tiny":
        t = {"hidden_size": 128, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 512,
             "vocab_size": 2048, **(ctx.profile.get("tiny_model") or {})}
        h, hd = t["hidden_size"], t["hidden_size"] // t["num_heads"]
        vocab = -(-t["vocab_size"] // 64) * 64
        layer = h * h * 2 + 2 * h * t["num_kv_heads"] * hd + 3 * h * t["intermediate_size"] + 2 * h
        return vocab * h + t["num_layers"] * layer + h, "from the profile's tiny_model shape"
    if base in KNOWN_PARAMS:
        return KNOWN_PARAMS[base], f"the known size of {base}"
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", base)
    if m:
        return int(float(m.group(1)) * 1e9), f"estimated from the name {base!r}"
    if (ctx.profile.get("plan") or {}).get("parameters"):
        return int(float(ctx.profile["plan"]["parameters"])), "the profile's plan.parameters"
    return None, "unknown"


def checkpoint_bytes(ctx: RunContext, which: str, params: int) -> int:
    """Disk one training run ends with: save_total_limit checkpoints plus the final model.

    Weights: 2 bytes/param (bf16) or 4 (fp32). Optimizer state: AdamW's two moments in the
    parameter dtype (HF Trainer on a bf16-loaded model), or 12 bytes/param (fp32 master +
    both moments) under DeepSpeed; none with save_only_model.
    """
    from pipeline.train import resolve_config

    cfg = resolve_config(ctx, which)
    weight = 2 if cfg.get("bf16") in (True, "auto") or cfg.get("fp16") in (True, "auto") else 4
    optim = 0 if cfg.get("save_only_model") else (12 if cfg.get("deepspeed") else 2 * weight)
    if cfg.get("save_strategy") == "no":
        ckpts = 0
    elif cfg.get("save_total_limit"):
        ckpts = int(cfg["save_total_limit"])
    elif cfg.get("max_steps") and cfg.get("save_steps"):
        ckpts = math.ceil(cfg["max_steps"] / cfg["save_steps"])
    else:
        ckpts = 1
    return params * (weight * (ckpts + 1) + optim * ckpts)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(ctx: RunContext, training: list[str]) -> None:
    params, how = param_count(ctx)
    if not params:
        return
    need = sum(checkpoint_bytes(ctx, which, params) for which in training)
    free = shutil.disk_usage(_existing(ctx.run_dir)).free
    if need > free:
        gb = lambda b: f"{b / 1e9:.1f} GB"  # noqa: E731
        raise DataError(f"{ctx.run_dir}: {gb(free)} free, but training {', '.join(training)} will write about "
                        f"{gb(need)} of checkpoints and models ({params / 1e9:.3f}B parameters, {how}; "
                        f"save_total_limit checkpoints each). Free some space, use another --run-dir, or lower "
                        f"train.axolotl.save_total_limit in the profile")


# ================================================================== axolotl configs
def check_axolotl_configs(ctx: RunContext, training: list[str]) -> None:
    """Axolotl's own schema on each resolved config, as `train-*` validates it before training."""
    from pipeline.config import AXOLOTL_CONFIGS_DIR
    from pipeline.train import resolve_config, target_hardware, validate_config

    for which in training:
        source = (f"{AXOLOTL_CONFIGS_DIR / f'{which}.yml'} with profile {ctx.profile['name']!r} overrides "
                  f"(train.axolotl, train.{which})")
        validate_config(resolve_config(ctx, which), target_hardware(ctx), source)
