"""Synthetic data must be reproducible, leak-free, imbalanced like dair-ai/emotion and learnable."""
import re
from collections import Counter

import pytest

from pipeline.synthetic import (DAIR_LABELS, cue_words, label_shares, make_emotion_split,
                                make_reasoning_set, tokenizer_corpus)


def test_split_sizes_fields_and_style():
    train, test = make_emotion_split(300, 60, DAIR_LABELS, seed=3)
    assert (len(train), len(test)) == (300, 60)
    for row in train + test:
        assert set(row) == {"text", "label"} and row["label"] in DAIR_LABELS
        assert row["text"] == row["text"].lower() and row["text"].replace(" ", "").isalpha()


def test_dair_labels_follow_the_real_imbalance():
    train, _ = make_emotion_split(2000, 0, DAIR_LABELS)
    counts = Counter(r["label"] for r in train)
    for label, share in zip(DAIR_LABELS, label_shares(DAIR_LABELS)):
        assert abs(counts[label] - 2000 * share) <= 1
    assert min(counts, key=counts.get) == "surprise"


def test_other_labels_decrease_with_the_last_as_minority():
    labels = ["positive", "neutral", "negative", "mixed"]
    train, test = make_emotion_split(400, 100, labels)
    for rows in (train, test):
        counts = [Counter(r["label"] for r in rows)[lab] for lab in labels]
        assert counts == sorted(counts, reverse=True) and counts[-1] < counts[-2]


def test_small_splits_still_hold_every_label():
    _, test = make_emotion_split(10, 6, DAIR_LABELS)
    assert {r["label"] for r in test} == set(DAIR_LABELS)


def test_no_text_repeats_within_or_across_splits():
    train, test = make_emotion_split(3000, 600, DAIR_LABELS)
    texts = [r["text"] for r in train + test]
    assert len(set(texts)) == len(texts)


def test_deterministic_per_seed():
    assert make_emotion_split(50, 10, DAIR_LABELS, seed=1) == make_emotion_split(50, 10, DAIR_LABELS, seed=1)
    assert make_emotion_split(50, 10, DAIR_LABELS, seed=1) != make_emotion_split(50, 10, DAIR_LABELS, seed=2)
    assert make_reasoning_set(30, seed=1) == make_reasoning_set(30, seed=1)
    assert make_reasoning_set(30, seed=1) != make_reasoning_set(30, seed=2)


@pytest.mark.parametrize("labels", [DAIR_LABELS, ("calm", "bored", "upset")])
def test_labels_are_learnable_from_cue_words_with_some_noise(labels):
    cues = cue_words(labels)
    train, _ = make_emotion_split(2000, 0, labels)
    own = sum(any(w in cues[r["label"]] for w in r["text"].split()) for r in train) / len(train)
    assert 0.92 <= own <= 0.97


def test_reasoning_set_mixes_kinds_and_concludes_with_the_answer():
    rows = make_reasoning_set(120)
    assert len(rows) == 120 and len({r["question"] for r in rows}) == 120
    for marker in ("What feeling", "review", "What is", "Which number", "not belong", "Who is"):
        assert sum(marker in r["question"] for r in rows) == 20, marker
    for r in rows:
        assert set(r) == {"question", "answer", "reasoning"}
        assert 1 <= len(re.split(r"(?<=\.) ", r["reasoning"])) <= 3
        assert r["reasoning"].endswith(f" is {r['answer']}.")


def test_tokenizer_corpus_covers_prompts_cues_and_labels():
    corpus = tokenizer_corpus(DAIR_LABELS)
    assert corpus == tokenizer_corpus(DAIR_LABELS)
    words = set(" ".join(corpus).split())
    assert {"Which", "emotion", "Answer", "Label:", "Explain", "reasoning"} <= words
    assert all(set(c) <= words for c in cue_words(DAIR_LABELS).values())
