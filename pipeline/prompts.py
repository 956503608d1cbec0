"""Render the project's Jinja prompts into chat messages, the one place they are built.

Training sets (prepare, build-stage2), generation requests (generate) and
classification requests (predict) all call these functions, so the words a model
is trained on are the words it is asked with. Templates use StrictUndefined: a
template that references an unknown field fails loudly instead of rendering "".
A template name is a file in prompts/ or an absolute path (a task's own template).
"""
from __future__ import annotations

import os
import traceback
from functools import lru_cache
from pathlib import Path

import jinja2

from pipeline.config import PROMPTS_DIR, TaskSpec
from pipeline.io import DataError

CHAT_TEMPLATE = "chat_template.jinja"
PROMPTED_REASONING = "prompted_reasoning.jinja"  # generation.generator: prompted


def template_file(name: str) -> Path:
    """prompts/<name>, or `name` itself when it is an absolute path."""
    return Path(os.path.normpath(PROMPTS_DIR / name))


@lru_cache(maxsize=4)
def _env(folder: Path) -> jinja2.Environment:
    """Templates by file name in `folder`, or by a path relative to it (a task's own question
    template may live beside its spec: `../my_task/question.jinja`)."""
    def load(name: str):
        path = Path(os.path.normpath(folder / name))
        if not path.is_file():
            return None
        mtime = path.stat().st_mtime
        return path.read_text(encoding="utf-8"), str(path), lambda: path.is_file() and path.stat().st_mtime == mtime

    return jinja2.Environment(loader=jinja2.FunctionLoader(load), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False, autoescape=False)


def render(name: str, **fields) -> str:
    """Render one template; every error names the template file (and line) and the fields given."""
    path = template_file(name)
    try:
        return _env(PROMPTS_DIR).get_template(name).render(**fields).strip()
    except jinja2.TemplateNotFound:
        raise DataError(f"{path}: template not found (named by the task spec or pipeline/prompts.py)") from None
    except jinja2.TemplateSyntaxError as e:
        raise DataError(f"{e.filename or path}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__)) if Path(f.filename) == path),
                    None)
        raise DataError(f"{path}{f':{line}' if line else ''}: {e.message}; fields given: {sorted(fields)}. "
                        f"Use one of those fields or fix the name") from None


def chat_template(name: str = CHAT_TEMPLATE) -> str:
    """The one chat template of a model family (profile key `chat_template`), used by Axolotl, vLLM
    and transformers alike (see README, 'Prompts'); the default is the Llama-3 one."""
    return template_file(name).read_text(encoding="utf-8")


def template_paths(task: TaskSpec, chat: str = CHAT_TEMPLATE) -> list[Path]:
    names = [chat, task.question_template, "stage1_user.jinja", "stage1_assistant.jinja",
             task.templates["stage2_assistant"], task.templates["baseline_assistant"]]
    return [template_file(n) for n in names]


def question(task: TaskSpec, example: str | dict) -> str:
    """The task's question about one example: a data row, a {field: text} mapping of the task's
    `inputs` (premise, hypothesis, ...) or, for a one-text task, the text; each field is a variable."""
    return render(task.question_template, **task.input_fields(example), labels=task.labels)


def stage1_messages(question_text: str, answer: str, reasoning: str | None = None) -> list[dict]:
    """(question, answer) -> reasoning; without `reasoning` it is a generation request."""
    msgs = [{"role": "user", "content": render("stage1_user.jinja", question=question_text, answer=answer)}]
    if reasoning is not None:
        msgs.append({"role": "assistant", "content": render("stage1_assistant.jinja", reasoning=reasoning)})
    return msgs


def generation_messages(task: TaskSpec, example: str | dict, label: str) -> list[dict]:
    """The data engine's request: the task question with its gold label, as a stage-1 prompt."""
    return stage1_messages(question(task, example), label)


def prompted_generation_messages(task: TaskSpec, example: str | dict, label: str) -> list[dict]:
    """The request of `generation.generator: prompted`: an instruct model, not a trained stage-1
    model, writes the reasoning for the gold label from a few-shot prompt."""
    return [{"role": "user", "content": render(PROMPTED_REASONING, question=question(task, example), answer=label,
                                               labels=task.labels)}]


def reasoning_request(task: TaskSpec, example: str | dict, label: str, generator: str) -> list[dict]:
    """What `generate` asks the generator (`generation.generator`) for the example's reasoning
    towards its gold label: the trained stage-1 model, or the prompted base model."""
    ask = prompted_generation_messages if generator == "prompted" else generation_messages
    return ask(task, example, label)


def classify_requests(task: TaskSpec, rows: list[dict]) -> list[dict]:
    """predict's requests for task split rows (every input field in the question): the predict stage's
    and the experiments'."""
    return [{"id": r["id"], "messages": classify_messages(task, r)} for r in rows]


def classify_messages(task: TaskSpec, example: str | dict, answer: str | None = None) -> list[dict]:
    """example -> answer: the user turn of stage 2, the baseline, predict and classify."""
    msgs = [{"role": "user", "content": question(task, example)}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def stage2_answer(task: TaskSpec, reasoning: str, label: str) -> str:
    """Reasoning, then the answer line `{answer_prefix} {label}` that parse_label reads."""
    return render(task.templates["stage2_assistant"], reasoning=reasoning, label=label, answer_prefix=task.answer_prefix)


def baseline_answer(task: TaskSpec, label: str) -> str:
    return render(task.templates["baseline_assistant"], label=label, answer_prefix=task.answer_prefix)


def label_first_answer(task: TaskSpec, reasoning: str, label: str) -> str:
    """The label line first, then the reasoning: decoding may stop after the label (experiment label_first)."""
    return render("label_first_assistant.jinja", reasoning=reasoning, label=label, answer_prefix=task.answer_prefix)
