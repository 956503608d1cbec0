"""What every experiment shares: the main run's data, arms trained like the main models, and
predictions through predict's own code path.

An arm is one Axolotl training of stage 2 (`stage2.yml`) or the baseline (`baseline.yml`) on
a training set the experiment builds. Its config is the main run's, plus `experiments.train`
(the same overrides for every arm, so arms of one experiment differ only in their data).
Arms live in RUN/experiments/models/<which>-<fingerprint of config and data>/: two experiments
asking for the same arm (noise at fraction 0 and minority's plain recipe) train it once, and an
arm whose config and data equal the main run's is the main run's own model.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pipeline import prompts
from pipeline.comparison import portable_config
from pipeline.config import RunContext, deep_merge
from pipeline.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, jsonl_bytes, read_json, read_jsonl
from pipeline.manifest import fingerprint


@dataclass
class ArmContext(RunContext):
    """A run directory of its own for one arm (its data, config, checkpoints, logs) that trains from
    the main run's base model and generates with its stage-1 model."""

    main: RunContext | None = None

    @property
    def base_model_dir(self) -> Path:
        return self.main.base_model_dir

    def model_dir(self, which: str) -> Path:
        return self.main.model_dir(which) if which == "stage1" else super().model_dir(which)


@dataclass
class Lab:
    """One experiment's view of a finished run: RUN/experiments/<name>/ and its settings."""

    ctx: RunContext
    name: str

    @property
    def out(self) -> Path:
        return self.ctx.run_dir / "experiments" / self.name

    @property
    def settings(self) -> dict:
        """The profile's `experiments` section."""
        return self.ctx.profile["experiments"]

    @property
    def own(self) -> dict:
        """`experiments.<name>`: this experiment's own keys."""
        return self.settings.get(self.name) or {}

    @property
    def task(self):
        return self.ctx.task

    @property
    def labels(self) -> list[str]:
        return list(self.ctx.task.labels)

    # ------------------------------------------------------------ the main run's data
    @cached_property
    def train_split(self) -> list[dict]:
        return read_jsonl(self.ctx.task_split("train"))

    @cached_property
    def test_split(self) -> list[dict]:
        return read_jsonl(self.ctx.task_split("test"))

    def test_rows(self, limit: int | None = None) -> list[dict]:
        """The first `limit` test rows (else `experiments.test_limit`, else all)."""
        limit = limit or self.settings.get("test_limit")
        return self.test_split[:limit] if limit else self.test_split

    def main_set(self, which: str) -> list[dict]:
        """The main run's stage-2 or baseline training set (same ids, same order)."""
        return read_jsonl(self.ctx.train_set(which))

    @cached_property
    def reasonings(self) -> dict[str, dict]:
        """The data engine's reasonings by id: {id, text, label, reasoning, ...}."""
        return {r["id"]: r for r in read_jsonl(self.ctx.generations / "reasonings.jsonl")}

    def stage2_row(self, id_: str, example: dict, reasoning: str) -> dict:
        """A stage-2 training row for a task split row (every input field), built as build-stage2 builds it."""
        return {"id": id_, "messages": prompts.classify_messages(
            self.task, example, prompts.stage2_answer(self.task, reasoning, example["label"]))}

    def main_predictions(self, model: str) -> list[dict]:
        return read_jsonl(self.ctx.predictions(model))

    # ------------------------------------------------------------ arms
    def arm_profile(self, overrides: bool = True, extra: dict | None = None) -> dict:
        axolotl = deep_merge(self.ctx.profile["train"].get("axolotl") or {},
                             deep_merge(self.settings["train"] if overrides else {}, extra or {}))
        return deep_merge(self.ctx.profile, {"train": {"axolotl": axolotl}})

    def arm_context(self, folder: Path, profile: dict | None = None) -> ArmContext:
        c = self.ctx
        return ArmContext(profile or c.profile, c.task, folder, data_dir=c.data_dir, backend=c.backend, gpus=c.gpus,
                          profile_source=c.profile_source, main=c)

    def train(self, which: str, rows: list[dict], arm: str, overrides: bool = True,
              extra: dict | None = None) -> dict:
        """Train (or find) the arm `which` (stage2 / baseline) on `rows`; returns its record:
        model_dir, rows, optimizer steps, examples per step, ids digest, losses."""
        from pipeline.classify import is_trained
        from pipeline.train import resolve_config, run_training

        data = jsonl_bytes(rows)
        profile = self.arm_profile(overrides, extra)
        root = self.ctx.run_dir / "experiments" / "models"
        cfg = portable_config(resolve_config(self.arm_context(root / "probe", profile), which))
        main_path, main_dir = self.ctx.train_set(which), self.ctx.model_dir(which)
        if cfg == portable_config(resolve_config(self.ctx, which)) and main_path.read_bytes() == data \
                and is_trained(main_dir):
            info = self._main_training(which)
            return {"arm": arm, "model": which, "model_dir": str(main_dir), "main_model": True, **info}
        folder = root / f"{which}-{fingerprint(which, cfg, hashlib.sha256(data).hexdigest())}"
        arm_ctx = self.arm_context(folder, profile)
        done = folder / "trained.json"
        if not (done.exists() and is_trained(arm_ctx.model_dir(which))):
            if not arm_ctx.train_set(which).exists():
                atomic_write_bytes(arm_ctx.train_set(which), data)
            print(f"[experiment {self.name}] training arm {arm!r} ({which}, {len(rows)} rows) in "
                  f"{folder.relative_to(self.ctx.run_dir)}")
            atomic_write_json(done, _training_facts(run_training(arm_ctx, which)))
        return {"arm": arm, "model": which, "model_dir": str(arm_ctx.model_dir(which)), "main_model": False,
                **read_json(done)}

    def train_all(self, arms: list[dict]) -> list[dict]:
        """`train(**arm)` for each of `arms`, `train.concurrent` at once (pipeline/side_by_side.py);
        their records in the order of `arms`."""
        from pipeline.side_by_side import run_side_by_side

        return run_side_by_side([lambda arm=arm: self.train(**arm) for arm in arms],
                                self.ctx.profile["train"]["concurrent"])

    def _main_training(self, which: str) -> dict:
        from pipeline.manifest import Manifest

        return _training_facts(Manifest(self.ctx.manifest_path).stage(f"train-{which}").get("info") or {})

    # ------------------------------------------------------------ predictions
    def session(self, tag: str = ""):
        from pipeline.stages import open_session

        return open_session(self.ctx, f"experiment-{self.name}{tag}")

    def predict(self, session, name: str, model_dir: str | Path, rows: list[dict], tag: str,
                ctx: RunContext | None = None) -> list[dict]:
        """Answer the test `rows` with model `name` (baseline / reasoning / label_first decoding) through
        predict's code path; writes and returns RUN/experiments/<name>/predictions/<tag>.jsonl rows."""
        from postprocess.labels import parse_label
        from pipeline.stages import run_classifier

        results, _ = run_classifier(ctx or self.ctx, session, name, Path(model_dir), prompts.classify_requests(self.task, rows),
                                    self.out / "predictions" / f".work-{tag}")
        preds = [{"id": r["id"], "text": r["text"], "gold": r["label"],
                  "pred": parse_label(res["output"], self.labels, self.task.answer_prefix), "output": res["output"],
                  "output_tokens": res["output_tokens"], "finish_reason": res["finish_reason"]}
                 for r, res in zip(rows, results)]
        atomic_write_jsonl(self.out / "predictions" / f"{tag}.jsonl", preds)
        return preds


