"""Constrained decoding of the final label: what the regex admits, the parser reads."""
from __future__ import annotations

import re

import pytest

from postprocess.labels import label_regex, parse_label

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise", "not entailment", "entailment"]


@pytest.mark.parametrize("text, with_reasoning, ok", [
    ("Label: joy", False, True),
    ("Label: not entailment", False, True),
    ("Label: happiness", False, False),
    ("joy", False, False),
    ("The writer is thrilled.\n\nLabel: joy", True, True),
    ("It says 'scared'.\nSo fear.\n\nLabel: fear", True, True),
    ("Label: joy", True, False),           # stage 2 must reason first
    ("Reasoning.\n\nLabel: joyful", True, False),
])
def test_regex_admits_exactly_the_parseable_answers(text, with_reasoning, ok):
    regex = label_regex(LABELS, "Label:", with_reasoning)
    assert bool(re.fullmatch(regex, text)) is ok
    if ok:
        assert parse_label(text, LABELS, "Label:") == text.rsplit("Label: ", 1)[1]
