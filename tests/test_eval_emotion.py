"""run_evaluate on the real emotion split (when ../shared/data/emotion exists) with synthetic LLM predictions.

Checks the reference baselines reproduce the known numbers (TF-IDF+LR 0.885 / macro-F1 0.834,
always-joy 0.3475) and that a built-in 50% -> 58% accuracy gain is found significant. The data is
read in place and written only under tmp_path; it is never copied into the project.
"""
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar

from eval.evaluate import run_evaluate
from pipeline.io import atomic_write_jsonl

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
PAPER = {"accuracy": {"baseline": 0.497, "reasoning": 0.584},
         "recall": {"surprise": {"baseline": 0.138, "reasoning": 0.015}}}
REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [Path("/work/shared/data/emotion"), REPO.parent / "shared" / "data" / "emotion"]
DATA = next((p for p in CANDIDATES if (p / "train.txt").exists() and (p / "test.txt").exists()), None)


def read_text_split(path: Path, split: str) -> list[dict]:
    """`text;label` lines, split on the LAST semicolon, blank lines skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        text, label = line.rsplit(";", 1)
        rows.append({"id": f"{split}-{len(rows):05d}", "text": text, "label": label.strip()})
    return rows


def synthetic_predictions(test: list[dict], n_right: int, rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    """Exactly n_right correct rows at random positions; the rest a wrong label or (1 in 10) invalid."""
    right = np.zeros(len(test), dtype=bool)
    right[rng.choice(len(test), size=n_right, replace=False)] = True
    rows = []
    for row, ok in zip(test, right):
        if ok:
            pred = row["label"]
        elif rng.random() < 0.1:
            pred = None
        else:
            pred = str(rng.choice([lab for lab in LABELS if lab != row["label"]]))
        rows.append({"id": row["id"], "text": row["text"], "gold": row["label"], "pred": pred,
                     "output": "", "output_tokens": 5, "prompt_tokens": 50, "seconds": 0.02})
    return rows, right


@pytest.mark.skipif(DATA is None, reason="no ../shared/data/emotion (train.txt, test.txt) on this machine")
def test_reference_baselines_and_significance_on_real_emotion_data(tmp_path):
    train, test = read_text_split(DATA / "train.txt", "train"), read_text_split(DATA / "test.txt", "test")
    assert (len(train), len(test)) == (16000, 2000)
    run = tmp_path / "run"
    atomic_write_jsonl(run / "data" / "task" / "train.jsonl", train)
    atomic_write_jsonl(run / "data" / "task" / "test.jsonl", test)
    rng = np.random.default_rng(2507)
    base_rows, b = synthetic_predictions(test, 1000, rng)   # 50%
    reas_rows, r = synthetic_predictions(test, 1160, rng)   # 58%
    atomic_write_jsonl(run / "predictions" / "baseline.jsonl", base_rows)
    atomic_write_jsonl(run / "predictions" / "reasoning.jsonl", reas_rows)

    m = run_evaluate([run], run, LABELS, PAPER)

    tfidf, majority = m["models"]["tfidf_logreg"], m["models"]["majority"]
    assert tfidf["accuracy"] == pytest.approx(0.885, abs=0.01)
    assert tfidf["macro_f1"] == pytest.approx(0.834, abs=0.01)
    assert majority["accuracy"] == pytest.approx(0.3475)  # always joy: 695 / 2000
    assert m["models"]["baseline"]["accuracy"] == pytest.approx(0.50)
    assert m["models"]["reasoning"]["accuracy"] == pytest.approx(0.58)

    c = m["comparisons"][0]
    b01, b10 = int(np.sum(b & ~r)), int(np.sum(~b & r))
    assert (c["b01"], c["b10"], c["method"]) == (b01, b10, "chi2")
    assert c["pvalue"] == pytest.approx(mcnemar([[0, b01], [b10, 0]], exact=False, correction=True).pvalue)
    assert c["significant"] is True
    assert c["acc_diff"] == pytest.approx(0.08)
    assert 0 < c["ci95"][0] < 0.08 < c["ci95"][1]
    support = {lab: sum(1 for t in test if t["label"] == lab) for lab in LABELS}
    assert {lab: m["models"]["baseline"]["per_class"][lab]["support"] for lab in LABELS} == support
    assert support["surprise"] == 66
    report = (run / "report.md").read_text()
    assert "tfidf_logreg" in report and "0.497" in report
    for section in ("## Model metrics", "## Per-class metrics", "## Reference baselines", "## Baseline vs reasoning",
                    "## Paper vs this run", "## Timing (not reproducible)", "## Confusion matrices", "## Plots"):
        assert section in report, section
    pngs = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert len(pngs) >= 4 and all((run / p).is_file() for p in pngs)
