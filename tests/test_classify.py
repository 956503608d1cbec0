"""`orchestrate.py classify` and `pipeline.classify.Classifier` on the tiny demo's trained models.

The answers must be predict's: the same prompt, decoding and label parser, so a test text
classified here gets exactly the output `predict` wrote for it. Bad rows (empty, longer than
the model's context, not UTF-8, a broken JSONL line) get an `error` in their own row and never
stop or shorten the output. The Python API uses the profile's backend (vLLM when its
environment is present: one engine start for the module); the CLI runs use the transformers
backend, which starts in seconds and gives the same greedy outputs (tests/test_backends.py).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrate import main as orchestrate_main
from pipeline.classify import FIELDS, Classifier, Item, read_items
from pipeline.config import ROOT, RunContext
from pipeline.generation.shards import ShardStore
from pipeline.io import DataError, read_json, read_jsonl

LONG_TEXT = "i feel " + "very " * 3000 + "happy"
N = 8


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return Path(tiny_run).resolve()


@pytest.fixture(scope="module")
def test_rows(run_dir) -> list[dict]:
    return read_jsonl(run_dir / "data" / "task" / "test.jsonl")[:N]


def predicted(run_dir: Path, name: str) -> dict[str, dict]:
    """predict's rows by text, with the finish_reason its engine reported (kept in its shards)."""
    shards = {r["id"]: r for r in ShardStore(run_dir / "predictions" / f".work-{name}" / "shards").rows()}
    return {r["text"]: {**r, "finish_reason": shards[r["id"]]["finish_reason"]}
            for r in read_jsonl(run_dir / "predictions" / f"{name}.jsonl")}


def assert_matches_predict(rows: list[dict], run_dir: Path, name: str) -> None:
    want = predicted(run_dir, name)
    for row in rows:
        assert list(row) == list(FIELDS), row
        p = want[row["text"]]
        assert row["error"] is None
        assert (row["output"], row["label"], row["valid"], row["finish_reason"]) == \
            (p["output"], p["pred"], p["valid"], p["finish_reason"]), row["text"]


def classify_cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "classify", *args], cwd=ROOT,
                          input=stdin, capture_output=True, timeout=900, env={**os.environ, **(env or {})})
    print(proc.stderr.decode("utf-8", "replace")[-3000:])
    return proc


def json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode("utf-8").splitlines()]


# ---------------------------------------------------------------- the run directory's context
def test_context_from_run_dir_is_the_runs(run_dir):
    ctx = RunContext.from_run_dir(run_dir)
    manifest = read_json(run_dir / "manifest.json")
    assert ctx.profile == manifest["profile"] and ctx.profile["name"] == "tiny"
    assert ctx.task.name == "emotion" and str(ctx.task.path) == manifest["task"]["spec"]
    assert ctx.run_dir == run_dir and ctx.data_dir is None


