"""Loaders: the text;label files, local tables, column mapping, and their errors."""
from __future__ import annotations

import json

import pytest

from pipeline.config import RunContext, TaskSpec, load_profile
from pipeline.data import load_reasoning_set, load_task_splits, map_columns, read_table, read_text_label_file
from pipeline.io import DataError

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def test_text_label_file_splits_on_last_semicolon_and_skips_blank_lines(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("\ni feel sad; really;sadness\n\nim happy;joy\n", encoding="utf-8")
    rows = read_text_label_file(f, LABELS)
    assert [(r["text"], r["label"], r["_line"]) for r in rows] == [("i feel sad; really", "sadness", 2), ("im happy", "joy", 4)]


@pytest.mark.parametrize("line, message", [
    ("no separator here", "no ';'"),
    ("i feel odd;happiness", "field 'label' is 'happiness'"),
    (";joy", "field 'text' is empty"),
])
def test_malformed_line_names_file_line_and_field(tmp_path, line, message):
    f = tmp_path / "train.txt"
    f.write_text(f"fine text;joy\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_text_label_file(f, LABELS)
    assert f"{f}:2:" in str(e.value) and message in str(e.value)


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    f = tmp_path / "rs.jsonl"
    f.write_text('{"q": 1}\n{"q": \n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{f}:2: not valid JSON"):
        read_table(f)


def test_missing_column_lists_the_columns_the_data_has():
    with pytest.raises(DataError) as e:
        map_columns([{"prompt": "q", "response": "a", "thoughts": "r"}],
                    {"question": "question", "answer": "response", "reasoning": "thoughts"}, "my.jsonl")
    assert "my.jsonl, row 1: column 'question' (question) is missing" in str(e.value)
    assert "['prompt', 'response', 'thoughts']" in str(e.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_reasoning_set_from_local_table_with_mapped_columns(tmp_path, suffix):
    import pandas as pd

    frame = pd.DataFrame({"prompt": ["2+2?", "3+3?"], "final": ["4", "6"], "cot": ["two and two is four.", "six."]})
    path = tmp_path / f"rs{suffix}"
    {".jsonl": lambda: path.write_text("\n".join(json.dumps(r) for r in frame.to_dict("records"))),
     ".csv": lambda: frame.to_csv(path, index=False), ".parquet": lambda: frame.to_parquet(path)}[suffix]()
    profile = load_profile("tiny")
    profile["reasoning_set"] = {"source": str(path), "columns": {"question": "prompt", "answer": "final", "reasoning": "cot"}}
    rows = load_reasoning_set(RunContext(profile, TaskSpec.load("emotion"), tmp_path / "run"))
    assert rows == [{"id": "rs-000000", "question": "2+2?", "answer": "4", "reasoning": "two and two is four."},
                    {"id": "rs-000001", "question": "3+3?", "answer": "6", "reasoning": "six."}]


def test_empty_reasoning_cell_names_row(tmp_path):
    path = tmp_path / "rs.jsonl"
    path.write_text('{"question": "q", "answer": "a", "reasoning": "r"}\n{"question": "q", "answer": "a", "reasoning": ""}\n')
    profile = load_profile("tiny")
    profile["reasoning_set"] = {"source": str(path), "columns": {"question": "question", "answer": "answer", "reasoning": "reasoning"}}
    with pytest.raises(DataError, match=rf"{path}:2: column 'reasoning' \(reasoning\) is empty"):
        load_reasoning_set(RunContext(profile, TaskSpec.load("emotion"), tmp_path / "run"))


def test_shared_emotion_subset_loads_with_stable_ids(shared_emotion, tmp_path):
    ctx = RunContext(load_profile("tiny"), TaskSpec.load("emotion"), tmp_path / "run", data_dir=shared_emotion)
    splits = load_task_splits(ctx)
    assert len(splits["train"]) == 400 and len(splits["test"]) == 200
    assert splits["train"][0] == {"id": "train-00000", "text": "i didnt feel humiliated", "label": "sadness"}
    assert {r["label"] for r in splits["train"]} <= set(LABELS)


def test_paper_profile_reads_emotion_from_the_hub_spec():
    task = TaskSpec.load("emotion")
    assert task.hub["path"] == "dair-ai/emotion" and task.labels == LABELS
    assert load_profile("paper")["reasoning_set"]["source"] == "syvai/reasoning-gen"


def test_task_spec_with_unknown_field_fails(tmp_path):
    spec = tmp_path / "t.yml"
    spec.write_text("name: t\nlabels: [a, b]\nquestion_template: emotion_question.jinja\nanswer_prefix: 'Label:'\nlabelz: 1\n")
    with pytest.raises(DataError, match="unknown field"):
        TaskSpec.load(str(spec))
