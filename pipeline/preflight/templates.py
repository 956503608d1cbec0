"""Preflight checks of the prompts: every template renders, every used text fits its token budget."""
from __future__ import annotations

import json
import math
import os
import traceback
from pathlib import Path
from typing import Callable

from pipeline.config import PROMPTS_DIR, RunContext, TaskSpec
from pipeline.io import DataError

CHARS_PER_TOKEN = 4
SAMPLE_TEXT = "i feel calm and a little tired today"
SAMPLE_REASONING = "The writer describes feeling calm and tired, which points to the given label."


# ================================================================== prompt templates
def _template_env():
    import jinja2

    def load(name: str):
        path = _template_path(name)
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8"), str(path), lambda: False

    return jinja2.Environment(loader=jinja2.FunctionLoader(load), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False, autoescape=False)


def _template_path(name: str) -> Path:
    return Path(os.path.normpath(PROMPTS_DIR / name))


def _render(env, name: str, fields: dict) -> str:
    """Render one template; errors name the template file and line."""
    import jinja2

    path = _template_path(name)
    try:
        return env.get_template(name).render(**fields).strip()
    except jinja2.TemplateNotFound:
        raise DataError(f"{path}: template not found (the task spec or pipeline/prompts.py names it)") from None
    except jinja2.TemplateSyntaxError as e:
        raise DataError(f"{e.filename or path}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        line = _template_line(e, path)
        where = f"{path}:{line}" if line else str(path)
        raise DataError(f"{where}: {e.message} (the template is rendered with the fields {sorted(fields)}); "
                        f"use one of those fields or fix the name") from None
    except Exception as e:
        raise DataError(f"{path}: cannot be rendered: {type(e).__name__}: {e}") from None


def _template_line(exc: BaseException, path: Path) -> int | None:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename) == path:
            return frame.lineno
    return None


def check_templates(task: TaskSpec, row: dict) -> None:
    """Render every template the task uses with the fields pipeline/prompts.py gives it, on `row`.

    Mirrors pipeline/prompts.py: question_template(text, labels); stage1_user(question,
    answer); stage1_assistant(reasoning); stage2_assistant(reasoning, label, answer_prefix);
    baseline_assistant(label, answer_prefix); the chat template as transformers/vLLM render it.
    """
    from pipeline import prompts

    env = _template_env()
    label = row.get("label", task.labels[0])
    question = _render(env, task.question_template, {"text": row["text"], "labels": task.labels})
    user1 = _render(env, "stage1_user.jinja", {"question": question, "answer": label})
    assistant1 = _render(env, "stage1_assistant.jinja", {"reasoning": SAMPLE_REASONING})
    prefix = task.answer_prefix
    stage2 = _render(env, task.templates["stage2_assistant"],
                     {"reasoning": SAMPLE_REASONING, "label": label, "answer_prefix": prefix})
    baseline = _render(env, task.templates["baseline_assistant"], {"label": label, "answer_prefix": prefix})
    _answer_line_parses(task, stage2, baseline, label)
    for messages, gen_prompt in (([("user", user1), ("assistant", assistant1)], False), ([("user", user1)], True),
                                 ([("user", question), ("assistant", stage2)], False),
                                 ([("user", question), ("assistant", baseline)], False), ([("user", question)], True)):
        _render(env, prompts.CHAT_TEMPLATE, _chat_fields([{"role": r, "content": c} for r, c in messages], gen_prompt))


def _answer_line_parses(task: TaskSpec, stage2: str, baseline: str, label: str) -> None:
    """The answers the models are trained on must give back their label through parse_label with the
    spec's answer_prefix; otherwise every prediction would be counted invalid."""
    from postprocess.labels import parse_label

    for role, text in (("stage2_assistant", stage2), ("baseline_assistant", baseline)):
        if parse_label(text, task.labels, task.answer_prefix) != label:
            raise DataError(f"{_template_path(task.templates[role])}: renders {text[-80:]!r}, from which the label "
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
    if base == "tiny":
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
    env, special = _template_env(), _special_tokens(ctx)
    longest = max(task.labels, key=len)

    def chat(messages, gen_prompt):
        return _render(env, prompts.CHAT_TEMPLATE, _chat_fields(messages, gen_prompt, special))

    seq = {which: resolve_config(ctx, which).get("sequence_len") for which in ("stage2", "baseline")}
    seq_which = min((w for w in seq if seq[w]), key=lambda w: seq[w], default=None)
    budgets = []  # (which split, overhead tokens, limit, what it is)
    if seq_which:
        over = count([chat(prompts.classify_messages(task, "", prompts.baseline_answer(task, longest)), False)])[0]
        budgets.append(("train", over, seq[seq_which],
                        f"the baseline/stage-2 training row (prompt + answer) must fit sequence_len {seq[seq_which]} "
                        f"(axolotl_configs/{seq_which}.yml with the profile's train.axolotl)",
                        "raise train.axolotl.sequence_len in the profile"))
    if gen.get("max_model_len"):
        mml = int(gen["max_model_len"])
        over = count([chat(prompts.generation_messages(task, "", longest), True)])[0]
        budgets.append(("train", over, mml - int(gen.get("max_tokens", 0)),
                        f"the generate prompt plus generation.max_tokens {gen.get('max_tokens', 0)} must fit "
                        f"generation.max_model_len {mml}", "raise generation.max_model_len in the profile"))
        pmax = max((ctx.profile.get("predict") or {}).get("max_tokens", {"x": 0}).values())
        over = count([chat(prompts.classify_messages(task, ""), True)])[0]
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