def test_context_from_a_copied_run_dir(tmp_path):
    """A run directory copied from another checkout: the task spec is found by its name."""
    from pipeline.config import load_profile

    manifest = {"profile": load_profile("tiny"), "data_dir": "/data/emotion",
                "task": {"name": "emotion", "spec": "/elsewhere/tasks/emotion.yml"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    ctx = RunContext.from_run_dir(tmp_path, backend="transformers")
    assert ctx.task.path == ROOT / "tasks" / "emotion.yml" and ctx.data_dir == Path("/data/emotion")
    assert ctx.generation["backend"] == "transformers" and ctx.profile == manifest["profile"]
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(DataError, match=f"{tmp_path / 'manifest.json'}: not valid JSON"):
        RunContext.from_run_dir(tmp_path)


def test_missing_or_foreign_run_dir_exits_2_naming_it(tmp_path, capsys):
    for bad in (tmp_path / "nope", tmp_path):
        assert orchestrate_main(["classify", "--run-dir", str(bad), "hello"]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and "manifest.json" in err and "Traceback" not in err
        assert orchestrate_main(["export", "--run-dir", str(bad), "--out", str(tmp_path / "x")]) == 2
        assert str(bad) in capsys.readouterr().err


def test_absent_model_and_missing_csv_column_exit_2(run_dir, tmp_path, capsys):
    assert not (run_dir / "experiments" / "label_first").exists()
    assert orchestrate_main(["classify", "--run-dir", str(run_dir), "--model", "label_first", "hello"]) == 2
    err = capsys.readouterr().err
    assert "label_first" in err and "reasoning" in err and "baseline" in err  # names the models the run has
    assert "experiments --profile tiny" in err and "--only label_first" in err  # and how to train it
    csv_path = tmp_path / "texts.csv"
    csv_path.write_text("sentence,id\nhello,1\n", encoding="utf-8")
    assert orchestrate_main(["classify", "--run-dir", str(run_dir), "--input", str(csv_path)]) == 2
    err = capsys.readouterr().err
    assert str(csv_path) in err and "'text'" in err and "--text-field" in err


def test_readers_keep_every_row_and_mark_bad_ones():
    data = b"good one\n\nbad \xff byte\n  \nlast"
    items = read_items(data, "plain", "in.txt")
    assert [i.text for i in items] == ["good one", "", "bad \ufffd byte", "  ", "last"]
    assert [i.error for i in items][2].startswith("in.txt:3: not valid UTF-8")
    assert [i.error for i in items].count(None) == 4  # empty lines are judged by the classifier
    items = read_items(b'{"t": "a"}\n{not json\n{"x": 1}\n{"t": "b\xfe"}\n', "jsonl", "in.jsonl", "t")
    assert items[0] == Item("a") and items[1].error.startswith("in.jsonl:2: not valid JSON")
    assert items[2].error == "in.jsonl:3: no field 't' (use --text-field to name it)"
    assert items[3].text == "b\ufffd" and "not valid UTF-8" in items[3].error
    items = read_items('t,n\n"two\nlines",1\nplain,2\n'.encode(), "csv", "in.csv", "t")
    assert [i.text for i in items] == ["two\nlines", "plain"]


# ---------------------------------------------------------------- the Python API
@pytest.fixture(scope="module")
def api(run_dir, test_rows):
    """One Classifier (one engine) for two calls: test texts, then the bad inputs among them."""
    with Classifier.from_run_dir(run_dir) as clf:
        first = clf.classify([r["text"] for r in test_rows])
        worker = [p.pid for p in clf._session.procs]
        second = clf.classify(["", "   ", LONG_TEXT, test_rows[0]["text"], None])
        assert [p.pid for p in clf._session.procs] == worker  # the same engine answered both calls
        yield clf, first, second


def test_api_answers_what_predict_wrote(api, run_dir):
    clf, first, _ = api
    assert clf.model == "reasoning" and clf.model_dir == run_dir / "models" / "stage2"
    assert len(first) == N
    assert_matches_predict(first, run_dir, "reasoning")
    for row in first:
        if row["valid"]:  # the reasoning is the answer without its label line
            assert row["output"].startswith(row["reasoning"]) and "Label:" not in row["reasoning"]


def test_api_bad_inputs_get_their_own_error_row(api, run_dir):
    clf, first, second = api
    assert [r["text"] for r in second] == ["", "   ", LONG_TEXT, first[0]["text"], None]
    assert second[0]["error"] == second[1]["error"] == "empty text"
    assert second[2]["error"].startswith("text too long:") and f"context of {clf.context} tokens" in second[2]["error"]
    assert second[4]["error"] == "expected a text, got NoneType"
    for row in second[:3] + second[4:]:
        assert (row["label"], row["valid"], row["output"], row["finish_reason"]) == (None, False, None, None)
    assert second[3] == first[0]  # a good text among bad ones: the same answer


# ---------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def jsonl_run(run_dir, test_rows, tmp_path_factory):
    """`classify --input FILE.jsonl --output OUT`, good and bad rows mixed."""
    folder = tmp_path_factory.mktemp("classify-jsonl")
    src = folder / "in.jsonl"
    lines = [json.dumps({"id": i, "text": r["text"]}).encode() for i, r in enumerate(test_rows[:4])]
    lines[1:1] = [b'{"text": ""}', b'{"text": "' + LONG_TEXT.encode() + b'"}', b'{"text": "caf\xe9 ok"}',
                  b'{"text": broken', b'{"other": "no text field"}']
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = folder / "out.jsonl"
    proc = classify_cli("--run-dir", str(run_dir), "--backend", "transformers", "--input", str(src), "--output", str(out))
    return proc, read_jsonl(out) if out.exists() else [], test_rows[:4], src


def test_cli_jsonl_keeps_every_row_in_order(jsonl_run, run_dir):
    proc, rows, good, src = jsonl_run
    assert proc.returncode == 0 and proc.stdout == b""  # --output: nothing on stdout
    assert len(rows) == 9
    assert_matches_predict([rows[0]] + rows[6:], run_dir, "reasoning")
    assert rows[1]["error"] == "empty text"
    assert rows[2]["error"].startswith("text too long:")
    assert rows[3]["text"] == "caf\ufffd ok" and rows[3]["error"] == f"{src}:4: not valid UTF-8 (undecodable bytes shown as U+FFFD)"
    assert rows[4]["error"].startswith(f"{src}:5: not valid JSON")
    assert rows[5]["text"] is None and rows[5]["error"].startswith(f"{src}:6: no field 'text'")
    stderr = proc.stderr.decode()
    assert "classify[reasoning]" in stderr and "9/9" in stderr  # the progress bar over the file
    assert "9 rows, " in stderr and "5 not asked" in stderr


def test_cli_csv_with_text_field_baseline(run_dir, test_rows, tmp_path):
    src = tmp_path / "in.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["n", "sentence"])
        w.writerows([[i, r["text"]] for i, r in enumerate(test_rows)] + [[99, ""]])
    proc = classify_cli("--run-dir", str(run_dir), "--model", "baseline", "--backend", "transformers",
                        "--input", str(src), "--text-field", "sentence")
    assert proc.returncode == 0
    rows = json_lines(proc.stdout)
    assert len(rows) == N + 1 and rows[-1]["error"] == "empty text"
    assert_matches_predict(rows[:-1], run_dir, "baseline")
    assert all(r["reasoning"] is None for r in rows[:-1] if r["valid"])  # the baseline answers a label only


def test_cli_plain_file_stdin_and_arguments(run_dir, test_rows, tmp_path):
    texts = [r["text"] for r in test_rows[:3]]
    common = ("--run-dir", str(run_dir), "--model", "baseline", "--backend", "transformers")
    src = tmp_path / "in.txt"
    src.write_bytes("\n".join(texts).encode() + b"\n\nbad \xff\n")
    by_file = classify_cli(*common, "--input", str(src))
    by_stdin = classify_cli(*common, stdin=src.read_bytes())
    by_args = classify_cli(*common, *texts)
    assert by_file.returncode == by_stdin.returncode == by_args.returncode == 0
    file_rows, stdin_rows, arg_rows = (json_lines(p.stdout) for p in (by_file, by_stdin, by_args))
    assert_matches_predict(arg_rows, run_dir, "baseline")
    assert file_rows[:3] == stdin_rows[:3] == arg_rows
    assert [r["error"] for r in file_rows[3:]] == ["empty text", f"{src}:5: not valid UTF-8 (undecodable bytes shown as U+FFFD)"]
    assert [r["error"] for r in stdin_rows[3:]] == ["empty text", "<stdin>:5: not valid UTF-8 (undecodable bytes shown as U+FFFD)"]
    assert "5/5" in by_file.stderr.decode() and "5/5" not in by_stdin.stderr.decode()  # a bar on files only
