"""Render the project's Jinja prompts into chat messages, the one place they are built.

Training sets (prepare, build-stage2), generation requests (generate) and
classification requests (predict) all call these functions, so the words a model
is trained on are the words it is asked with. Templates use StrictUndefined: a
template that references an unknown field fails loudly instead of rendering "".
A template name is a file in prompts/ or an absolute path (a task's own template).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import jinja2

from pipeline.config import PROMPTS_DIR, TaskSpec
from pipeline.io import DataError

CHAT_TEMPLATE = "chat_template.jinja"


def template_file(name: str) -> Path:
    """prompts/<name>, or `name` itself when it is an absolute path."""
    return Path(os.path.normpath(PROMPTS_DIR / name))


def _load(name: str):
    path = template_file(name)
    return (path.read_text(encoding="utf-8"), str(path), lambda: False) if path.is_file() else None


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FunctionLoader(_load), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False, autoescape=False)


def render(name: str, **fields) -> str:
    try:
        return _env().get_template(name).render(**fields).strip()
    except jinja2.UndefinedError as e:
        raise DataError(f"{template_file(name)}: {e.message}; fields given: {sorted(fields)}") from None


def chat_template() -> str:
    """The one chat template used by Axolotl, vLLM and transformers (see README, 'Prompts')."""
    return (PROMPTS_DIR / CHAT_TEMPLATE).read_text(encoding="utf-8")


def template_paths(task: TaskSpec) -> list[Path]:
    names = [CHAT_TEMPLATE, task.question_template, "stage1_user.jinja", "stage1_assistant.jinja",
             task.templates["stage2_assistant"], task.templates["baseline_assistant"]]
    return [template_file(n) for n in names]


def question(task: TaskSpec, text: str) -> str:
    return render(task.question_template, text=text, labels=task.labels)


def stage1_messages(question_text: str, answer: str, reasoning: str | None = None) -> list[dict]:
    """(question, answer) -> reasoning; without `reasoning` it is a generation request."""
    msgs = [{"role": "user", "content": render("stage1_user.jinja", question=question_text, answer=answer)}]
    if reasoning is not None:
        msgs.append({"role": "assistant", "content": render("stage1_assistant.jinja", reasoning=reasoning)})
    return msgs


def generation_messages(task: TaskSpec, text: str, label: str) -> list[dict]:
    """The data engine's request: the task question with its gold label, as a stage-1 prompt."""
    return stage1_messages(question(task, text), label)


def classify_messages(task: TaskSpec, text: str, answer: str | None = None) -> list[dict]:
    """text -> answer: the user turn of stage 2, the baseline, predict and classify."""
    msgs = [{"role": "user", "content": question(task, text)}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def stage2_answer(task: TaskSpec, reasoning: str, label: str) -> str:
    """Reasoning, then the answer line `{answer_prefix} {label}` that parse_label reads."""
    return render(task.templates["stage2_assistant"], reasoning=reasoning, label=label, answer_prefix=task.answer_prefix)


def baseline_answer(task: TaskSpec, label: str) -> str:
    return render(task.templates["baseline_assistant"], label=label, answer_prefix=task.answer_prefix)
