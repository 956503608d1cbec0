"""Sentence-pair tasks by configuration alone: a spec with several text fields (`inputs`), the
shipped NLI spec (tasks/snli.yml) read from a local file in its hub layout, the synthetic
sentence-pair data of the tiny profile, and the pair rendering every stage and `classify` share.
The end-to-end run of a pair task is examples/own_task (tests/test_own_task.py)."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest

from pipeline import prompts
from pipeline.classify import Item, _check_input, read_items
from pipeline.config import ROOT, RunContext, TaskSpec, load_profile
from pipeline.data import load_task_splits
from pipeline.io import DataError, read_jsonl
from pipeline.synthetic import _ACTS, _EXTRAS, _PEOPLE, make_pair_split, tokenizer_corpus

SNLI_FIXTURE = ROOT / "tests" / "fixtures" / "snli"
NLI = ["entailment", "neutral", "contradiction"]


def _spec(tmp_path, body: str, template: str = "P: {{ premise }}\nH: {{ hypothesis }}\n") -> str:
    (tmp_path / "q.jinja").write_text(template)
    (tmp_path / "t.yml").write_text("name: t\nlabels: [entailment, neutral, contradiction]\nquestion_template: q.jinja\n"
                                    "answer_prefix: 'Label:'\n" + body)
    return str(tmp_path / "t.yml")


def _ctx(tmp_path, task: str, profile: str = "tiny", **task_data) -> RunContext:
    prof = load_profile(profile)
    prof["task_data"].update(task_data)
    return RunContext(prof, TaskSpec.load(task), tmp_path / "run")


# ---------------------------------------------------------------- the NLI spec
def test_snli_spec_names_the_hub_datasets_real_layout():
    task = TaskSpec.load("snli")
    assert task.inputs == ["premise", "hypothesis"]
    assert task.labels == NLI  # ClassLabel order of stanfordnlp/snli: 0, 1, 2
    assert task.hub == {"path": "stanfordnlp/snli", "name": "plain_text", "splits": {"train": "train", "test": "test"}}
    assert task.unlabeled == [-1]


def test_snli_spec_loads_its_hub_layout_from_a_local_file(tmp_path, monkeypatch):
    """The shipped spec as the paper profile uses it (task_data.source: hub), with the hub read
    replaced by the local fixture in the same columns; unlabeled (-1) rows are left out and counted."""
    asked = []

    def fake_hub(path, split, name=None):
        asked.append((path, name, split))
        return read_jsonl(SNLI_FIXTURE / f"{split}.jsonl")

    monkeypatch.setattr("pipeline.data.read_hub", fake_hub)
    ctx = _ctx(tmp_path, "snli", profile="paper")
    counts = {}
    splits = load_task_splits(ctx, counts)
    assert asked == [("stanfordnlp/snli", "plain_text", "train"), ("stanfordnlp/snli", "plain_text", "test")]
    assert counts == {"unlabeled_train": 1, "unlabeled_test": 1}
    assert [r["label"] for r in splits["train"]] == ["entailment", "neutral", "contradiction", "entailment",
                                                     "contradiction", "neutral", "entailment"]
    first = splits["train"][0]
    assert first["inputs"] == {"premise": "A woman in a green jacket is riding a horse along a beach.",
                               "hypothesis": "A person is riding an animal."}
    assert first["text"] == ("premise: A woman in a green jacket is riding a horse along a beach.\n"
                             "hypothesis: A person is riding an animal.")
    assert [r["id"] for r in splits["test"]] == ["test-00000", "test-00001", "test-00002"]
    question = prompts.question(ctx.task, first)
    assert "Premise: A woman in a green jacket" in question and "Hypothesis: A person is riding an animal." in question
    assert "entailment, neutral, contradiction" in question


def test_snli_layout_as_your_own_files_and_without_unlabeled(tmp_path):
    """The same fixture as a spec's own `files`; without `unlabeled` a -1 row is a clear error."""
    for f in ("snli.yml", "snli_question.jinja"):
        shutil.copy(ROOT / "tasks" / f, tmp_path / f)
    spec = (tmp_path / "snli.yml").read_text()
    files = f"files: {{train: {SNLI_FIXTURE / 'train.jsonl'}, test: {SNLI_FIXTURE / 'test.jsonl'}}}\n"
    (tmp_path / "snli.yml").write_text(spec + files)
    splits = load_task_splits(_ctx(tmp_path, str(tmp_path / "snli.yml")))
    assert (len(splits["train"]), len(splits["test"])) == (7, 3)
    (tmp_path / "snli.yml").write_text(spec.replace("unlabeled: [-1]\n", "") + files)
    with pytest.raises(DataError, match=r"fixtures/snli/train\.jsonl:5: field 'label' is -1, not one of"):
        load_task_splits(_ctx(tmp_path, str(tmp_path / "snli.yml")))


