"""A tiny random-weight Llama 3 with its own tokenizer, built offline and deterministically.

Tests and the CPU demo cannot download Llama-3.2-1B-Instruct, so they run on this
stand-in. It is tiny but shaped like the real thing wherever the pipeline could go wrong:

* the same special tokens, each a single id that is never split, with `<|eot_id|>` as
  eos and `<|finetune_right_pad_id|>` as pad, as in Llama-3.2-Instruct;
* a post-processor that prepends `<|begin_of_text|>` when add_special_tokens=True, so
  encoding a chat render that already starts with bos gives a double bos, as it does
  with the real tokenizer;
* a default chat template that, like the real one, always injects a system block with
  "Cutting Knowledge Date" and today's date: a prompt rendered by the default template
  differs from one rendered by the project's explicit template, as it would for real;
* head_dim 64, since vLLM's CPU attention refuses smaller heads.

Same corpus and arguments give byte-identical files.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

BOS = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
EOT = "<|eot_id|>"
PAD = "<|finetune_right_pad_id|>"
# In Llama 3's id order (128000, 128001, ...), reserved tokens in the same gaps.
SPECIAL_TOKENS = (BOS, END_OF_TEXT, "<|reserved_special_token_0|>",
                  "<|reserved_special_token_1|>", PAD, "<|reserved_special_token_2|>",
                  "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", EOT,
                  "<|python_tag|>", "<|reserved_special_token_3|>",
                  "<|reserved_special_token_4|>", "<|reserved_special_token_5|>")

# Llama 3's pre-tokenizer split (the tiktoken cl100k pattern).
_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Llama-3.2-Instruct's template, restricted to messages without tools.
CHAT_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Added to every corpus so the chat template's fixed wording tokenizes compactly; repeated
# because, like in a real training stream, it accompanies every example.
_TEMPLATE_CORPUS = 200 * [
    "system\n\nuser\n\nassistant\n\n",
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n",
    " ".join(f"{day:02d} {month} 20{year}" for day, month, year in
             zip(range(1, 32), "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split() * 3,
                 range(20, 40))),
]
_MARKER = ".tiny_model_complete"


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """A `tokenizers.Tokenizer`: byte-level BPE with Llama 3's split and post-processor,
    the specials appended after the learned vocab, `vocab_size` ids in all at most."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([*corpus, *_TEMPLATE_CORPUS], trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                                      special_tokens=[(BOS, bos_id)]),
    ])
    return tok


def _save_tokenizer(tok, out_dir: Path, max_length: int):
    from transformers import PreTrainedTokenizerFast

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOT, pad_token=PAD,
        model_max_length=max_length, chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_input_names=["input_ids", "attention_mask"])
    # The template goes into tokenizer_config.json, where the real checkpoint keeps it.
    hf_tok.save_pretrained(out_dir, save_jinja_files=False)
    return hf_tok


def _save_model(hf_tok, out_dir: Path, *, hidden_size: int, num_layers: int, num_heads: int,
                num_kv_heads: int, intermediate_size: int, max_position_embeddings: int,
                seed: int, embedding_rows: int | None = None) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    ids = {t: hf_tok.convert_tokens_to_ids(t) for t in (BOS, END_OF_TEXT, EOT, PAD)}
    config = LlamaConfig(
        vocab_size=max(embedding_rows or 0, -(-len(hf_tok) // 64) * 64), hidden_size=hidden_size,
        intermediate_size=intermediate_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads, max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
        bos_token_id=ids[BOS], eos_token_id=ids[EOT], pad_token_id=ids[PAD], dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=ids[BOS], eos_token_id=[ids[EOT], ids[END_OF_TEXT]],
                     pad_token_id=ids[PAD]).save_pretrained(out_dir)


def build_tiny_model(out_dir: Path, corpus: Iterable[str], *, hidden_size: int = 128,
                     num_layers: int = 2, num_heads: int = 2, num_kv_heads: int = 1,
                     intermediate_size: int = 512, vocab_size: int = 2048,
                     max_position_embeddings: int = 2048, seed: int = 0,
                     embedding_rows: int | None = None) -> Path:
    """Build (or reuse) a tiny Llama 3 checkpoint in `out_dir` and return `out_dir`.

    `vocab_size` bounds the tokenizer (learned BPE plus the specials); the model's
    embedding is that size rounded up to a multiple of 64, or `embedding_rows` when
    larger (a benchmark of the real shape needs Llama 3's 128,256-row embedding and
    LM head, whatever the small corpus teaches the tokenizer). The checkpoint is built in a
    temporary folder beside `out_dir` and renamed into place, so a finished `out_dir`
    (it holds a marker file) is always complete and is returned as is, whatever the
    arguments: give each configuration its own folder.
    """
    out_dir = Path(out_dir)
    if (out_dir / _MARKER).exists():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    arch = dict(hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                num_kv_heads=num_kv_heads, intermediate_size=intermediate_size,
                max_position_embeddings=max_position_embeddings, seed=seed)
    if embedding_rows:
        arch["embedding_rows"] = embedding_rows
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would follow the folder through the rename
    try:
        hf_tok = _save_tokenizer(train_tokenizer(corpus, vocab_size), tmp, max_position_embeddings)
        _save_model(hf_tok, tmp, **arch)
        (tmp / _MARKER).write_text(json.dumps(arch) + "\n")
        if out_dir.exists() and not (out_dir / _MARKER).exists():  # left by a crashed build
            shutil.rmtree(out_dir)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / _MARKER).exists():  # not a concurrent builder that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
