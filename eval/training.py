"""How each model was trained, read back from a run's manifest and resolved configs, and
whether the baseline-vs-reasoning comparison is controlled (pipeline/comparison.py).

A reader of the report must see, next to the accuracies, that both models saw the same
examples, the same number of optimizer updates and the same examples per update; when they
did not, the report says so before anything else.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from eval.runs import home_of
from pipeline.comparison import config_differences, training_differences
from pipeline.io import read_json

# model name in the report -> training stage and Axolotl config of the run
TRAININGS = {"reasoning": ("train-stage2", "stage2"), "baseline": ("train-baseline", "baseline")}
FIELDS = ("rows_trained", "epochs", "optimizer_steps", "examples_per_step", "label_tokens_per_epoch",
          "tokens_per_epoch", "first_loss", "last_loss", "rows_dropped", "seed", "ids_sha256")


def _stages(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    return (read_json(path) or {}).get("stages", {}) if path.exists() else {}


def run_data_facts(run_dir: Path) -> dict:
    """What prepare and build-stage2 recorded about the rows: train/test overlap, rows left out."""
    stages = _stages(home_of(run_dir))
    prep, build = stages.get("prepare", {}).get("info", {}), stages.get("build-stage2", {}).get("info", {})
    return {"test_overlap": prep.get("test_overlap"), "overlap_dropped": prep.get("overlap_dropped"),
            "without_reasoning": build.get("without_reasoning"), "too_long": build.get("too_long")}


def training_summary(run_dir: Path) -> dict:
    """{"models": {name: facts}, "controlled": bool | None, "reasons": [...]} for one run.

    `controlled` is None when the run has no record of its trainings (e.g. predictions copied
    from elsewhere): then nothing can be claimed either way."""
    run_dir = Path(run_dir)
    stages = _stages(run_dir)
    models, configs = {}, {}
    for name, (stage, which) in TRAININGS.items():
        info = stages.get(stage, {}).get("info")
        if info:
            models[name] = {k: info.get(k) for k in FIELDS}
        cfg_path = run_dir / "configs" / f"{which}.yml"
        if cfg_path.exists():
            configs[which] = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    if len(models) < 2:
        return {"models": models, "controlled": None, "reasons": ["no record of both trainings in manifest.json"]}
    reasons = training_differences(models["reasoning"], models["baseline"])
    if len(configs) == 2:
        reasons += config_differences(configs["stage2"], configs["baseline"])
    else:
        reasons.append("resolved configs (configs/stage2.yml, configs/baseline.yml) missing")
    return {"models": models, "controlled": not reasons, "reasons": reasons}
