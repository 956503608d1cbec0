"""The tiny demo end to end, as a user runs it: real Axolotl training, real vLLM (when
its environment exists) or transformers generation, report and metrics."""
from __future__ import annotations

import json
from pathlib import Path

from scipy.stats import binomtest

from pipeline.generation.launch import vllm_python
from pipeline.io import read_jsonl
from tests.conftest import orchestrate

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_demo_leaves_report_metrics_and_predictions(tiny_run):
    for rel in ["report.md", "metrics.json", "predictions/baseline.jsonl", "predictions/reasoning.jsonl"]:
        assert (tiny_run / rel).is_file(), rel
    for model in ("baseline", "reasoning"):
        rows = read_jsonl(tiny_run / "predictions" / f"{model}.jsonl")
        assert len(rows) == len(read_jsonl(tiny_run / "data/task/test.jsonl"))
        max_tokens = {"baseline": 8, "reasoning": 80}[model]  # profiles/tiny.yml predict.max_tokens
        for row in rows:
            assert {"id", "gold", "pred", "output", "finish_reason"} <= set(row)
            assert row["pred"] is None or row["pred"] in LABELS
            # the engine's own reason: cut at max_tokens ("length") or ended its turn ("stop")
            assert row["finish_reason"] in ("stop", "length") and row["output_tokens"] <= max_tokens, row
            assert row["finish_reason"] != "length" or row["output_tokens"] == max_tokens, row


def test_metrics_json_has_the_documented_keys(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())
    for name in ("baseline", "reasoning", "majority", "tfidf_logreg"):
        model = m["models"][name]
        assert 0 <= model["accuracy"] <= 1 and isinstance(model["invalid"], int)
        assert set(model["per_class"]) == set(LABELS)
        assert all(0 <= c["recall"] <= 1 for c in model["per_class"].values())
    cmp = m["comparisons"][0]
    assert (cmp["a"], cmp["b"]) == ("baseline", "reasoning")
    assert {"b01", "b10", "pvalue"} <= set(cmp) and 0 <= cmp["pvalue"] <= 1
    report = (tiny_run / "report.md").read_text()
    for section in ("## Model metrics", "## Per-class metrics", "## Reference baselines", "McNemar"):
        assert section in report
    for png in [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]:
        assert (tiny_run / png).is_file(), png


def test_tiny_baseline_learns_clearly_above_chance(tiny_run):
    rows = read_jsonl(tiny_run / "predictions/baseline.jsonl")
    correct = sum(r["pred"] == r["gold"] for r in rows)
    assert correct / len(rows) > 0.3
    assert binomtest(correct, len(rows), 1 / len(LABELS), alternative="greater").pvalue < 1e-6


def test_test_split_never_reaches_generator_or_trainers(tiny_run):
    test = read_jsonl(tiny_run / "data/task/test.jsonl")
    test_ids, test_texts = {r["id"] for r in test}, {r["text"] for r in test}
    consumed = [tiny_run / "data" / f"{w}.jsonl" for w in ("stage1", "stage2", "baseline")]
    consumed += sorted((tiny_run / "generations").glob("attempt-*/requests.jsonl"))
    assert len(consumed) >= 4
    for path in consumed:
        for row in read_jsonl(path):
            assert row["id"] not in test_ids, path
            user = next(m["content"] for m in row["messages"] if m["role"] == "user")
            assert not any(f"Text: {t}\n" in user + "\n" for t in test_texts), path
    assert all(r["id"].startswith("test-") for r in test)


def test_training_loss_falls_and_manifest_records_each_run(tiny_run):
    stages = _manifest(tiny_run)["stages"]
    for stage in ("train-stage1", "train-stage2", "train-baseline"):
        info = stages[stage]["info"]
        assert stages[stage]["status"] == "done"
        assert Path(info["config"]).is_file() and Path(info["log"]).is_file()
        assert info["last_loss"] < 0.5 * info["first_loss"], (stage, info)
        assert info["train_loss"] is not None
        assert info["rows_trained"] + info["rows_dropped"] == info["rows_in"]
    env = _manifest(tiny_run)["environment"]
    assert env["packages"]["axolotl"] == "0.19.0"


def test_generation_used_vllm_when_its_environment_exists(tiny_run):
    stats = json.loads((tiny_run / "generations/generation_stats.json").read_text())
    expected = "vllm" if vllm_python() else "transformers"
    assert stats["backend"] == expected and stats["backend_version"]
    manifest = _manifest(tiny_run)["stages"]
    assert manifest["generate"]["info"]["backend_version"] == stats["backend_version"]
    assert {m["backend"] for m in manifest["predict"]["info"].values()} == {expected}
    assert stats["kept"] + stats["dropped"] == len(read_jsonl(tiny_run / "data/task/train.jsonl"))
    assert stats["output_tokens"] > 0 and stats["output_tokens_per_s"] > 0
    rows = read_jsonl(tiny_run / "generations/reasonings.jsonl")
    assert {r["backend"] for r in rows} == {expected} and all(r["backend_version"] for r in rows)
    assert all("Label:" not in r["reasoning"] for r in rows)
    if expected == "vllm":  # generation.prestart: the worker imported vLLM while stage 1 trained
        started = manifest["generate"]["info"]["rounds"][0]["worker_started_at"]
        assert manifest["train-stage1"]["started"] < started < manifest["generate"]["started"]


def test_rerun_skips_every_finished_stage(tiny_run):
    out = orchestrate("all", "--profile", "tiny", "--run-dir", str(tiny_run)).stdout
    assert out.count("up to date, skipped") == 8, out


def test_bench_table_splits_every_stage_into_model_start_up_and_ours(tiny_run):
    """bench/pipeline_stages.py reads what the stages record (train_runtime, engine start and
    generation seconds, the orchestrator's own seconds), and they fit inside each stage's wall time."""
    from bench.pipeline_stages import overlap, table

    rows = {r["stage"]: r for r in table(Path(tiny_run))}
    assert list(rows) == [*_manifest(tiny_run)["stages"], "total"]
    for stage in ("train-stage1", "train-stage2", "train-baseline", "generate", "predict"):
        assert rows[stage]["model_s"] > 0 and rows[stage]["startup_s"] > 0, rows[stage]
        assert rows[stage]["ours_s"] >= -0.1, rows[stage]  # measured parts never exceed the wall time
    assert 0 < rows["total"]["ours_share"] < 1
    side_by_side = overlap(_manifest(tiny_run)["stages"])  # stage 2 beside the baseline (train.concurrent)
    assert 0 < side_by_side <= min(rows["train-stage2"]["wall_s"], rows["train-baseline"]["wall_s"]) + 0.1
