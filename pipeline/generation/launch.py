"""Choose a backend and run a generation job: in-process (transformers) or in the
vLLM environment's interpreter, one worker per data-parallel replica.

`--backend auto` picks vLLM whenever its environment is present (VLLM_PYTHON, else
ROOT/.venv-vllm/bin/python with vllm importable), else transformers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from pipeline.config import ROOT
from pipeline.io import DataError, atomic_write_json, read_json
from pipeline.procs import StageFailed, redact, tool_env


def vllm_python() -> Path | None:
    """The interpreter of the vLLM environment, if one is set up."""
    candidate = Path(os.environ.get("VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
    if not candidate.exists():
        return None
    probe = subprocess.run([str(candidate), "-c", "import importlib.util as u; print(u.find_spec('vllm') is not None)"],
                           capture_output=True, text=True)
    return candidate if probe.stdout.strip() == "True" else None


def resolve_backend(name: str) -> str:
    if name not in ("auto", "vllm", "transformers"):
        raise DataError(f"--backend {name!r}: choose auto, vllm or transformers")
    if name == "auto":
        return "vllm" if vllm_python() else "transformers"
    if name == "vllm" and not vllm_python():
        raise DataError("--backend vllm: no vLLM environment found. Run `make setup` (builds .venv-vllm) "
                        "or set VLLM_PYTHON to an interpreter that has vllm installed.")
    return name


def _sub_shard(shard: str | None, j: int, m: int) -> str | None:
    """Replica j of m inside machine shard i/N: rows[i::N][j::m] == rows[i + N*j :: N*m]."""
    if m == 1:
        return shard
    i, n = (int(x) for x in (shard or "0/1").split("/"))
    return f"{i + n * j}/{n * m}"


def run_generation(job: dict, backend: str, work_dir: Path, log_path: Path, offline: bool,
                   worker_env: dict | None = None, echo: bool = True) -> dict:
    """Run `job` to completion (resuming from its shards); returns summed stats."""
    job = {**job, "backend": backend}
    if backend == "transformers":
        from pipeline.generation.runner import run_job
        from pipeline.generation.worker import make_engine

        return run_job(job, make_engine(job))
    replicas = int(job["engine"].get("data_parallel_size", 1))
    tp = int(job["engine"].get("tensor_parallel_size", 1))
    env = tool_env(offline, extra={k: str(v) for k, v in (worker_env or {}).items()})
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    procs = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        for j in range(replicas):
            sub = {**job, "shard": _sub_shard(job.get("shard"), j, replicas),
                   "stats_path": str(work_dir / f"stats-{j}.json")}
            job_path = atomic_write_json(work_dir / f"job-{j}.json", sub)
            replica_env = dict(env)
            if replicas > 1:
                replica_env["CUDA_VISIBLE_DEVICES"] = ",".join(str(j * tp + g) for g in range(tp))
            cmd = [str(vllm_python()), "-m", "pipeline.generation.worker", str(job_path)]
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=replica_env,
                                          cwd=ROOT, text=True, errors="replace"))
        def pump(proc):
            for line in proc.stdout:
                line = redact(line)
                log.write(line)
                if echo:
                    sys.stdout.write(line)

        threads = [threading.Thread(target=pump, args=(p,), daemon=True) for p in procs]
        try:
            for t in threads:
                t.start()
            codes = [p.wait() for p in procs]
            for t in threads:
                t.join()
        except BaseException:
            for p in procs:
                p.kill()
            raise
    if any(codes):
        raise StageFailed(f"vLLM worker exited with status {max(codes)}; see {log_path}")
    stats = [read_json(work_dir / f"stats-{j}.json") for j in range(replicas)]
    total = {k: sum(s[k] for s in stats) for k in ("requests", "skipped_done", "generated", "output_tokens", "prompt_tokens")}
    total["seconds"] = max(s["seconds"] for s in stats)
    total["output_tokens_per_s"] = total["output_tokens"] / total["seconds"] if total["seconds"] else None
    return total
