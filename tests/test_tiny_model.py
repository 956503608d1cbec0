"""The tiny Llama must be reproducible and must behave like Llama-3.2-1B-Instruct where it matters."""
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.synthetic import DAIR_LABELS, tokenizer_corpus
from pipeline.tiny_model import (BOS, END_OF_TEXT, EOT, PAD, SPECIAL_TOKENS, build_tiny_model,
                                 train_tokenizer)

ROOT = Path(__file__).resolve().parent.parent
FILES = ("tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json",
         "model.safetensors")


def _digests(d: Path) -> dict[str, str]:
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in FILES}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer_corpus(DAIR_LABELS))


@pytest.fixture(scope="module")
def tok(model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_dir)


def test_tokenizer_is_identical_when_trained_in_a_fresh_process():
    # A new interpreter gets new hash seeds, Python's and the Rust trainer's.
    code = ("import sys; from pipeline.synthetic import DAIR_LABELS, tokenizer_corpus; "
            "from pipeline.tiny_model import train_tokenizer; "
            "sys.stdout.write(train_tokenizer(tokenizer_corpus(DAIR_LABELS), 2048).to_str())")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "7"})
    assert fresh.stdout == train_tokenizer(tokenizer_corpus(DAIR_LABELS), 2048).to_str()


def test_same_arguments_give_identical_files(model_dir, tmp_path):
    assert _digests(build_tiny_model(tmp_path / "again", tokenizer_corpus(DAIR_LABELS))) == _digests(model_dir)


def test_seed_changes_weights_not_tokenizer(model_dir, tmp_path):
    other = build_tiny_model(tmp_path / "seed1", tokenizer_corpus(DAIR_LABELS), seed=1)
    a, b = _digests(model_dir), _digests(other)
    assert a["tokenizer.json"] == b["tokenizer.json"]
    assert a["model.safetensors"] != b["model.safetensors"]


def test_complete_dir_is_reused_and_incomplete_one_rebuilt(model_dir, tmp_path):
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(model_dir, ["unused"]) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    build_tiny_model(broken, ["some text to learn from"] * 10, vocab_size=300)
    assert json.loads((broken / "config.json").read_text())["model_type"] == "llama"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_config_matches_llama_3_2_shape(model_dir, tok):
    cfg = json.loads((model_dir / "config.json").read_text())
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert cfg["head_dim"] == 64 and cfg["hidden_size"] // cfg["num_attention_heads"] == 64
    assert cfg["num_key_value_heads"] == 1 and cfg["tie_word_embeddings"] is True
    assert cfg["rope_parameters"]["rope_theta"] == 500000.0 and cfg["rms_norm_eps"] == 1e-5
    assert cfg["dtype"] == "float32"
    assert cfg["vocab_size"] % 64 == 0 and cfg["vocab_size"] >= len(tok)
    ids = {t: tok.convert_tokens_to_ids(t) for t in (BOS, EOT, END_OF_TEXT, PAD)}
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOT, PAD)
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (ids[BOS], ids[EOT], ids[PAD])
    assert gen["eos_token_id"] == [ids[EOT], ids[END_OF_TEXT]]
    assert (gen["bos_token_id"], gen["pad_token_id"]) == (ids[BOS], ids[PAD])


def test_special_tokens_are_single_ids_never_split(tok):
    ids = [tok.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS) and tok.unk_token_id not in ids
    for special, sid in zip(SPECIAL_TOKENS, ids):
        assert tok(special, add_special_tokens=False).input_ids == [sid]
        assert sid in tok(f"joy{special}sadness", add_special_tokens=False).input_ids
    assert tok.convert_tokens_to_ids(BOS) not in tok("<|begin_of_text", add_special_tokens=False).input_ids


def test_bos_is_added_like_llama_3_so_a_rendered_chat_gets_two(tok):
    bos = tok.bos_token_id
    assert tok("i feel sad").input_ids[:2].count(bos) == 1
    assert bos not in tok("i feel sad", add_special_tokens=False).input_ids
    render = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert tok(render).input_ids[:2] == [bos, bos]
    assert tok(render, add_special_tokens=False).input_ids.count(bos) == 1


def test_default_chat_template_injects_dated_system_block(tok):
    msgs = [{"role": "user", "content": "  hello  "}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert re.fullmatch(
        r"<\|begin_of_text\|><\|start_header_id\|>system<\|end_header_id\|>\n\n"
        r"Cutting Knowledge Date: December 2023\nToday Date: \d\d \w{3} \d{4}\n\n<\|eot_id\|>"
        r"<\|start_header_id\|>user<\|end_header_id\|>\n\nhello<\|eot_id\|>"
        r"<\|start_header_id\|>assistant<\|end_header_id\|>\n\n", text), text
    with_system = tok.apply_chat_template([{"role": "system", "content": " Be brief. "}] + msgs,
                                          tokenize=False, date_string="01 Jan 2025")
    assert "Today Date: 01 Jan 2025\n\nBe brief.<|eot_id|><|start_header_id|>user" in with_system
    assert with_system.endswith("hello<|eot_id|>")


def test_task_prompts_tokenize_compactly(tok):
    ids = tok("Which emotion does this text express? Answer with one of: sadness, joy, love."
              "\nText: i feel so hopeless about my job today", add_special_tokens=False).input_ids
    assert len(ids) <= 30


def test_transformers_loads_and_generates(model_dir, tok):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.head_dim == 64 and model.dtype == torch.float32
    inputs = tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)