# ---------------------------------------------------------------- spec errors
@pytest.mark.parametrize("body, message", [
    ("inputs: [premise, hypothesis]\ncolumns: {premis: s1, label: y}\n",
     r"t\.yml:6: field 'columns' maps \['premis'\], which the task does not have"),
    ("inputs: [premise, label]\n", r"t\.yml:5: field 'inputs' must list"),
    ("inputs: premise\n", r"t\.yml:5: field 'inputs' must list"),
    ("inputs: [premise, hypothesis]\ntext_files: {train: a.txt, test: b.txt}\n",
     r"t\.yml:6: field 'text_files' reads `text;label` lines"),
    ("input: [premise, hypothesis]\n", r"t\.yml:5: unknown field 'input' in the task spec; did you mean 'inputs'"),
])
def test_bad_pair_spec_fields_are_named_with_their_line(tmp_path, body, message):
    with pytest.raises(DataError, match=message):
        TaskSpec.load(_spec(tmp_path, body))


def test_a_label_the_train_rows_lack_is_refused_naming_file_and_column(tmp_path):
    (tmp_path / "train.csv").write_text("s1,s2,y\na,b,entailment\nc,d,neutral\ne,f,entailment\n")
    (tmp_path / "test.csv").write_text("s1,s2,y\ng,h,contradiction\n")
    task = _spec(tmp_path, "inputs: [premise, hypothesis]\ncolumns: {premise: s1, hypothesis: s2, label: y}\n"
                           "files: {train: train.csv, test: test.csv}\n")
    with pytest.raises(DataError, match=r"train\.csv: field 'label' \(column 'y'\): the label\(s\) \['contradiction'\] "
                                        r"of `labels` in .*t\.yml never occur in the first 400 rows"):
        load_task_splits(_ctx(tmp_path, task))
    (tmp_path / "train.csv").write_text("s1,s2,y\na,b,entailment\nc, ,neutral\n")
    with pytest.raises(DataError, match=r"train\.csv:3: column 's2' \(hypothesis\) is empty"):
        load_task_splits(_ctx(tmp_path, task))


def test_a_template_must_use_the_spec_s_field_names(tmp_path):
    task = TaskSpec.load(_spec(tmp_path, "inputs: [premise, hypothesis]\n", template="{{ text }}\n"))
    with pytest.raises(DataError, match=r"q\.jinja:1: 'text' is undefined; fields given: \['hypothesis', 'labels', "
                                        r"'premise'\]"):
        prompts.question(task, {"premise": "a", "hypothesis": "b"})
    task = TaskSpec.load(_spec(tmp_path, "inputs: [premise, hypothesis]\n"))
    with pytest.raises(DataError, match=r"asks for the fields \['premise', 'hypothesis'\], got one text"):
        prompts.question(task, "a lone text")


# ---------------------------------------------------------------- one rendering everywhere
def test_every_stage_renders_both_fields_from_the_same_row(tmp_path):
    """prepare's rows feed generate, build-stage2 and predict; each builds its user turn from the
    row's fields with the same function, so training and inference ask the same words."""
    ctx = _ctx(tmp_path, "snli")
    row = load_task_splits(ctx)["train"][0]
    user = prompts.question(ctx.task, row)
    p, h = row["inputs"]["premise"], row["inputs"]["hypothesis"]
    assert f"Premise: {p}\nHypothesis: {h}" in user
    stage2 = prompts.classify_messages(ctx.task, row, prompts.stage2_answer(ctx.task, "Because.", row["label"]))
    baseline = prompts.classify_messages(ctx.task, row, prompts.baseline_answer(ctx.task, row["label"]))
    asked = prompts.classify_messages(ctx.task, row)
    classify = prompts.classify_messages(ctx.task, {"premise": p, "hypothesis": h})
    assert stage2[0] == baseline[0] == asked[0] == classify[0] == {"role": "user", "content": user}
    assert user in prompts.generation_messages(ctx.task, row, row["label"])[0]["content"]


