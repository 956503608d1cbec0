"""The follow-up experiments (pipeline/experiments): noise injection, balanced sampling, the reading of
a reasoning's own verdict, and every experiment end to end on the tiny run through the real CLI."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import orchestrate

EMOTION = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def _rows(counts: dict[str, int]) -> list[dict]:
    return [{"id": f"{lab}-{i}", "label": lab} for lab, n in counts.items() for i in range(n)]


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5, 1.0])
def test_noise_replaces_the_fraction_with_another_labels_reasoning(fraction):
    from pipeline.experiments.noise import inject_noise

    rows = _rows({"joy": 50, "sadness": 30, "surprise": 3, "fear": 17})
    label = {r["id"]: r["label"] for r in rows}
    swap = inject_noise(rows, fraction, seed=0)
    assert len(swap) == round(fraction * len(rows))
    assert all(donor != own and label[donor] != label[own] for own, donor in swap.items())
    assert swap == inject_noise(rows, fraction, seed=0)  # seeded
    if 0 < fraction < 1:
        assert swap != inject_noise(rows, fraction, seed=1)


def test_noise_needs_two_labels():
    from pipeline.experiments.noise import inject_noise

    with pytest.raises(ValueError, match="same label"):
        inject_noise(_rows({"joy": 10}), 0.2, seed=0)


def test_balanced_sample_takes_as_many_of_each_class_in_order():
    from pipeline.experiments.balanced import balanced_sample

    rows = _rows({"joy": 40, "sadness": 12, "surprise": 5})
    sample = balanced_sample(rows, ["joy", "sadness", "surprise"], 5, seed=3)
    assert Counter(r["label"] for r in sample) == {"joy": 5, "sadness": 5, "surprise": 5}
    assert len({r["id"] for r in sample}) == 15
    order = [r["id"] for r in rows]
    assert [order.index(r["id"]) for r in sample] == sorted(order.index(r["id"]) for r in sample)
    with pytest.raises(ValueError, match="surprise"):
        balanced_sample(rows, ["joy", "sadness", "surprise"], 6, seed=3)


@pytest.mark.parametrize("reasoning,label", [
    ("She lost her dog. Therefore the emotion is sadness.", "sadness"),
    ("It might be fear at first. Overall the emotion is joy, not anger.", "joy"),
    ("The writer is thrilled. This shows joy.", "joy"),        # no verdict phrase: the last sentence
    ("It is not anger but fear.", "fear"),                      # a negated label is not concluded
    ("The emotion is joy or love.", None),                      # two labels: undecided
    ("The text says 'i feel angry'. Nothing more.", None),      # no label asserted
    ("", None),
])
def test_concluded_label(reasoning, label):
    from postprocess.reasoning import concluded_label

    assert concluded_label(reasoning, EMOTION) == label


def test_faithfulness_reads_the_reasoning_without_its_label_line():
    from pipeline.experiments.faithfulness import agreement, implied_labels

    train = [{"reasoning": f"the writer feels {w} about it", "label": lab}
             for lab, w in [("joy", "happy"), ("sadness", "sad"), ("anger", "angry")] for _ in range(5)]
    preds = [  # the label line names joy; the reasoning argues sadness: unfaithful
        {"id": "1", "text": "x", "pred": "joy", "output": "The writer feels sad. The emotion is sadness.\n\nLabel: joy"},
        {"id": "2", "text": "y", "pred": "anger", "output": "The writer feels angry. The emotion is anger.\n\nLabel: anger"},
        {"id": "3", "text": "z", "pred": None, "output": "Label: nonsense"}]
    rows = implied_labels(preds, train, ["joy", "sadness", "anger"], "Label:")
    assert [r["reasoning"] for r in rows] == ["The writer feels sad. The emotion is sadness.",
                                             "The writer feels angry. The emotion is anger.", None]
    assert [r["parser"] for r in rows] == ["sadness", "anger", None]
    assert [r["reference"] for r in rows] == ["sadness", "anger", None]
    table = {r["final_label"]: r for r in agreement(rows, ["joy", "sadness", "anger"])}
    assert table["(all)"]["n"] == 2 and table["(all)"]["parser_agree"] == 0.5
    assert table["joy"]["reference_agree"] == 0.0 and table["anger"]["reference_agree"] == 1.0
    assert table["sadness"]["n"] == 0 and table["sadness"]["parser_agree"] is None


def test_experiments_refuse_an_unfinished_run(tmp_path, capsys):
    from orchestrate import main

    assert main(["experiments", "--profile", "tiny", "--run-dir", str(tmp_path / "none")]) == 2
    assert "main run is not finished" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


SECTIONS = {"balanced": "balanced_per_class", "noise": "noise_curve", "latency": "latency",
            "faithfulness": "faithfulness_agreement", "minority": "minority_recall", "label_first": "label_first_models"}


def test_every_experiment_end_to_end(tiny_run, tmp_path):
    """`orchestrate.py experiments` on a copy of the tiny run: every experiment's folder, metrics key and
    report section; a second call skips them all and keeps the report."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock", "experiments"))
    out = orchestrate("experiments", "--profile", "tiny", "--run-dir", str(run), timeout=3600).stdout
    assert "[experiment balanced] running" in out
    check_experiments(run)


