"""eval.metrics and eval.baselines on fixtures small enough to check by hand."""
import pytest

from eval.baselines import majority_baseline, run_reference_baselines, tfidf_logreg
from eval.metrics import INVALID, correctness, model_metrics, normalise_preds

LABELS = ["a", "b", "c"]
GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "b", None, "b", "a", "zzz"]  # None and an unknown label are both invalid


def test_invalid_outputs_count_as_wrong_and_are_counted():
    assert normalise_preds(PRED, LABELS) == ["a", "b", INVALID, "b", "a", INVALID]
    assert correctness(GOLD, PRED, LABELS).tolist() == [True, False, False, True, False, False]
    m = model_metrics(GOLD, PRED, LABELS)
    assert m["n"] == 6
    assert m["invalid"] == 2
    assert m["accuracy"] == pytest.approx(2 / 6)


def test_per_class_and_macro_f1_by_hand():
    m = model_metrics(GOLD, PRED, LABELS)
    pc = m["per_class"]
    # a: predicted a at rows 0 and 4 (one right) -> P 1/2; 1 of 3 gold a found -> R 1/3; F1 0.4
    assert pc["a"] == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "support": 3})
    assert pc["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # c: never predicted (its only example got an invalid output): all zero, no warning-NaN
    assert pc["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    # macro over the three labels only; the invalid sentinel is not a class
    assert m["macro_f1"] == pytest.approx((0.4 + 0.5 + 0.0) / 3)


def test_confusion_rows_are_gold_in_label_order_and_invalid_kept_aside():
    m = model_metrics(GOLD, PRED, LABELS)
    assert m["confusion"] == [[1, 1, 0],
                              [1, 1, 0],
                              [0, 0, 0]]
    assert m["invalid_by_gold"] == [1, 0, 1]
    for row, inv, lab in zip(m["confusion"], m["invalid_by_gold"], LABELS):
        assert sum(row) + inv == m["per_class"][lab]["support"]


def test_tokens_and_seconds_average_known_values_and_none_when_unknown():
    m = model_metrics(GOLD, PRED, LABELS, output_tokens=[10, 20, None, 30, 40, 50],
                      seconds=[0.5] * 6)
    assert m["mean_output_tokens"] == pytest.approx(30.0)
    assert m["seconds_per_example"] == pytest.approx(0.5)
    m2 = model_metrics(GOLD, PRED, LABELS)
    assert m2["mean_output_tokens"] is None and m2["seconds_per_example"] is None


def test_gold_outside_labels_is_an_error():
    with pytest.raises(ValueError, match="not among the task labels"):
        model_metrics(["a", "x"], ["a", "a"], LABELS)


def test_majority_baseline_picks_most_frequent_and_breaks_ties_by_label_order():
    assert majority_baseline(["b", "a", "b"], ["t1", "t2"], LABELS) == ["b", "b"]
    assert majority_baseline(["c", "b", "b", "c"], ["t"], LABELS) == ["b"]


def test_tfidf_logreg_learns_keyword_task():
    train_texts = [f"{w} filler {i}" for i in range(20) for w in ("happy", "angry", "scared")]
    train_labels = [lab for _ in range(20) for lab in ("joy", "anger", "fear")]
    preds = tfidf_logreg(train_texts, train_labels, ["so happy today", "very angry now", "scared stiff"])
    assert preds == ["joy", "anger", "fear"]


def test_reference_baselines_report_predictions_in_test_order_and_timings():
    train = [{"id": i, "text": t, "label": lab} for i, (t, lab) in
             enumerate([("good good", "a")] * 5 + [("bad bad", "b")] * 3)]
    test = [{"id": "t1", "text": "bad"}, {"id": "t2", "text": "good"}]
    out = run_reference_baselines(train, test, ["a", "b"])
    assert out["majority"]["pred"] == ["a", "a"]
    assert out["tfidf_logreg"]["pred"] == ["b", "a"]
    assert out["tfidf_logreg"]["train_seconds"] > 0
    assert out["tfidf_logreg"]["seconds_per_example"] >= 0
