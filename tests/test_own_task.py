"""Your own task by configuration alone: a folder outside the project with task.yml, a question
template and CSV files, two text fields (product, review) under other column names, a
non-default answer prefix, run end to end on the tiny profile."""
from __future__ import annotations

import json
import shutil

import pytest

from pipeline.config import ROOT, TaskSpec
from pipeline.io import DataError, read_jsonl
from postprocess.labels import parse_label

EXAMPLE = ROOT / "examples" / "own_task"


def test_spec_outside_the_project_resolves_its_own_files(tmp_path):
    for f in EXAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    task = TaskSpec.load(str(tmp_path / "task.yml"))
    assert task.question_template == str(tmp_path / "question.jinja")
    assert task.files == {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv")}
    assert task.templates == {"stage2_assistant": "stage2_assistant.jinja", "baseline_assistant": "baseline_assistant.jinja"}
    (tmp_path / "question.jinja").unlink()
    with pytest.raises(DataError, match=r"task\.yml: field 'question_template': question\.jinja is neither next to"):
        TaskSpec.load(str(tmp_path / "task.yml"))


def test_own_csv_task_with_answer_prefix_end_to_end(own_task_run):
    task_dir, run, out = own_task_run
    metrics = json.loads((run / "metrics.json").read_text())
    info = metrics["run"]
    assert info["task"] == "reviews" and info["task_spec"] == str(task_dir / "task.yml")
    assert str(task_dir / "train.csv") in info["data_source"]
    assert "product='item', review='review', label='sentiment'" in info["data_source"]
    assert info["sizes"]["train"] == 120 and info["sizes"]["test"] == 40
    assert metrics["labels"] == ["negative", "positive"]
    # The prefix from the spec is what the models are trained to write ...
    for row in read_jsonl(run / "data" / "baseline.jsonl"):
        assert row["messages"][-1]["content"] in ("Answer: negative", "Answer: positive")
        assert row["messages"][0]["content"].startswith("Is this review positive or negative?")
        assert "\nProduct: " in row["messages"][0]["content"] and "\nReview: " in row["messages"][0]["content"]
    for row in read_jsonl(run / "data" / "stage2.jsonl"):
        answer = row["messages"][-1]["content"]
        # the answer line ends it (the tiny stage-1 model may write an empty reasoning before it)
        assert answer.splitlines()[-1] in ("Answer: negative", "Answer: positive") and "Label:" not in answer
    # ... and what the parser reads back: the baseline's outputs give valid labels
    preds = read_jsonl(run / "predictions" / "baseline.jsonl")
    valid = [r for r in preds if r["pred"] is not None]
    assert len(valid) >= len(preds) // 2, [r["output"] for r in preds[:5]]
    assert all(r["output"].strip().startswith("Answer:") for r in valid)
    assert all(parse_label(r["output"], ["negative", "positive"], "Label:") is None for r in valid)
    report = (run / "report.md").read_text()
    assert "| task " in report and "reviews (`" in report and "## Paper vs this run" in report


def test_both_text_fields_are_the_same_tokens_in_training_and_inference(own_task_run):
    """Each row's question holds both fields, rendered once by pipeline/prompts.py: the prompt
    tokens Axolotl trained the baseline on and those vLLM answered in predict are the ids the
    chat template gives that question (tests/test_label_masks_and_parity.py: for one-text rows)."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from pipeline import prompts
    from pipeline.generation.hf_engine import chat_prompt_ids
    from pipeline.generation.shards import ShardStore

    task_dir, run, _ = own_task_run
    task = TaskSpec.load(str(task_dir / "task.yml"))
    tok = AutoTokenizer.from_pretrained(run / "models" / "tiny-base")

    def ids(row: dict) -> list[int]:
        return chat_prompt_ids(tok, prompts.classify_messages(task, row), prompts.chat_template())

    def shows_both(prompt: list[int], row: dict) -> bool:
        return f"Product: {row['inputs']['product']}\nReview: {row['inputs']['review']}" in tok.decode(prompt)

    train = read_jsonl(run / "data" / "task" / "train.jsonl")
    by_prompt = {tuple(ids(r)): r for r in train}
    (folder,) = {p.parent for p in (run / "prepared" / "baseline").rglob("dataset_info.json")}
    prepared = load_from_disk(str(folder))
    assert len(prepared) == len(read_jsonl(run / "data" / "baseline.jsonl"))
    for row in prepared:
        prompt = row["input_ids"][:next(i for i, lab in enumerate(row["labels"]) if lab != -100)]
        assert tuple(prompt) in by_prompt, tok.decode(prompt)
        assert shows_both(prompt, by_prompt[tuple(prompt)])
    test = read_jsonl(run / "data" / "task" / "test.jsonl")
    results, missing = ShardStore(run / "predictions" / ".work-baseline" / "shards").merged([r["id"] for r in test])
    assert not missing
    for r, res in zip(test, results):
        assert res["prompt_token_ids"] == ids(r) and shows_both(res["prompt_token_ids"], r)


def test_classify_a_csv_of_both_fields_answers_what_predict_wrote(own_task_run, tmp_path):
    """classify takes a pair task's examples as a CSV with a column per field (the transformers
    backend gives vLLM's greedy outputs, tests/test_backends.py)."""
    import csv

    from tests.conftest import orchestrate

    _, run, _ = own_task_run
    test = read_jsonl(run / "data" / "task" / "test.jsonl")[:4]
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["review", "product"])
        writer.writeheader()
        writer.writerows(r["inputs"] for r in test)
    orchestrate("classify", "--run-dir", str(run), "--model", "baseline", "--backend", "transformers",
                "--input", str(tmp_path / "pairs.csv"), "--output", str(tmp_path / "out.jsonl"))
    predicted = {r["id"]: r for r in read_jsonl(run / "predictions" / "baseline.jsonl")}
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["text"] for r in rows] == [r["inputs"] for r in test]
    assert [r["output"] for r in rows] == [predicted[r["id"]]["output"] for r in test]
    assert [r["label"] for r in rows] == [predicted[r["id"]]["pred"] for r in test]


