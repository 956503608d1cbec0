"""Preflight checks of the prompts: every template renders, every used text fits its token budget."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from pipeline.config import RunContext, TaskSpec
from pipeline.io import DataError

CHARS_PER_TOKEN = 4
SAMPLE_TEXT = "i feel calm and a little tired today"
SAMPLE_REASONING = "The writer describes feeling calm and tired, which points to the given label."


# ================================================================== prompt templates
def check_templates(task: TaskSpec, row: dict, chat: str | None = None, generator: str = "stage1") -> None:
    """Build every conversation the stages build, with pipeline/prompts.py itself, on `row`,
    and render each through the chat template as transformers and vLLM do."""
    from pipeline import prompts

    label = row.get("label", task.labels[0])
    stage2, baseline = prompts.stage2_answer(task, SAMPLE_REASONING, label), prompts.baseline_answer(task, label)
    _answer_line_parses(task, stage2, baseline, label)
    conversations = [
        (prompts.stage1_messages(prompts.question(task, row), label, SAMPLE_REASONING), False),    # prepare
        (prompts.reasoning_request(task, row, label, generator), True),                            # generate
        (prompts.classify_messages(task, row, stage2), False),                                     # build-stage2
        (prompts.classify_messages(task, row, baseline), False),
        (prompts.classify_messages(task, row), True),                                               # predict
    ]
    for messages, gen_prompt in conversations:
        render_chat(messages, gen_prompt, chat=chat)


def render_chat(messages: list[dict], add_generation_prompt: bool, special: dict | None = None,
                chat: str | None = None) -> str:
    """The chat template `chat` (a file in prompts/; default the Llama-3 one) on `messages`
    (strict: an unknown field fails instead of rendering "")."""
    from pipeline import prompts

    return prompts.render(chat or prompts.CHAT_TEMPLATE, **_chat_fields(messages, add_generation_prompt, special))


def _answer_line_parses(task: TaskSpec, stage2: str, baseline: str, label: str) -> None:
    """The answers the models are trained on must give back their label through parse_label with the
    spec's answer_prefix; otherwise every prediction would be counted invalid."""
    from pipeline import prompts
    from postprocess.labels import parse_label

    for role, text in (("stage2_assistant", stage2), ("baseline_assistant", baseline)):
        if parse_label(text, task.labels, task.answer_prefix) != label:
            raise DataError(f"{prompts.template_file(task.templates[role])}: renders {text[-80:]!r}, from which the label "
                            f"parser (answer_prefix {task.answer_prefix!r} from {task.path}) cannot read {label!r}; "
                            f"end the template with `{{{{ answer_prefix }}}} {{{{ label }}}}`")


def _chat_fields(messages: list[dict], add_generation_prompt: bool, special: dict | None = None) -> dict:
    """What transformers' apply_chat_template passes to a chat template."""
    def raise_exception(message):
        raise ValueError(message)

    def strftime_now(fmt):
        import datetime

        return datetime.datetime.now().strftime(fmt)

    return {"messages": messages, "add_generation_prompt": add_generation_prompt, "tools": None, "documents": None,
            "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>",
            "unk_token": None, **(special or {}), "raise_exception": raise_exception, "strftime_now": strftime_now}


# ================================================================== lengths
def local_tokenizer(ctx: RunContext) -> Path | None:
    """tokenizer.json of the base model when it is on this machine (the tiny one after prepare)."""
    base = ctx.profile.get("base_model")
    if ctx.profile.get("base_model_gguf"):
        path = Path(ctx.base_model) / "tokenizer.json"
    elif base == "tiny":
        path = ctx.base_model_dir / "tokenizer.json"
    elif Path(str(base)).expanduser().is_dir():
        path = Path(str(base)).expanduser() / "tokenizer.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(base), "tokenizer.json")
        except Exception:
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    return path if path is not None and path.is_file() else None


def token_counter(ctx: RunContext) -> tuple[Callable[[list[str]], list[int]], str]:
    """(count(texts) -> token counts, how they were counted)."""
    path = local_tokenizer(ctx)
    if path is not None:
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path))
            return (lambda texts: [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)],
                    f"counted with the base model's tokenizer {path}")
        except Exception:
            pass
    return (lambda texts: [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts],
            f"an ESTIMATE at {CHARS_PER_TOKEN} characters per token: the base model's tokenizer is not local yet")


def _special_tokens(ctx: RunContext) -> dict:
    path = local_tokenizer(ctx)
    cfg = path.parent / "tokenizer_config.json" if path else None
    if cfg and cfg.is_file():
        data = json.loads(cfg.read_text(encoding="utf-8"))
        return {k: v if isinstance(v, str) else (v or {}).get("content")
                for k in ("bos_token", "eos_token", "pad_token") if (v := data.get(k)) is not None}
    return {}


def check_lengths(ctx: RunContext, rows: dict[str, list[dict]]) -> None:
    """Every used text must fit: its training row in sequence_len, its prompts + max_tokens in max_model_len."""
    from pipeline import prompts
    from pipeline.train import resolve_config

    task, gen = ctx.task, ctx.generation
    count, how = token_counter(ctx)
    special = _special_tokens(ctx)
    longest = max(task.labels, key=len)
    blank = {name: "" for name in task.inputs}  # the prompt without the example's text

    def chat(messages, gen_prompt):
        return render_chat(messages, gen_prompt, special, chat=ctx.chat_template)

    seq = {which: resolve_config(ctx, which).get("sequence_len") for which in ("stage2", "baseline")}
    seq_which = min((w for w in seq if seq[w]), key=lambda w: seq[w], default=None)
    budgets = []  # (which split, overhead tokens, limit, what it is)
    if seq_which:
        over = count([chat(prompts.classify_messages(task, blank, prompts.baseline_answer(task, longest)), False)])[0]
        budgets.append(("train", over, seq[seq_which],
                        f"the baseline/stage-2 training row (prompt + answer) must fit sequence_len {seq[seq_which]} "
                        f"(axolotl_configs/{seq_which}.yml with the profile's train.axolotl)",
                        "raise train.axolotl.sequence_len in the profile"))
    if gen.get("max_model_len"):
        mml = int(gen["max_model_len"])
        over = count([chat(prompts.reasoning_request(task, blank, longest, gen["generator"]), True)])[0]
        budgets.append(("train", over, mml - int(gen.get("max_tokens", 0)),
                        f"the generate prompt plus generation.max_tokens {gen.get('max_tokens', 0)} must fit "
                        f"generation.max_model_len {mml}", "raise generation.max_model_len in the profile"))
        pmax = max(n for n in ctx.profile["predict"]["max_tokens"].values() if n)
        over = count([chat(prompts.classify_messages(task, blank), True)])[0]
        budgets.append(("test", over, mml - int(pmax),
                        f"the predict prompt plus predict.max_tokens {pmax} must fit generation.max_model_len {mml}",
                        "raise generation.max_model_len in the profile"))
    for split, split_rows in rows.items():
        path = ctx.data_dir / task.text_files[split]
        n = count([r["text"] for r in split_rows])
        for bsplit, over, limit, what, fix in budgets:
            if bsplit != split:
                continue
            bad = [(r, k) for r, k in zip(split_rows, n) if k + over > limit]
            if bad:
                r, k = bad[0]
                more = f" ({len(bad) - 1} more rows of this split are too long too)" if len(bad) > 1 else ""
                raise DataError(f"{path}:{r['_line']}: field 'text' is {k} tokens ({how}); with the {over} tokens "
                                f"of prompt around it that is {k + over}, but {what}{more}. Shorten or remove that "
                                f"line, or {fix}")


