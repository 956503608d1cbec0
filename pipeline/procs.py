"""Run the external tools (axolotl, the vLLM worker) as logged subprocesses.

The environment is built here once: telemetry off, the hub offline where the profile
says so, W&B off unless asked, the venv's bin on PATH (axolotl execs `accelerate`).
Secrets from the environment are masked in every log line we write.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")


class StageFailed(Exception):
    """An external tool exited non-zero; the message points at its log."""


def secrets() -> list[str]:
    return [v for k in SECRET_VARS if len(v := os.environ.get(k, "")) >= 4]


def redact(text: str) -> str:
    for value in sorted(secrets(), key=len, reverse=True):  # a secret may be a prefix of another
        text = text.replace(value, "***")
    return text


def tool_env(offline: bool, wandb: bool = False, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["AXOLOTL_DO_NOT_TRACK"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
        env["HF_DATASETS_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    if not wandb:
        env["WANDB_MODE"] = "disabled"
    env.update(extra or {})
    return env


def run_logged(cmd: list[str], log_path: Path, env: dict, cwd: Path | None = None, echo: bool = True) -> None:
    """Run `cmd`, appending its merged output (secrets masked) to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(redact(f"$ {' '.join(map(str, cmd))}\n"))
        log.flush()
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, text=True, errors="replace", bufsize=1)
        try:
            for line in proc.stdout:
                line = redact(line)
                log.write(line)
                if echo:
                    sys.stdout.write(line)
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if rc != 0:
        raise StageFailed(f"{cmd[0]} exited with status {rc}; see {log_path}")