def test_experiments_build_training_rows_and_prompts_from_every_field(own_task_run):
    """The experiments' arms rebuild stage-2 rows as build-stage2 wrote them, both fields included, and
    ask the test examples with predict's own prompt (experiments on a pair task once failed with
    'asks for the fields ['product', 'review'], got one text')."""
    from pipeline import prompts
    from pipeline.config import RunContext
    from pipeline.experiments.lab import Lab

    _, run, _ = own_task_run
    lab = Lab(RunContext.from_run_dir(run), "noise")
    train = {r["id"]: r for r in lab.train_split}
    written = read_jsonl(run / "data" / "stage2.jsonl")
    assert len(written) == len(train)
    for row in written:
        assert lab.stage2_row(row["id"], train[row["id"]], lab.reasonings[row["id"]]["reasoning"]) == row
    requests = {r["id"]: r for r in read_jsonl(run / "predictions" / ".work-baseline" / "requests.jsonl")}
    for example, asked in zip(lab.test_rows(), prompts.classify_requests(lab.task, lab.test_rows())):
        assert asked == requests[example["id"]]
        assert example["inputs"]["product"] in asked["messages"][0]["content"]
        assert example["inputs"]["review"] in asked["messages"][0]["content"]


def test_csv_labels_may_be_indices_and_jsonl_works(tmp_path):
    from pipeline.config import RunContext
    from pipeline.data import load_task_splits
    from pipeline.config import load_profile

    (tmp_path / "q.jinja").write_text("Classify: {{ text }}\n")
    (tmp_path / "train.csv").write_text("txt,y\n\"good, very good\",1\nbad,0\n")
    (tmp_path / "test.jsonl").write_text('{"txt": "fine", "y": "positive"}\n{"txt": "", "y": 0}\n')
    (tmp_path / "t.yml").write_text("name: t\nlabels: [negative, positive]\nquestion_template: q.jinja\n"
                                    "answer_prefix: 'Answer:'\nfiles: {train: train.csv, test: test.jsonl}\n"
                                    "columns: {text: txt, label: y}\n")
    ctx = RunContext(load_profile("tiny"), TaskSpec.load(str(tmp_path / "t.yml")), tmp_path / "run")
    with pytest.raises(DataError, match=r"test\.jsonl:2: column 'txt' \(text\) is empty"):
        load_task_splits(ctx)
    (tmp_path / "test.jsonl").write_text('{"txt": "fine", "y": "positive"}\n')
    splits = load_task_splits(ctx)
    assert [(r["text"], r["label"]) for r in splits["train"]] == [("good, very good", "positive"), ("bad", "negative")]
    assert [(r["text"], r["label"]) for r in splits["test"]] == [("fine", "positive")]
    (tmp_path / "train.csv").write_text("text,y\nx,1\n")
    with pytest.raises(DataError, match=r"train\.csv:2: column 'txt' \(text\) is missing; this row has columns \['text', 'y'\]"):
        load_task_splits(ctx)


def test_a_template_that_ignores_the_answer_prefix_is_refused_before_any_work(tmp_path):
    from pipeline.preflight.templates import check_templates

    for f in EXAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "base.jinja").write_text("Label: {{ label }}\n")
    with open(tmp_path / "task.yml", "a") as f:
        f.write("templates: {baseline_assistant: base.jinja}\n")
    task = TaskSpec.load(str(tmp_path / "task.yml"))
    with pytest.raises(DataError, match=r"base\.jinja: renders 'Label: positive'.*answer_prefix 'Answer:'"):
        check_templates(task, {"product": "film", "review": "fine", "label": "positive"})
