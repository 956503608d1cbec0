"""Prompt token ids as the project's vLLM engine reports them (run with the vLLM python).

    .venv-vllm/bin/python tests/helpers/vllm_prompt_ids.py JOB.json OUT.json

JOB.json: {"model": DIR, "chat_template": TEMPLATE, "engine": {...}, "requests": [{"id", "messages"}]}
OUT.json: {"vllm_version": ..., "prompt_token_ids": {id: [int, ...]}}

One `pipeline.generation.vllm_engine.VllmEngine` (the class the worker uses, with the
job's chat template) answers every request with one greedy token; what we keep is
`RequestOutput.prompt_token_ids`, the ids the engine actually fed the model. The
engine is created under `__main__` because vLLM spawns processes.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(job_path: str, out_path: str) -> None:
    from pipeline.generation.vllm_engine import VllmEngine

    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    engine = VllmEngine(job["model"], job["chat_template"], job["engine"], seed=0)
    results = engine.generate([{"id": r["id"], "messages": r["messages"]} for r in job["requests"]],
                              {"temperature": 0.0, "top_p": 1.0, "max_tokens": 1})
    out = {"vllm_version": engine.version,
           "prompt_token_ids": {r["id"]: r["prompt_token_ids"] for r in results}}
    tmp = f"{out_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
