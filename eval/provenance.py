"""What a run was: profile, base model, task, data, sizes, seeds, code and tools, read from its manifest.

The report's header and metrics.json's `run` block come from here, so a reader sees how the
numbers were made before reading them. Everything is read from RUN/manifest.json (written by
the stages), never from the clock or the current configuration: rerunning `evaluate` gives the
same header. `notices` are the warnings that must not be missed: a model no better than always
answering the majority class, and a paper comparison made with another base model.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipeline.io import read_json

MAJORITY = "majority"


def _date(ts) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ts else None


def _base_model(profile: dict) -> str | None:
    base = profile.get("base_model")
    if base != "tiny":
        return base
    tm = profile.get("tiny_model") or {}
    return (f"tiny (random-initialised Llama built by pipeline/tiny_model.py: {tm.get('num_layers')} layers, "
            f"hidden size {tm.get('hidden_size')})")


def _generator(man: dict) -> str | None:
    """Which model wrote the reasonings (the generate stage's record; a replicate's is in its data
    engine's manifest): the trained stage-1 model, or the prompted base model."""
    gen = (man.get("stages") or {}).get("generate")
    shared = Path(man["shared_dir"]) / "manifest.json" if man.get("shared_dir") else None
    if gen is None and shared is not None and shared.exists():
        gen = (read_json(shared).get("stages") or {}).get("generate")
    info = (gen or {}).get("info") or {}
    if not info:
        return None
    if info.get("generator") == "prompted":
        return f"prompted: the base model {info.get('generator_model')} with a few-shot prompt (no stage-1 training)"
    return f"stage1: the trained stage-1 model {info.get('generator_model') or ''}".rstrip()


def run_info(run_dir: Path) -> dict:
    """The `run` block of metrics.json for one run directory; fields are None when the manifest lacks them."""
    path = Path(run_dir) / "manifest.json"
    man = read_json(path) if path.exists() else {}
    stages = man.get("stages") or {}
    profile = man.get("profile") or {}
    env = man.get("environment") or {}
    prep = (stages.get("prepare") or {}).get("info") or {}
    build = (stages.get("build-stage2") or {}).get("info") or {}
    predict = stages.get("predict") or {}
    backends = sorted({f"{v.get('backend')} {v.get('backend_version')}" for v in (predict.get("info") or {}).values()
                       if isinstance(v, dict) and v.get("backend")})
    return {
        "run_dir": str(run_dir),
        "manifest": path.exists(),
        "profile": profile.get("name"),
        "base_model": profile.get("base_model"),
        "base_model_description": _base_model(profile) if profile else None,
        "task": (man.get("task") or {}).get("name"),
        "task_spec": (man.get("task") or {}).get("spec"),
        "data_source": prep.get("source"),
        "reasonings_by": _generator(man),
        "sizes": {"train": prep.get("task_train"), "test": prep.get("task_test"),
                  "stage1": prep.get("stage1_rows"), "stage2": build.get("stage2_rows"),
                  "baseline": build.get("baseline_rows")},
        "seeds": man.get("seeds"),
        "git_commit": env.get("git_commit"),
        "python": env.get("python"),
        "packages": env.get("packages"),
        "backend": ", ".join(backends) or None,
        "date": _date(predict.get("finished")),
    }


def notices(run: dict, models: dict, paper_reference: dict | None) -> list[str]:
    """Loud warnings: collapse to (or below) the majority baseline; a paper comparison across base models."""
    out = []
    maj = (models.get(MAJORITY) or {}).get("accuracy")
    for name in ("baseline", "reasoning"):
        acc = (models.get(name) or {}).get("accuracy")
        if acc is not None and maj is not None and acc <= maj:
            out.append(f"**{name}** is at or below the majority-class baseline (accuracy {acc:.3f} vs "
                       f"{maj:.3f} for always answering the most frequent training label): it has not learned "
                       f"the task, and its numbers say nothing about the method.")
    ref = paper_reference or {}
    if ref.get("accuracy") or ref.get("recall"):
        paper_model, ours = ref.get("base_model"), run.get("base_model")
        if paper_model is None:
            out.append("The task spec does not name the paper's base model (`paper_reference.base_model`), so "
                       "the paper comparison below cannot be confirmed to use the same model.")
        elif ours != paper_model:
            out.append(f"The paper's numbers below come from **{paper_model}**; this run's base model is "
                       f"**{run.get('base_model_description') or ours}**. The side-by-side shows that the "
                       f"pipeline runs, not whether the paper reproduces.")
    return out
