"""Profiles, task specs and the run context: configuration is data, read from YAML.

A profile (profiles/*.yml) may `inherit:` another and is deep-merged over it; a task
spec (tasks/*.yml) says what the data is. `RunContext` names every path of a run
directory, so stages never build paths by hand.
"""
from __future__ import annotations

import copy
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.io import DataError

ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = ROOT / "profiles"
TASKS_DIR = ROOT / "tasks"
PROMPTS_DIR = ROOT / "prompts"
AXOLOTL_CONFIGS_DIR = ROOT / "axolotl_configs"

TRAINED_MODELS = ("stage1", "stage2", "baseline")


def deep_merge(base: dict, over: dict) -> dict:
    """`over` wins; nested dicts merge key by key; a None value in `over` is kept (it unsets)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping at the top level")
    return data


def spec_path(name_or_path: str, folder: Path, kind: str) -> Path:
    """folder/<name>.yml for a bare name, else the path given; a missing one lists the known names."""
    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.yml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yml"))
        raise DataError(f"{path}: no such {kind}; known: {', '.join(known)} (or give a path to a .yml)")
    return path


def load_profile(name_or_path: str) -> dict:
    path = spec_path(name_or_path, PROFILES_DIR, "profile")
    data = _load_yaml(path)
    parent = data.pop("inherit", None)
    profile = deep_merge(load_profile(parent), data) if parent else data
    profile["name"] = path.stem
    return profile


TASK_TEMPLATES = ("stage2_assistant", "baseline_assistant")  # answer templates a task may replace


@dataclass(frozen=True)
class TaskSpec:
    """One classification task (tasks/*.yml or any .yml path).

    Template and data file names in a spec are relative to the spec's own folder (then to
    prompts/ for templates), so a task can live entirely outside the project. `templates`
    maps stage2_assistant / baseline_assistant to the task's own answer templates; both
    receive `answer_prefix`, the one string the label parser also looks for.
    """

    name: str
    labels: list[str]
    question_template: str
    answer_prefix: str
    templates: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    hub: dict = field(default_factory=dict)
    text_files: dict = field(default_factory=dict)
    paper_reference: dict | None = None
    path: Path | None = None

    @classmethod
    def load(cls, name_or_path: str) -> "TaskSpec":
        path = spec_path(name_or_path, TASKS_DIR, "task spec")
        data = _load_yaml(path)
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"{path}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        missing = sorted(f for f in ("name", "labels", "question_template", "answer_prefix") if f not in data)
        if missing:
            raise DataError(f"{path}: missing field(s) {missing}")
        labels = data["labels"]
        if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) and x.strip() for x in labels)):
            raise DataError(f"{path}: field 'labels' must be a list of at least two non-empty strings")
        if len(set(labels)) != len(labels):
            raise DataError(f"{path}: field 'labels' has duplicates: {labels}")
        if not (isinstance(data["answer_prefix"], str) and data["answer_prefix"].strip()):
            raise DataError(f"{path}: field 'answer_prefix' must be a non-empty string, e.g. 'Label:'")
        data["question_template"] = _template_name(path, "question_template", data["question_template"])
        extra = data.get("templates") or {}
        if not isinstance(extra, dict) or set(extra) - set(TASK_TEMPLATES):
            raise DataError(f"{path}: field 'templates' maps only {list(TASK_TEMPLATES)} to template files")
        data["templates"] = {role: _template_name(path, f"templates.{role}", extra[role]) if role in extra
                             else f"{role}.jinja" for role in TASK_TEMPLATES}
        files = data.get("files") or {}
        if files and (not isinstance(files, dict) or set(files) != {"train", "test"}):
            raise DataError(f"{path}: field 'files' needs exactly `train` and `test` (paths relative to the spec)")
        data["files"] = {split: str((path.parent / f).resolve()) for split, f in files.items()}
        return cls(**data, path=path.resolve())


def _template_name(spec: Path, fld: str, name) -> str:
    """The spec's own template (relative to its folder) as an absolute path, else a file name in prompts/."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{spec}: field '{fld}' must be a template file name")
    own = (spec.parent / name).resolve()
    if own.is_file():
        return str(own)
    if (PROMPTS_DIR / name).is_file():
        return name
    raise DataError(f"{spec}: field '{fld}': {name} is neither next to the spec ({spec.parent}) nor in {PROMPTS_DIR}")


@dataclass
class RunContext:
    """Everything a stage needs: the merged profile, the task spec and the run directory."""

    profile: dict
    task: TaskSpec
    run_dir: Path
    data_dir: Path | None = None
    backend: str | None = None          # CLI override of profile.generation.backend
    gpus: int | None = None             # CLI override of profile.train.gpus
    profile_source: str | None = None   # --profile as given (a name or a .yml path), for the hints

    def __post_init__(self):
        self.run_dir = Path(self.run_dir).resolve()
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir).resolve()

    # --- paths of the run directory (the stages' declared inputs and outputs) ---
    @property
    def data(self) -> Path:
        return self.run_dir / "data"

    def task_split(self, split: str) -> Path:
        return self.data / "task" / f"{split}.jsonl"

    def train_set(self, which: str) -> Path:
        """Axolotl `messages` JSONL for stage1 / stage2 / baseline."""
        return self.data / f"{which}.jsonl"

    def model_dir(self, which: str) -> Path:
        return self.run_dir / "models" / which

    @property
    def base_model_dir(self) -> Path:
        return self.run_dir / "models" / "tiny-base"

    def axolotl_config(self, which: str) -> Path:
        return self.run_dir / "configs" / f"{which}.yml"

    def log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    @property
    def generations(self) -> Path:
        return self.run_dir / "generations"

    def predictions(self, model: str) -> Path:
        return self.run_dir / "predictions" / f"{model}.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "manifest.json"

    @property
    def base_model(self) -> str:
        """The base model every training run starts from (the tiny one is built in prepare)."""
        return str(self.base_model_dir) if self.profile["base_model"] == "tiny" else self.profile["base_model"]

    @property
    def generation(self) -> dict:
        gen = dict(self.profile["generation"])
        if self.backend:
            gen["backend"] = self.backend
        return gen

    def command(self, stage: str, *flags: str) -> str:
        """The orchestrate.py command line that runs `stage` on THIS run (its run dir, profile, task,
        data dir), to paste from the current directory: the hints the CLI prints use it."""
        def rel(p) -> str:  # relative to the current directory when below it, else absolute
            r = os.path.relpath(p)
            return shlex.quote(str(p) if r.startswith("..") else r)

        profile = self.profile_source or self.profile["name"]
        if Path(profile).suffix:
            profile = rel(Path(profile).resolve())
        parts = [rel(sys.executable), rel(ROOT / "orchestrate.py"), stage, "--profile", profile,
                 "--run-dir", rel(self.run_dir)]
        if self.task.path is not None and self.task.path != (TASKS_DIR / f"{self.task.name}.yml").resolve():
            parts += ["--task", rel(self.task.path)]
        elif self.task.name != "emotion":
            parts += ["--task", self.task.name]
        if self.data_dir is not None:
            parts += ["--data-dir", rel(self.data_dir)]
        return " ".join(parts + list(flags))
