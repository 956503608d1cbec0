"""Profiles, task specs and the run context: configuration is data, read from YAML.

A profile (profiles/*.yml) may `inherit:` another and is deep-merged over it; a task
spec (tasks/*.yml) says what the data is. `RunContext` names every path of a run
directory, so stages never build paths by hand.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
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
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DataError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
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


def _profile_chain(name_or_path: str) -> list[tuple[Path, dict]]:
    """[(path, its YAML)] from the profile named to the root of its `inherit:` chain.

    `inherit:` names a shipped profile (`paper`) or a path, relative to the inheriting file."""
    chain: list[tuple[Path, dict]] = []
    path = spec_path(name_or_path, PROFILES_DIR, "profile")
    while True:
        if any(path.resolve() == p.resolve() for p, _ in chain):
            raise DataError(f"{path}: `inherit:` loops back to a profile already in the chain "
                            f"({' -> '.join(str(p) for p, _ in chain)})")
        data = _load_yaml(path)
        chain.append((path, data))
        parent = data.pop("inherit", None)
        if parent is None:
            return chain
        if not isinstance(parent, str):
            raise DataError(f"{path}: `inherit:` must name a profile (e.g. paper) or a .yml path, got {parent!r}")
        relative = path.parent / parent
        path = relative if Path(parent).suffix and relative.exists() else spec_path(parent, PROFILES_DIR, "profile")


def _key_line(path: Path, keys: tuple) -> int | None:
    """The line of the nested key `keys` in the YAML file `path` (None if it is not there)."""
    node = yaml.compose(path.read_text(encoding="utf-8"))
    line = None
    for key in keys:
        match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)),
                     None) if isinstance(node, yaml.MappingNode) else None
        if match is None:
            return None
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def load_profile(name_or_path: str) -> dict:
    """The profile merged over the ones it inherits and validated (pipeline/profile.py): a plain
    dict with every default filled; a bad key stops here with its file, line and a suggestion."""
    from pipeline.profile import validate

    chain = _profile_chain(name_or_path)
    merged: dict = {}
    for _, data in reversed(chain):
        merged = deep_merge(merged, data)
    name = chain[0][0].stem
    profile, errors = validate({**merged, "name": name})
    if errors:
        raise DataError("\n  ".join(f"{_where(chain, loc)}: profile {name!r}: {msg}" for loc, msg in errors))
    return profile


def _where(chain: list[tuple[Path, dict]], keys: tuple) -> str:
    """file:line of the most-derived profile in the chain that sets the key (else the profile named)."""
    for path, _ in chain:
        line = _key_line(path, keys)
        if line is not None:
            return f"{path}:{line}"
    return str(chain[0][0])


TASK_TEMPLATES = ("stage2_assistant", "baseline_assistant")  # answer templates a task may replace
RESERVED_FIELDS = {"labels", "label", "id", "inputs"}  # names the pipeline itself gives a row or a template


@dataclass(frozen=True)
class TaskSpec:
    """One classification task (tasks/*.yml or any .yml path).

    Template and data file names in a spec are relative to the spec's own folder (then to
    prompts/ for templates), so a task can live entirely outside the project. `templates`
    maps stage2_assistant / baseline_assistant to the task's own answer templates; both
    receive `answer_prefix`, the one string the label parser also looks for.

    `inputs` names the text fields of one example (default: one, `text`; a sentence-pair task
    says `[premise, hypothesis]`): each is a variable of the question template, and `columns`
    maps each (and `label`) to the column of the data that holds it.
    """

    name: str
    labels: list[str]
    question_template: str
    answer_prefix: str
    templates: dict = field(default_factory=dict)
    inputs: list = field(default_factory=lambda: ["text"])
    unlabeled: list = field(default_factory=list)
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

        def at(key: str) -> str:  # file:line of a field, for every message below
            line = _key_line(path, (key,))
            return f"{path}:{line}" if line else str(path)

        known = [f for f in cls.__dataclass_fields__ if f != "path"]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise DataError(f"{at(key)}: unknown field {key!r} in the task spec; {hint}known fields: {known}")
        missing = sorted(f for f in ("name", "labels", "question_template", "answer_prefix") if f not in data)
        if missing:
            raise DataError(f"{path}: missing field(s) {missing}")
        labels = data["labels"]
        if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) and x.strip() for x in labels)):
            raise DataError(f"{at('labels')}: field 'labels' must be a list of at least two non-empty strings")
        if len(set(labels)) != len(labels):
            raise DataError(f"{at('labels')}: field 'labels' has duplicates: {labels}")
        if not (isinstance(data["answer_prefix"], str) and data["answer_prefix"].strip()):
            raise DataError(f"{at('answer_prefix')}: field 'answer_prefix' must be a non-empty string, e.g. 'Label:'")
        data["question_template"] = _template_name(path, "question_template", data["question_template"])
        extra = data.get("templates") or {}
        if not isinstance(extra, dict) or set(extra) - set(TASK_TEMPLATES):
            raise DataError(f"{at('templates')}: field 'templates' maps only {list(TASK_TEMPLATES)} to template files")
        data["templates"] = {role: _template_name(path, f"templates.{role}", extra[role]) if role in extra
                             else f"{role}.jinja" for role in TASK_TEMPLATES}
        files = data.get("files") or {}
        if files and (not isinstance(files, dict) or set(files) != {"train", "test"}):
            raise DataError(f"{at('files')}: field 'files' needs exactly `train` and `test` (paths relative to the spec)")
        data["files"] = {split: str((path.parent / f).resolve()) for split, f in files.items()}
        inputs = data.get("inputs", ["text"])
        if not (isinstance(inputs, list) and inputs and all(isinstance(x, str) and x.isidentifier() for x in inputs)
                and len(set(inputs)) == len(inputs)) or set(inputs) & RESERVED_FIELDS:
            raise DataError(f"{at('inputs')}: field 'inputs' must list the example's text fields as distinct names "
                            f"(letters, digits, _), none of {sorted(RESERVED_FIELDS)}, e.g. [premise, hypothesis]")
        columns = data.get("columns") or {}
        unknown = sorted(set(columns) - {*inputs, "label"}) if isinstance(columns, dict) else ["?"]
        if unknown:
            raise DataError(f"{at('columns')}: field 'columns' maps {unknown}, which the task does not have; it maps "
                            f"each of `inputs` {inputs} and `label` to a column of the data")
        if data.get("text_files") and inputs != ["text"]:
            raise DataError(f"{at('text_files')}: field 'text_files' reads `text;label` lines, one text per example; "
                            f"a task with `inputs` {inputs} needs `files` (CSV, JSONL, parquet) or `hub`")
        unlabeled = data.get("unlabeled") or []
        if not isinstance(unlabeled, list):
            raise DataError(f"{at('unlabeled')}: field 'unlabeled' lists the label values of rows without a gold "
                            f"label (left out), e.g. [-1]")
        data.update(inputs=inputs, unlabeled=unlabeled)
        return cls(**data, path=path.resolve())

    def input_fields(self, example) -> dict[str, str]:
        """The question template's text fields of one example: a data row (its `inputs`, else its own
        fields), a {field: text} mapping, or, for a one-text task, the text itself."""
        if isinstance(example, str):
            if len(self.inputs) > 1:
                raise DataError(f"task {self.name!r} ({self.path}) asks for the fields {self.inputs}, "
                                f"got one text; give each field")
            return {self.inputs[0]: example}
        fields = example.get("inputs") if isinstance(example.get("inputs"), dict) else example
        missing = [f for f in self.inputs if f not in fields]
        if missing:
            raise DataError(f"task {self.name!r} ({self.path}) asks for the fields {self.inputs}; "
                            f"missing {missing} (given: {sorted(fields)})")
        return {f: fields[f] for f in self.inputs}

    def joined_text(self, fields: dict[str, str]) -> str:
        """One string of an example's text fields (`name: value` lines for several fields): what
        reports, the reference classifiers and the overlap count see as its text."""
        if len(self.inputs) == 1:
            return fields[self.inputs[0]]
        return "\n".join(f"{name}: {fields[name]}" for name in self.inputs)


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


def read_manifest(run_dir: str | Path) -> dict:
    """A run directory's manifest.json, or a DataError naming the path."""
    path = Path(run_dir) / "manifest.json"
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
    return manifest


def recorded_task(manifest: dict) -> str:
    """The task spec a run was made with: its recorded path, or its name for a copied run directory."""
    task = manifest["task"]
    spec = Path(task.get("spec") or "")
    return str(spec if spec.is_file() else spec_path(task.get("name") or str(spec), TASKS_DIR, "task spec"))


@dataclass
class RunContext:
    """Everything a stage needs: the merged profile, the task spec and the run directory.

    A replicate (`--seeds`) is a run directory RUN/seed-N whose `shared_dir` is RUN: the data
    engine's outputs (task splits, training sets, the stage-1 model, the reasonings) are read
    from there, and `seed` is the training seed of stage 2 and the baseline."""

    profile: dict
    task: TaskSpec
    run_dir: Path
    data_dir: Path | None = None
    backend: str | None = None          # CLI override of profile.generation.backend
    gpus: int | None = None             # CLI override of profile.train.gpus
    shared_dir: Path | None = None      # the run directory holding the data engine (replicates only)
    seed: int | None = None             # training seed of stage 2 and the baseline (replicates only)
    profile_source: str | None = None   # --profile as given (a name or a .yml path), for the hints

    def __post_init__(self):
        self.run_dir = Path(self.run_dir).resolve()
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir).resolve()
        if self.shared_dir is not None:
            self.shared_dir = Path(self.shared_dir).resolve()

    def replicate(self, seed: int) -> "RunContext":
        """The context of replicate `seed`: RUN/seed-N over this run's data engine."""
        return dataclasses.replace(self, run_dir=self.run_dir / f"seed-{seed}", shared_dir=self.run_dir, seed=seed)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, backend: str | None = None) -> "RunContext":
        """The context a run directory was made with, from its manifest (merged profile, task
        spec, data directory), so commands on a finished run need only `--run-dir`."""
        manifest = read_manifest(run_dir)
        return cls(manifest["profile"], TaskSpec.load(recorded_task(manifest)), run_dir,
                   data_dir=manifest.get("data_dir"), backend=backend, shared_dir=manifest.get("shared_dir"),
                   seed=(manifest.get("seeds") or {}).get("replicate"), profile_source=manifest.get("profile_source"))

    # --- paths of the run directory (the stages' declared inputs and outputs) ---
    @property
    def home(self) -> Path:
        """Where the data engine's stages (prepare .. build-stage2) keep their outputs."""
        return self.shared_dir or self.run_dir

    @property
    def data(self) -> Path:
        return self.home / "data"

    def task_split(self, split: str) -> Path:
        return self.data / "task" / f"{split}.jsonl"

    def train_set(self, which: str) -> Path:
        """Axolotl `messages` JSONL for stage1 / stage2 / baseline."""
        return self.data / f"{which}.jsonl"

    def model_dir(self, which: str) -> Path:
        return (self.home if which == "stage1" else self.run_dir) / "models" / which

    @property
    def base_model_dir(self) -> Path:
        return self.home / "models" / "tiny-base"

    def axolotl_config(self, which: str) -> Path:
        return self.run_dir / "configs" / f"{which}.yml"

    def log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    @property
    def generations(self) -> Path:
        return self.home / "generations"

    def predictions(self, model: str) -> Path:
        return self.run_dir / "predictions" / f"{model}.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "manifest.json"

    @property
    def base_model(self) -> str:
        """The base model every training run starts from (the tiny one is built in prepare; a GGUF
        one is converted once into a cache folder, pipeline/base_model.py)."""
        if self.profile.get("base_model_gguf"):
            from pipeline.base_model import materialised_dir

            return str(materialised_dir(self.profile["base_model_gguf"]))
        return str(self.base_model_dir) if self.profile["base_model"] == "tiny" else self.profile["base_model"]

    @property
    def chat_template(self) -> str:
        """The chat template's file name in prompts/ (the model family's)."""
        return self.profile.get("chat_template") or "chat_template.jinja"

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
                 "--run-dir", rel(self.home)]  # a replicate is rerun through its parent: --seeds N
        if self.seed is not None:
            parts += ["--seeds", str(self.seed)]
        if self.task.path is not None and self.task.path != (TASKS_DIR / f"{self.task.name}.yml").resolve():
            parts += ["--task", rel(self.task.path)]
        elif self.task.name != "emotion":
            parts += ["--task", self.task.name]
        if self.data_dir is not None:
            parts += ["--data-dir", rel(self.data_dir)]
        return " ".join(parts + list(flags))