TRAINING_FACTS = ("rows_in", "rows_trained", "optimizer_steps", "examples_per_step", "ids_sha256", "train_loss")


def _training_facts(info: dict) -> dict:
    return {k: info.get(k) for k in TRAINING_FACTS}


def series(preds: list[dict]) -> dict:
    """Prediction rows as eval's column view (eval.runs.paired, model_metrics)."""
    return {"ids": [r["id"] for r in preds], "gold": [r["gold"] for r in preds], "pred": [r["pred"] for r in preds],
            "output_tokens": [r.get("output_tokens") for r in preds]}


def scores(preds: list[dict], labels: list[str]) -> dict:
    """Accuracy, macro-F1, invalid outputs, per-class recall and mean output tokens (eval.metrics)."""
    from eval.metrics import model_metrics

    s = series(preds)
    m = model_metrics(s["gold"], s["pred"], labels, s["output_tokens"])
    return {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "invalid": m["invalid"],
            "mean_output_tokens": m["mean_output_tokens"],
            "recall": {lab: m["per_class"][lab]["recall"] for lab in labels},
            "support": {lab: m["per_class"][lab]["support"] for lab in labels}}


def mcnemar(a: list[dict], b: list[dict], labels: list[str], name_a: str, name_b: str) -> dict:
    """eval's baseline-vs-reasoning comparison for any two prediction sets on shared ids: McNemar
    overall and per gold class (Holm), accuracy difference b - a with its bootstrap interval."""
    from eval.evaluate import compare
    from eval.runs import paired

    return compare(paired(series(a), series(b), labels), labels, name_a, name_b)
