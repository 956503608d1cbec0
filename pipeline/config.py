"""Profiles, task specs and the run context: configuration is data, read from YAML.

A profile (profiles/*.yml) may `inherit:` another and is deep-merged over it; a task
spec (tasks/*.yml) says what the data is. `RunContext` names every path of a run
directory, so stages never build paths by hand.
"""
from __future__ import annotations

import copy
import json
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


@dataclass(frozen=True)
class TaskSpec:
    name: str
    labels: list[str]
    question_template: str
    answer_prefix: str
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
        if not (PROMPTS_DIR / data["question_template"]).exists():
            raise DataError(f"{path}: field 'question_template': {data['question_template']} is not in {PROMPTS_DIR}")
        return cls(**data, path=path)


@dataclass
class RunContext:
    """Everything a stage needs: the merged profile, the task spec and the run directory."""

    profile: dict
    task: TaskSpec
    run_dir: Path
    data_dir: Path | None = None
    backend: str | None = None          # CLI override of profile.generation.backend
    gpus: int | None = None             # CLI override of profile.train.gpus

    def __post_init__(self):
        self.run_dir = Path(self.run_dir).resolve()
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir).resolve()

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, backend: str | None = None) -> "RunContext":
        """The context a run directory was made with, from its manifest (merged profile, task
        spec, data directory), so commands on a finished run need only `--run-dir`."""
        run_dir = Path(run_dir)
        path = run_dir / "manifest.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{run_dir}: not a run directory (no manifest.json); "
                            f"give the --run-dir of a run made by `orchestrate.py all`") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("profile"), dict) \
                or not isinstance(manifest.get("task"), dict):
            raise DataError(f"{path}: no 'profile' and 'task' recorded; not a manifest written by orchestrate.py")
        task = manifest["task"]
        spec = Path(task.get("spec") or "")
        if not spec.is_file():  # a run directory copied from another checkout: the task by name
            spec = spec_path(task.get("name") or str(spec), TASKS_DIR, "task spec")
        return cls(manifest["profile"], TaskSpec.load(str(spec)), run_dir, data_dir=manifest.get("data_dir"),
                   backend=backend)

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
