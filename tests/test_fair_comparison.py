"""The baseline and the reasoning model differ only in the target: same example ids, same
optimizer updates, same examples per update, in every profile; the report says so, or warns."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from eval.evaluate import run_evaluate
from pipeline import stages
from pipeline.comparison import config_differences, training_differences
from pipeline.config import RunContext, TaskSpec, load_profile
from pipeline.data import overlap_note, read_text_label_file, train_test_overlap
from pipeline.io import ids_digest, read_json, read_jsonl
from pipeline.preflight.inputs import check_data_dir
from pipeline.run import ORDER, run_replicates
from pipeline.train import resolve_config

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path)]


# ---------------------------------------------------------------- the configs
@pytest.mark.parametrize("profile", ["paper", "tiny"])
def test_shipped_profiles_give_stage2_and_baseline_the_same_updates(profile, tmp_path):
    """Every profile's resolved stage-2 and baseline configs differ only in their paths, without packing."""
    ctx = RunContext(load_profile(profile), TaskSpec.load("emotion"), tmp_path / "run")
    s2, bl = resolve_config(ctx, "stage2"), resolve_config(ctx, "baseline")
    assert config_differences(s2, bl) == []
    assert not s2.get("sample_packing") and not bl.get("sample_packing")


def test_packing_or_another_batch_size_for_one_model_is_caught(tmp_path):
    ctx = RunContext(load_profile("paper"), TaskSpec.load("emotion"), tmp_path / "run")
    s2, bl = resolve_config(ctx, "stage2"), resolve_config(ctx, "baseline")
    packed = {**copy.deepcopy(bl), "sample_packing": True}
    reasons = config_differences(s2, packed)
    assert any("sample_packing" in r and "differs" in r for r in reasons)
    assert any("baseline uses sample_packing" in r for r in reasons)
    both = config_differences({**s2, "sample_packing": True}, packed)
    assert both and all("sample_packing" in r for r in both)  # equal, but packing makes steps follow tokens
    assert config_differences(s2, {**copy.deepcopy(bl), "micro_batch_size": 8}) == [
        f"config key 'micro_batch_size' differs: stage2 {s2['micro_batch_size']}, baseline 8"]


def test_recorded_trainings_must_match_in_ids_steps_and_examples_per_step():
    same = {"ids_sha256": "a", "rows_trained": 10, "optimizer_steps": 5, "examples_per_step": 2, "epochs": 1.0}
    assert training_differences(same, dict(same)) == []
    reasons = training_differences(same, {**same, "ids_sha256": "b", "optimizer_steps": 3})
    assert reasons == ["example ids differ: stage2 a, baseline b", "optimizer steps differ: stage2 5, baseline 3"]
    assert training_differences(same, {**same, "epochs": None}) == ["epochs: not recorded for baseline"]


# ---------------------------------------------------------------- the tiny demo
def test_demo_trains_both_models_on_the_same_ids_steps_and_examples_per_step(tiny_run):
    assert _ids(tiny_run / "data/stage2.jsonl") == _ids(tiny_run / "data/baseline.jsonl")
    info = {w: read_json(tiny_run / "manifest.json")["stages"][f"train-{w}"]["info"] for w in ("stage2", "baseline")}
    for key in ("ids_sha256", "rows_trained", "optimizer_steps", "examples_per_step", "epochs"):
        assert info["stage2"][key] == info["baseline"][key] is not None, key
    assert info["stage2"]["ids_sha256"] == ids_digest(_ids(tiny_run / "data/baseline.jsonl"))
    assert info["stage2"]["label_tokens_per_epoch"] > info["baseline"]["label_tokens_per_epoch"] > 0
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["training"]["controlled"] is True and metrics["training"]["reasons"] == []
    report = (tiny_run / "report.md").read_text()
    assert "## Training" in report and "NOT controlled" not in report
    table = report.split("## Training")[1].split("\n## ")[0]
    assert "optimizer_steps" in table and str(info["stage2"]["optimizer_steps"]) in table


def test_demo_trains_both_models_side_by_side_with_the_same_settings(tiny_run):
    """The tiny profile's `train.concurrent: 2`: the two trainings overlapped, each with half of the
    machine's cores, so neither ran with more than the other."""
    import os

    stages = read_json(tiny_run / "manifest.json")["stages"]
    s2, base = stages["train-stage2"], stages["train-baseline"]
    assert s2["started"] < base["finished"] and base["started"] < s2["finished"]
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert s2["info"]["cpu_threads"] == base["info"]["cpu_threads"] == threads


def test_axolotl_sees_the_same_rows_in_the_same_order_for_both(tiny_run):
    """The prepared datasets (what Axolotl trains on, order included) hold the same user turns."""
    from datasets import load_from_disk

    def prompts(which: str) -> list[list[int]]:
        ds = load_from_disk(str(next((tiny_run / "prepared" / which).rglob("dataset_info.json")).parent))
        return [ids[: labels.index(next(t for t in labels if t != -100))]
                for ids, labels in zip(ds["input_ids"], ds["labels"])]

    assert prompts("stage2") == prompts("baseline")


