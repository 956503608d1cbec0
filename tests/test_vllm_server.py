"""The README's serving recipe, for real: vLLM's OpenAI-compatible server on the tiny
run's stage-2 model with the project's chat template, queried by
examples/serve_client.py, must answer exactly what `orchestrate.py predict` wrote.

Why exact: the server renders the same chat template over the same messages with the
same tokenizer (so the same prompt token ids), and decodes greedily with the same
engine settings (dtype, max_model_len, max_tokens) as predict's offline `LLM.chat`,
so the same tokens come out. Any difference is a serving bug (wrong template, a
default system prompt, a second BOS, a different dtype or token budget), not noise.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from examples.serve_client import build_request, classify
from pipeline.config import ROOT, TaskSpec, load_profile
from pipeline.generation.launch import vllm_python
from pipeline.generation.shards import ShardStore
from pipeline.io import read_jsonl
from pipeline.procs import tool_env
from postprocess.labels import label_regex

needs_vllm = pytest.mark.skipif(vllm_python() is None, reason="no vLLM environment (.venv-vllm or VLLM_PYTHON)")

HEALTH_TIMEOUT_S = 240
N_TEXTS = 6


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return Path(tiny_run).resolve()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(model_dir: Path, port: int, gen: dict) -> list[str]:
    """The CPU form of the README command, with the tiny profile's predict engine settings."""
    cmd = [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--host", "127.0.0.1", "--port", str(port), "--chat-template", str(ROOT / "prompts" / "chat_template.jinja"),
           "--dtype", gen["dtype"], "--max-model-len", str(gen["max_model_len"]), "--seed", str(gen["seed"])]
    if gen.get("enforce_eager"):
        cmd.append("--enforce-eager")
    return cmd


def _healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's own process group (API server, engine core, worker), then SIGKILL."""
    if proc.poll() is not None:  # the API server is gone: reap what it may have left in its group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    """(base_url, model name, log path) of a running server; always stopped afterwards."""
    model_dir = run_dir / "models" / "stage2"
    gen = load_profile("tiny")["generation"]
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    # the CPU backend's settings only (KV cache size): the worker's other switches are for the offline engine
    env = tool_env(offline=True, extra={k: str(v) for k, v in (gen.get("worker_env") or {}).items()
                                        if k.startswith("VLLM_CPU_")})
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(server_command(model_dir, port, gen), cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not _healthy(base_url):
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after {HEALTH_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}")
            time.sleep(2)
        yield base_url, str(model_dir), log_path
    finally:
        _stop(proc)


def _sample(rows: list[dict], n: int) -> list[dict]:
    step = max(1, len(rows) // n)
    return rows[::step][:n]


def _texts_to_ask(test: list[dict], predicted: dict, n: int) -> list[dict]:
    """One test row per distinct output predict wrote (the tiny stage-2 model often writes
    the same reasoning for most texts), then evenly spaced rows, n at least."""
    first_of: dict[str, dict] = {}
    for row in test:
        first_of.setdefault(predicted[row["id"]]["output"], row)
    chosen = list(first_of.values())[:n]
    ids = {r["id"] for r in chosen}
    return chosen + [r for r in _sample(test, n) if r["id"] not in ids][:max(0, n - len(chosen))]


def test_snippet_prompt_is_the_one_predict_asks(run_dir):
    """Messages equality: the client's request body carries predict's exact messages."""
    task = TaskSpec.load("emotion")
    asked = {r["id"]: r["messages"] for r in read_jsonl(run_dir / "predictions" / ".work-reasoning" / "requests.jsonl")}
    predict_cfg = load_profile("tiny")["predict"]
    for row in _sample(read_jsonl(run_dir / "data" / "task" / "test.jsonl"), 50):
        body = build_request(row["text"], "m", task, profile="tiny", constrained=True)
        assert body["messages"] == asked[row["id"]]
        assert body["temperature"] == 0 and body["max_tokens"] == predict_cfg["max_tokens"]["reasoning"]
        assert body["structured_outputs"]["regex"] == label_regex(task.labels, task.answer_prefix, with_reasoning=True)


@pytest.mark.vllm
@needs_vllm
def test_server_answers_what_predict_wrote(run_dir, server):
    base_url, model, log_path = server
    labels = TaskSpec.load("emotion").labels
    predicted = {r["id"]: r for r in read_jsonl(run_dir / "predictions" / "reasoning.jsonl")}
    shards = {r["id"]: r for r in ShardStore(run_dir / "predictions" / ".work-reasoning" / "shards").rows()}
    constrained = bool(load_profile("tiny")["predict"].get("constrained_label"))  # as predict decoded
    mismatches = []
    for row in _texts_to_ask(read_jsonl(run_dir / "data" / "task" / "test.jsonl"), predicted, N_TEXTS):
        r = classify(base_url, row["text"], model, profile="tiny", constrained=constrained, timeout=120,
                     return_token_ids=True)
        # the response parses: a known label, or None reported as invalid with the raw text
        assert r["label"] is None or r["label"] in labels, r
        if r["label"] is None:
            print(f"{row['id']}: INVALID (finish_reason={r['finish_reason']}): {r['output']!r}")
        want = predicted[row["id"]]
        # the server rendered the same prompt tokens as predict's offline engine
        served_prompt = r["response"].get("prompt_token_ids")
        if served_prompt is not None:
            assert served_prompt == shards[row["id"]]["prompt_token_ids"], row["id"]
        assert r["response"]["usage"]["prompt_tokens"] == want["prompt_tokens"], row["id"]
        if r["output"] != want["output"] or r["label"] != want["pred"]:
            mismatches.append({"id": row["id"], "served": r["output"], "predict": want["output"],
                               "predict_backend": want["backend"]})
    assert not mismatches, f"server and predict disagree (server log: {log_path}):\n" + \
        json.dumps(mismatches, indent=1, ensure_ascii=False)


@pytest.mark.vllm
@needs_vllm
def test_server_honours_constrained_decoding(run_dir, server):
    """Structured outputs through the server: a choice of answer lines, and predict's
    `constrained_label` regex (reasoning, blank line, label line); both always parse."""
    base_url, model, _ = server
    task = TaskSpec.load("emotion")
    choices = [f"{task.answer_prefix} {label}" for label in task.labels]
    text = read_jsonl(run_dir / "data" / "task" / "test.jsonl")[0]["text"]
    r = classify(base_url, text, model, profile="tiny", max_tokens=8, structured_outputs={"choice": choices})
    assert r["output"] in choices and r["label"] in task.labels, r["output"]
    r = classify(base_url, text, model, profile="tiny", constrained=True)
    assert r["finish_reason"] == "stop" and r["label"] in task.labels, r["output"]
