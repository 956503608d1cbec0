"""Read the final label out of a generated answer.

Stage 2 answers "{reasoning}\\n\\nLabel: {label}" and the baseline "Label: {label}",
so the label is whatever follows the LAST prefix ("Label:" by default): a
reasoning may name other labels, or even write an earlier "Label:" line, before
the final one. The parser tolerates what real generations add around the label
(case, markdown, quotes, trailing punctuation, a parenthetical, chat tokens) but
never guesses: an unknown or ambiguous label after the prefix is invalid, and
without any prefix only an output that is exactly a label is accepted.

LABEL_INVALID (None) is what parse_label returns for such an output; evaluation
counts it as a wrong prediction (it equals no gold label), never as a class.
"""
from __future__ import annotations

import re
from typing import Sequence

from postprocess.text import bare_label, label_pattern, prefix_regex, strip_artifacts

LABEL_INVALID = None

_OPENERS = " \t\"'“‘`[(<{=-"
# After a label, another label joined by one of these makes the answer ambiguous.
_ALTERNATIVE = re.compile(r"[\s\"'”’`)\]]*(?:[/|,&+]|\bor\b|\band\b)[\s\"'“‘`(\[]*", re.IGNORECASE)


def _label_at_start(value: str, labels: Sequence[str]) -> str | None:
    """Return the label `value` starts with, or None if none does or the answer names two."""
    value = value.lstrip(_OPENERS)
    for label in sorted(labels, key=len, reverse=True):
        m = re.match(label_pattern(label), value, re.IGNORECASE)
        if m:
            alt = _ALTERNATIVE.match(value, m.end())
            if alt and any(re.match(label_pattern(o), value[alt.end():], re.IGNORECASE) for o in labels):
                return LABEL_INVALID
            return label
    return LABEL_INVALID


def parse_label(output: str, labels: Sequence[str], prefix: str = "Label:") -> str | None:
    """Return the canonical label (an item of `labels`) that `output` ends with, or LABEL_INVALID.

    - With a prefix: the text after the last prefix occurrence (or, if that
      line is blank, the next non-blank line) must start with a label, matched
      by whole words, any case, space/-/_ interchangeable, after opening quotes
      or brackets; anything may follow it ("joy.", "joy (the text is happy)")
      except another label as an alternative ("joy/love", "joy or love").
      "Label: happiness" or "Label: the emotion is joy" are invalid.
    - Without a prefix: valid only if the whole output, stripped of quotes and
      punctuation at its ends, is a label ("Joy." -> "joy").
    Chat tokens, role headers and markdown asterisks are ignored first.
    """
    text = strip_artifacts(output).replace("*", "")
    last = None
    for last in prefix_regex(prefix).finditer(text):
        pass
    if last is None:
        return bare_label(text, labels)
    lines = text[last.end():].split("\n")
    value = lines[0] if lines[0].strip() else next((l for l in lines[1:] if l.strip()), "")
    return _label_at_start(value, labels)


def answer_reasoning(output: str, labels: Sequence[str], prefix: str = "Label:") -> str | None:
    """The reasoning of an answer: the output without the line `parse_label` reads the label from
    (before it for stage 2, after it for a label-first answer); None when nothing else is left."""
    text = strip_artifacts(output)
    last = None
    for last in prefix_regex(prefix).finditer(text.replace("*", " ")):  # same offsets as parse_label's view
        pass
    if last is None:
        rest = "" if bare_label(text.replace("*", ""), labels) else text
    else:
        start = text.rfind("\n", 0, last.start()) + 1
        end = last.end()
        for i, line in enumerate(text[end:].split("\n")):  # the label's line: the first non-blank one
            end += len(line) + (i > 0)
            if line.strip():
                break
        rest = text[:start] + text[end:]
    return rest.strip() or None


def label_regex(labels: Sequence[str], prefix: str = "Label:", with_reasoning: bool = False) -> str:
    """A regex for constrained decoding (vLLM structured outputs) whose every match
    `parse_label` reads as one of `labels`: the answer line alone (baseline) or free
    reasoning, a blank line, then the answer line (stage 2)."""
    choice = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    answer = f"{re.escape(prefix)} ({choice})"
    return f"[^\\n](?:.|\\n)*\\n\\n{answer}" if with_reasoning else answer