def test_build_stage2_leaves_ids_without_reasoning_or_too_long_out_of_both_sets(tiny_run, tmp_path):
    run = tmp_path / "run"
    for rel in ("data/task", "models/tiny-base"):
        shutil.copytree(tiny_run / rel, run / rel)
    rows = read_jsonl(tiny_run / "generations/reasonings.jsonl")
    missing = {rows[0]["id"], rows[5]["id"]}
    rows[3]["reasoning"] = "The writer goes on and on. " * 200  # far over the tiny sequence_len
    (run / "generations").mkdir()
    (run / "generations/reasonings.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r["id"] not in missing))
    ctx = RunContext(load_profile("tiny"), TaskSpec.load("emotion"), run)
    info = stages.build_stage2(ctx)
    ids = _ids(run / "data/stage2.jsonl")
    assert ids == _ids(run / "data/baseline.jsonl")
    assert not ({rows[3]["id"]} | missing) & set(ids)
    n_train = len(read_jsonl(run / "data/task/train.jsonl"))
    assert info["without_reasoning"] == n_train - len(rows) + 2 and info["too_long"] == 1
    assert info["rows"] == len(ids) == n_train - info["without_reasoning"] - 1


def test_report_warns_loudly_when_the_comparison_is_not_controlled(tiny_run, tmp_path):
    run = tmp_path / "run"
    for rel in ("predictions", "configs", "data/task"):
        shutil.copytree(tiny_run / rel, run / rel)
    manifest = read_json(tiny_run / "manifest.json")
    manifest["stages"]["train-baseline"]["info"]["optimizer_steps"] //= 3
    (run / "manifest.json").write_text(json.dumps(manifest))
    cfg = yaml.safe_load((run / "configs/baseline.yml").read_text())
    (run / "configs/baseline.yml").write_text(yaml.safe_dump({**cfg, "sample_packing": True}))
    metrics = run_evaluate([run], run, LABELS, None)
    assert metrics["training"]["controlled"] is False
    report = (run / "report.md").read_text()
    head = report.split("## Summary")[0]
    assert "WARNING: this comparison is NOT controlled" in head
    assert "optimizer steps differ" in head and "baseline uses sample_packing" in head


# ---------------------------------------------------------------- train/test overlap
@pytest.mark.slow  # prepare builds the tiny model and reads all 18k rows
def test_overlap_of_the_real_emotion_split_is_counted_and_can_be_dropped(shared_emotion, tmp_path):
    train = read_text_label_file(shared_emotion / "train.txt", LABELS)
    test = read_text_label_file(shared_emotion / "test.txt", LABELS)
    n, train_rows = train_test_overlap(train, test)
    assert n > 0 and len(train_rows) >= n
    test_texts = {" ".join(r["text"].lower().split()) for r in test}
    assert all(" ".join(train[i]["text"].lower().split()) in test_texts for i in train_rows)

    profile = load_profile("tiny")
    profile["task_data"].update(limit_train=None, limit_test=None, drop_test_overlap=True, duplicate_texts="warn")
    ctx = RunContext(profile, TaskSpec.load("emotion"), tmp_path / "run", data_dir=shared_emotion)
    assert overlap_note(ctx, check_data_dir(ctx)) == \
        f"{n} test texts also occur in the train split; those train rows are left out"  # preflight's line
    info = stages.prepare(ctx)
    assert info["test_overlap"] == n and info["overlap_dropped"] == len(train_rows)
    assert info["task_train"] == len(train) - len(train_rows)
    kept = {" ".join(r["text"].lower().split()) for r in read_jsonl(ctx.task_split("train"))}
    assert not kept & test_texts


# ---------------------------------------------------------------- seeds
def test_seeds_train_replicates_over_one_data_engine_and_aggregate(own_task_run, tmp_path, capfd):
    """`all --seeds 1,2` on a finished run (the own-task one: the smallest): the data engine is reused,
    stage 2 and the baseline are trained per seed in RUN/seed-N, and RUN's report gives mean and spread
    and McNemar per seed."""
    from orchestrate import build_parser

    assert build_parser().parse_args(["all", "--seeds", "1,2"]).seeds == [1, 2]
    run = tmp_path / "run"
    shutil.copytree(own_task_run[1], run, ignore=shutil.ignore_patterns("checkpoint-*", ".lock"))
    ctx = RunContext.from_run_dir(run)
    for which in ("stage2", "baseline"):  # fewer steps per replicate: this tests the mechanics
        ctx.profile["train"][which] = {"max_steps": 20, "save_steps": 20}
    run_replicates(ctx, ORDER, set(), [1, 2])
    out = capfd.readouterr().out
    for stage in ("prepare", "train-stage1", "generate", "build-stage2"):
        assert f"[{stage}] up to date, skipped" in out
    for seed in (1, 2):
        rep = run / f"seed-{seed}"
        info = read_json(rep / "manifest.json")["stages"]
        assert info["train-stage2"]["info"]["seed"] == info["train-baseline"]["info"]["seed"] == seed
        assert info["train-stage2"]["info"]["optimizer_steps"] == 20
        assert (rep / "predictions/reasoning.jsonl").is_file() and (rep / "report.md").is_file()
        assert not (rep / "models/stage1").exists() and not (rep / "data").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_runs"] == 2 and [Path(r).name for r in metrics["runs"]] == ["seed-1", "seed-2"]
    agg = metrics["aggregate"]
    assert agg["baseline"]["accuracy"]["n_runs"] == 2 and agg["comparison"]["n_runs"] == 2
    accs = [r["models"]["baseline"]["accuracy"] for r in metrics["per_run"]]
    assert agg["baseline"]["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert all("pvalue" in r["comparisons"][0] for r in metrics["per_run"])
    assert metrics["training"]["controlled"] is True
    report = (run / "report.md").read_text()
    assert "## Across runs" in report and "### Per run" in report
    # bench/small_real.py (the README's small-run table) reads the same seeds from such a run
    from bench.small_real import summarise, table

    res = summarise(run, "test machine", None)
    assert [s["seed"] for s in res["seeds"]] == [1, 2]
    assert [s["models"]["baseline"]["accuracy"] for s in res["seeds"]] == accs
    assert res["across_seeds"]["baseline"]["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert all(s["training"]["reasoning"]["optimizer_steps"] == 20 for s in res["seeds"])
    assert "accuracy seed 1 | accuracy seed 2 | accuracy mean ± sd" in table(res)
