"""Text helpers shared by label parsing and reasoning cleaning.

Both need to see a generation the same way: without the chat-template debris a
serving stack can leave around it, and with label names matched by words so that
"joy" is found in "Joy." but not in "joyful", and "entailment" is not found
inside "not entailment".
"""
from __future__ import annotations

import re
from typing import Sequence

# A turn ends at the first of these once the model has written something; text
# after it (a runaway next turn) is not part of the answer.
_END_OF_TURN = re.compile(
    r"<\|(?:eot_id|end_of_text|endoftext|im_end|end)\|>|</s>|<eos>|<end_of_turn>"
)
# Role headers of Llama 3 / ChatML / Gemma templates, removed with the role name.
_HEADER = re.compile(
    r"<\|start_header_id\|>.*?<\|end_header_id\|>|<\|im_start\|>\w*|<start_of_turn>\w*",
    re.DOTALL,
)
_SPECIAL = re.compile(r"<\|[^<>|\s]*\|>|</?s>|<bos>|<pad>")
# Stripped from both ends of an output before testing whether it is just a label.
_EDGES = " \t\r\n\"'“”‘’`*.,;:!?()[]{}<>"
# A role word the template left on its own line at the start ("assistant\n\n...").
_ROLE_LINE = re.compile(r"\s*(?:assistant|model)\s*:?\s*\n", re.IGNORECASE)


def strip_artifacts(text: str) -> str:
    """Return `text` cut at its end-of-turn token and without special tokens or role headers."""
    for m in _END_OF_TURN.finditer(text):
        if _SPECIAL.sub("", _HEADER.sub("", text[: m.start()])).strip():
            text = text[: m.start()]
            break
    text = _SPECIAL.sub("", _HEADER.sub("", text))
    return _ROLE_LINE.sub("", text, count=1) if _ROLE_LINE.match(text) else text


def prefix_regex(prefix: str) -> re.Pattern[str]:
    """Match `prefix` as a word, any case, with optional spaces before a final colon."""
    p = prefix.strip()
    core = re.escape(p[:-1].rstrip()) + r"\s*:" if p.endswith(":") else re.escape(p)
    return re.compile(r"(?<!\w)" + core, re.IGNORECASE)


def label_pattern(label: str) -> str:
    """Regex source matching `label` as whole words, any case, with space/-/_ interchangeable."""
    words = [re.escape(w) for w in re.split(r"[\s_-]+", label.strip()) if w]
    return r"(?<![\w-])" + r"[\s_-]+".join(words) + r"(?![\w-])"


def label_mentions(text: str, labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """Return (start, end, label) of each label mention in `text`, in text order.

    Longer labels are matched first and their spans masked, so "not entailment"
    is one mention of that label and none of "entailment".
    """
    found: list[tuple[int, int, str]] = []
    masked = text
    for label in sorted(labels, key=len, reverse=True):
        for m in re.finditer(label_pattern(label), masked, re.IGNORECASE):
            found.append((m.start(), m.end(), label))
            masked = masked[: m.start()] + " " * (m.end() - m.start()) + masked[m.end() :]
    return sorted(found)


def bare_label(text: str, labels: Sequence[str]) -> str | None:
    """Return the label `text` is exactly (ignoring case, quotes, markdown, edge punctuation), else None."""
    bare = text.strip(_EDGES)
    return next((l for l in labels if re.fullmatch(label_pattern(l), bare, re.IGNORECASE)), None)