# ---------------------------------------------------------------- synthetic pairs (tiny profile)
def test_synthetic_pairs_follow_their_label():
    train, test = make_pair_split(300, 60, NLI, ["premise", "hypothesis"], seed=1, noise=0.0)
    assert Counter(r["label"] for r in train) == {"entailment": 100, "neutral": 100, "contradiction": 100}
    pairs = [(r["premise"], r["hypothesis"]) for r in train + test]
    assert len(set(pairs)) == len(pairs)
    for r in train:
        who = next(p for p in _PEOPLE if r["premise"].startswith(p + " is "))
        act = next(a for a in _ACTS if f" is {a[0]} " in r["premise"])
        where = r["premise"].split(f" is {act[0]} ")[1]
        allowed = {"entailment": {f"someone is {act[1]}", f"{who} is {act[1]}", f"a person is {act[0]} {where}"},
                   "contradiction": {f"{who} is {act[2]}", f"nobody is {act[0]}", f"{who} is {act[2]} {where}"},
                   "neutral": {f"{who} is {act[0]} {extra}" for extra in _EXTRAS}}[r["label"]]
        assert r["hypothesis"] in allowed, r
    assert make_pair_split(40, 10, NLI, ["p", "h"], seed=2) == make_pair_split(40, 10, NLI, ["p", "h"], seed=2)
    noisy, _ = make_pair_split(300, 0, NLI, ["p", "h"], seed=1)  # 5% label noise: the counts stay exact
    assert Counter(r["label"] for r in noisy) == Counter(r["label"] for r in train)


def test_synthetic_pairs_for_any_labels_and_the_tiny_task(tmp_path):
    labels = [f"class{i}" for i in range(20)]
    train, _ = make_pair_split(200, 40, labels, ["left", "right"], seed=0)
    assert set(r["label"] for r in train) == set(labels) and set(train[0]) == {"left", "right", "label"}
    with pytest.raises(ValueError, match="two text fields"):
        make_pair_split(10, 5, NLI, ["only"])
    ctx = _ctx(tmp_path, "snli")  # the tiny profile: task_data.source synthetic
    splits = load_task_splits(ctx)
    assert (len(splits["train"]), len(splits["test"])) == (600, 200)
    assert set(splits["test"][0]["inputs"]) == {"premise", "hypothesis"}
    corpus = tokenizer_corpus(NLI, "Label:", ["premise", "hypothesis"])
    assert any(line.startswith("hypothesis: ") for line in corpus)
    assert not any(line.startswith("hypothesis: ") for line in tokenizer_corpus(NLI, "Label:"))


# ---------------------------------------------------------------- classify a pair
def test_classify_reads_pairs_from_jsonl_and_csv():
    fields = ["premise", "hypothesis"]
    jsonl = b'{"premise": "a dog runs", "hypothesis": "an animal moves"}\n{"premise": "x"}\nnot json\n'
    items = read_items(jsonl, "jsonl", "in.jsonl", fields=fields)
    assert items[0] == Item({"premise": "a dog runs", "hypothesis": "an animal moves"})
    assert items[1].text is None and "in.jsonl:2: no field(s) ['hypothesis']" in items[1].error
    assert "in.jsonl:3: not valid JSON" in items[2].error
    csv = b"hypothesis,premise\nan animal moves,a dog runs\n"
    assert read_items(csv, "csv", "in.csv", fields=fields) == [Item({"premise": "a dog runs",
                                                                     "hypothesis": "an animal moves"})]
    with pytest.raises(DataError, match=r"in\.csv:1: no column\(s\) \['premise'\] in the CSV header"):
        read_items(b"hypothesis\nx\n", "csv", "in.csv", fields=fields)
    with pytest.raises(DataError, match="give JSONL .* or CSV"):
        read_items(b"a dog runs\n", "plain", "in.txt", fields=fields)


def test_classify_checks_each_field_before_asking():
    task = TaskSpec.load("snli")
    assert _check_input(task, {"premise": "a", "hypothesis": "b"}) is None
    assert _check_input(task, {"premise": "a", "hypothesis": " "}) == "empty text in field 'hypothesis'"
    assert "missing ['hypothesis']" in _check_input(task, {"premise": "a"})
    assert "expected the fields ['premise', 'hypothesis']" in _check_input(task, "a lone text")
    assert _check_input(TaskSpec.load("emotion"), "i feel fine") is None
