"""run_evaluate end to end on small run directories built in tmp_path."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from eval.evaluate import run_evaluate
from eval.report import to_markdown
from pipeline.io import atomic_write_jsonl

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
WORDS = {"sadness": "tears", "joy": "sunshine", "love": "darling", "anger": "furious", "fear": "terrified",
         "surprise": "astonished"}
PAPER = {"accuracy": {"baseline": 0.497, "reasoning": 0.584},
         "recall": {"surprise": {"baseline": 0.138, "reasoning": 0.015}}}
SECTIONS = ["## Runs", "## Summary", "## Model metrics", "## Per-class metrics", "## Reference baselines",
            "## Baseline vs reasoning (McNemar)", "### Per-class McNemar (Holm-adjusted)", "## Paper vs this run",
            "## Timing (not reproducible)", "## Confusion matrices", "## Plots"]


def make_run(root: Path, seed: int = 0, n_test: int = 60, b_right: float = 0.5, r_right: float = 0.8,
             models=("baseline", "reasoning")) -> tuple[Path, dict]:
    """A run dir with a keyword-learnable task; predictions right with the given rates (seeded).

    Returns the run dir and the correctness vectors that were built in, for checking.
    """
    rng = np.random.default_rng(seed)
    train = [{"id": f"train-{i:05d}", "text": f"i feel {WORDS[lab]} today number {i}", "label": lab}
             for i, lab in enumerate([LABELS[i % 6] for i in range(120)] + ["joy"] * 10)]  # joy: majority
    gold = [LABELS[i % 6] if i % 5 else "joy" for i in range(n_test)]  # joy is the majority class
    test = [{"id": f"test-{i:05d}", "text": f"so {WORDS[g]} right now {i}", "label": g} for i, g in enumerate(gold)]
    atomic_write_jsonl(root / "data" / "task" / "train.jsonl", train)
    atomic_write_jsonl(root / "data" / "task" / "test.jsonl", test)
    built = {}
    for model, rate, tokens in (("baseline", b_right, 3), ("reasoning", r_right, 80)):
        right = rng.random(n_test) < rate
        built[model] = right
        if model not in models:
            continue
        rows = []
        for i, (row, ok) in enumerate(zip(test, right)):
            if ok:
                pred = row["label"]
            elif i % 7 == 0:
                pred = None  # invalid output
            else:
                pred = LABELS[(LABELS.index(row["label"]) + 1) % 6]
            rows.append({"id": row["id"], "text": row["text"], "gold": row["label"], "pred": pred,
                         "output": f"Label: {pred}", "output_tokens": tokens + i % 3, "prompt_tokens": 40,
                         "seconds": 0.01 * tokens})
        rng.shuffle(rows)  # rows pair by id, not by position
        atomic_write_jsonl(root / "predictions" / f"{model}.jsonl", rows)
    return root, built


def test_single_run_metrics_json_matches_contract(tmp_path):
    run, built = make_run(tmp_path / "run")
    m = run_evaluate([run], run, LABELS, PAPER)
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    for name in ("baseline", "reasoning", "majority", "tfidf_logreg"):
        mm = on_disk["models"][name]
        for key in ("accuracy", "macro_f1", "per_class", "invalid", "n", "confusion", "mean_output_tokens"):
            assert key in mm, (name, key)
        assert "seconds_per_example" not in mm  # wall-clock figures live in the timing block only
        assert set(mm["per_class"]) == set(LABELS)
        assert set(mm["per_class"]["joy"]) >= {"precision", "recall", "f1", "support"}
        assert np.asarray(mm["confusion"]).shape == (6, 6)
        assert mm["n"] == 60
    b, r = built["baseline"], built["reasoning"]
    assert on_disk["models"]["baseline"]["accuracy"] == pytest.approx(b.mean())
    assert on_disk["models"]["reasoning"]["accuracy"] == pytest.approx(r.mean())
    assert on_disk["models"]["baseline"]["invalid"] == sum(1 for i in range(60) if not b[i] and i % 7 == 0)
    assert on_disk["models"]["reasoning"]["mean_output_tokens"] == pytest.approx(np.mean([80 + i % 3 for i in range(60)]))
    assert on_disk["timing"]["models"]["reasoning"]["wall_seconds_per_example"] == pytest.approx(0.8)
    assert on_disk["timing"]["models"]["tfidf_logreg"]["train_seconds"] > 0
    assert on_disk["models"]["majority"]["accuracy"] == pytest.approx(sum(1 for i in range(60) if i % 5 == 0 or i % 6 == 1) / 60)
    assert on_disk["models"]["tfidf_logreg"]["accuracy"] == 1.0  # keyword task
    assert on_disk["models"]["majority"]["mean_output_tokens"] is None

    c = on_disk["comparisons"][0]
    assert (c["a"], c["b"]) == ("baseline", "reasoning")
    assert c["b01"] == int(np.sum(b & ~r)) and c["b10"] == int(np.sum(~b & r))
    assert c["method"] == ("exact" if c["b01"] + c["b10"] < 25 else "chi2")
    if c["method"] == "exact":
        assert c["pvalue"] == pytest.approx(binomtest(min(c["b01"], c["b10"]), c["b01"] + c["b10"]).pvalue)
    assert c["significant"] == (c["pvalue"] < 0.05)
    assert c["acc_diff"] == pytest.approx(r.mean() - b.mean())
    assert c["ci95"][0] <= c["acc_diff"] <= c["ci95"][1]
    gold = np.array([LABELS[i % 6] if i % 5 else "joy" for i in range(60)])
    for lab in LABELS:
        pc = c["per_class"][lab]
        mask = gold == lab
        assert pc["b01"] == int(np.sum(b[mask] & ~r[mask])) and pc["b10"] == int(np.sum(~b[mask] & r[mask]))
        assert pc["pvalue_holm"] >= pc["pvalue"]
        assert pc["significant"] == (pc["pvalue_holm"] < 0.05)
    assert on_disk["runs"] == [str(run)]
    assert "aggregate" not in on_disk


def test_report_has_every_section_and_every_embedded_png_exists(tmp_path):
    run, _ = make_run(tmp_path / "run")
    out = tmp_path / "out"
    run_evaluate([run], out, LABELS, PAPER)
    text = (out / "report.md").read_text()
    for s in SECTIONS:
        assert s in text, s
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 4 + 2  # a confusion matrix per model, recall, accuracy vs tokens
    for rel in images:
        assert not Path(rel).is_absolute()
        png = out / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
    for name in ("models", "per_class", "comparison", "per_class_mcnemar", "paper_side_by_side",
                 "paper_vs_run", "timing", "reference_baselines", "confusion_baseline"):
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0, name
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temp files behind
    # the paper's numbers stand next to this run's
    side = text.split("## Paper vs this run")[1]
    assert "0.497" in side and "0.584" in side and "0.138" in side and "0.015" in side


def test_missing_prediction_file_still_reports_what_exists(tmp_path):
    run, _ = make_run(tmp_path / "run", models=("baseline",))
    m = run_evaluate([run], run, LABELS, None)  # also: no paper reference at all
    assert set(m["models"]) == {"baseline", "majority", "tfidf_logreg"}
    assert m["comparisons"] == []
    assert any("reasoning.jsonl is missing" in n for n in m["notes"])
    text = (run / "report.md").read_text()
    assert "## Reference baselines" in text and "tfidf_logreg" in text
    assert "_Not available" in text
    assert m["paper_comparison"] == [] and "## Paper vs this run" in text


def test_several_runs_aggregate_mean_and_spread(tmp_path):
    runs = [make_run(tmp_path / f"seed{s}", seed=s)[0] for s in range(3)]
    out = tmp_path / "agg"
    m = run_evaluate(runs, out, LABELS, PAPER)
    accs = [r["models"]["reasoning"]["accuracy"] for r in m["per_run"]]
    agg = m["aggregate"]["reasoning"]["accuracy"]
    assert agg["n_runs"] == 3
    assert agg["mean"] == pytest.approx(np.mean(accs))
    assert agg["std"] == pytest.approx(np.std(accs, ddof=1))
    assert (agg["min"], agg["max"]) == (min(accs), max(accs))
    diffs = [r["comparisons"][0]["acc_diff"] for r in m["per_run"]]
    assert m["aggregate"]["comparison"]["acc_diff"]["mean"] == pytest.approx(np.mean(diffs))
    assert m["runs"] == [str(r) for r in runs]
    # pooled top level: same test set in every run, so pooled accuracy = mean accuracy
    assert m["models"]["reasoning"]["n"] == 180
    assert m["models"]["reasoning"]["accuracy"] == pytest.approx(np.mean(accs))
    c = m["comparisons"][0]
    assert c["pooled_runs"] == 3
    assert c["b01"] == sum(r["comparisons"][0]["b01"] for r in m["per_run"])
    text = (out / "report.md").read_text()
    assert "## Across runs" in text and "### Per run" in text
    assert (out / "tables" / "aggregate.csv").exists()


def test_duplicate_ids_are_rejected_with_the_file_named(tmp_path):
    from pipeline.io import DataError, read_jsonl
    run, _ = make_run(tmp_path / "run")
    path = run / "predictions" / "baseline.jsonl"
    rows = read_jsonl(path)
    atomic_write_jsonl(path, rows + rows[:1])
    with pytest.raises(DataError, match="baseline.jsonl.*duplicate ids"):
        run_evaluate([run], run, LABELS, PAPER)


def test_gold_label_outside_the_task_is_rejected_with_the_file_named(tmp_path):
    from pipeline.io import DataError, read_jsonl
    run, _ = make_run(tmp_path / "run")
    path = run / "predictions" / "reasoning.jsonl"
    rows = read_jsonl(path)
    rows[3]["gold"] = "boredom"
    atomic_write_jsonl(path, rows)
    with pytest.raises(DataError, match="reasoning.jsonl: row 4 has gold 'boredom'"):
        run_evaluate([run], run, LABELS, PAPER)


def test_markdown_tables_mark_significance_and_format_numbers():
    import pandas as pd
    md = to_markdown(pd.DataFrame([{"x": 0.123456, "p": 0.00001234, "significant": True, "n": 5, "v": None},
                                   {"x": 1.0, "p": 0.5, "significant": False, "n": 7, "v": None}]))
    lines = md.splitlines()
    assert len(lines) == 4 and lines[0].startswith("|")
    assert "0.123" in lines[2] and "1.23e-05" in lines[2] and "✱" in lines[2] and "—" in lines[2]
    assert "✱" not in lines[3]