def check_experiments(run):
    """What `orchestrate.py experiments --profile tiny` must leave in `run`; then a second call skips all."""
    metrics = json.loads((run / "metrics.json").read_text())
    report = (run / "report.md").read_text()
    assert set(metrics["experiments"]) == set(SECTIONS)
    assert "## Summary" in report  # the main report is kept above the experiments
    for name, table in SECTIONS.items():
        assert f"## Experiment `{name}`" in report and f"`{table}`:" in report
        assert (run / "experiments" / name / "result.json").exists()
        assert (run / "experiments" / name / "tables" / f"{table}.csv").exists()
    ex = metrics["experiments"]
    arms = {a["arm"]: a for a in ex["balanced"]["arms"]}
    assert arms["baseline"]["ids_sha256"] == arms["reasoning"]["ids_sha256"]
    assert arms["baseline"]["optimizer_steps"] == arms["reasoning"]["optimizer_steps"] == 30
    assert ex["balanced"]["comparison"]["n"] == 8 * len(EMOTION)
    curve = {c["fraction"]: c for c in ex["noise"]["curve"]}
    assert set(curve) == {0.0, 0.5} and curve[0.0]["replaced"] == 0
    assert curve[0.5]["replaced"] == round(0.5 * curve[0.5]["rows"])
    minority = {a["arm"]: a for a in ex["minority"]["arms"]}
    assert set(minority) == {"plain", "quality_filter", "extra_reasonings", "balanced_sampling"}
    # the plain recipe is noise's fraction-0 arm: trained once, shared
    assert minority["plain"]["model_dir"] == ex["noise"]["arms"][0]["model_dir"]
    assert (run / "experiments" / "minority" / "review_sheet.csv").exists()
    assert {(r["model"], str(r["batch_size"])) for r in ex["latency"]["timing"]} == \
        {(m, b) for m in ("baseline", "reasoning") for b in ("1", "8", "all")}
    assert (run / ex["latency"]["plot"]).exists()
    lf = ex["label_first"]
    assert lf["arms"][0]["optimizer_steps"] == lf["main_training"]["optimizer_steps"]
    assert lf["models"]["label_first"]["mean_output_tokens"] < lf["models"]["reasoning"]["mean_output_tokens"]
    check_classify_label_first(run, lf)
    again = orchestrate("experiments", "--profile", "tiny", "--run-dir", str(run)).stdout
    assert again.count("up to date, skipped") == len(SECTIONS) and "training arm" not in again
    assert (run / "report.md").read_text().count("## Experiment `") == len(SECTIONS)


def check_classify_label_first(run, lf):
    """`classify --model label_first` answers with the experiment's model, through predict's code path
    (the in-process backend: same greedy answers as the experiment's vLLM predictions)."""
    from pipeline.classify import Classifier
    from pipeline.io import read_jsonl

    want = read_jsonl(run / "experiments" / "label_first" / "predictions" / "label_first.jsonl")[:3]
    with Classifier.from_run_dir(run, "label_first", backend="transformers") as clf:
        assert clf.model_dir == Path(lf["arms"][0]["model_dir"]) and "label_first" in clf.available(clf.ctx)
        got = clf.classify([r["text"] for r in want])
    assert [r["label"] for r in got] == [r["pred"] for r in want]
