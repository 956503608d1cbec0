"""Every Axolotl config the project ships or resolves passes Axolotl's own schema, the
shipped ones hold the paper's values, and the tiny profile changes only what a CPU needs.

Fast: no model, no data; Axolotl is imported once for its schema and templates.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.config import AXOLOTL_CONFIGS_DIR, PROMPTS_DIR, ROOT, TRAINED_MODELS, RunContext, TaskSpec, load_profile  # noqa: E402
from pipeline.io import DataError  # noqa: E402
from pipeline.prompts import CHAT_TEMPLATE, chat_template  # noqa: E402
from pipeline.train import resolve_config, validate_config  # noqa: E402

PROFILES = ("paper", "tiny")

# The only Axolotl keys the tiny profile may change relative to the paper's resolved
# config (union over stage1/stage2/baseline). Anything else would make the CPU demo
# test a different recipe from the one the paper profile trains.
TINY_ALLOWED_CHANGES = {
    # base model: the tiny random-initialised Llama that `prepare` builds
    "base_model",
    # precision: fp32 on a CPU (no bf16 / TF32)
    "bf16", "tf32",
    # steps: a few hundred optimiser steps instead of full epochs
    "num_epochs", "max_steps", "warmup_steps", "warmup_ratio", "save_steps",
    # learning rate: a from-scratch tiny model needs a larger one
    "learning_rate",
    # batch and sequence sizes
    "sequence_len", "micro_batch_size", "gradient_accumulation_steps",
    # GPU-only speed options (packing, Liger kernels, torch.compile, loader workers)
    "sample_packing", "eval_sample_packing", "pad_to_sequence_len", "plugins",
    "liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_fused_linear_cross_entropy",
    "dataloader_num_workers",
    # tokenizing 600 rows in one process (worker processes cost seconds on 2 cores)
    "dataset_num_proc",
}

PAPER_VALUES = {
    "base_model": "meta-llama/Llama-3.2-1B-Instruct",
    "lr_scheduler": "cosine",
    "chat_template": "jinja",
    "chat_template_jinja": "prompts/chat_template.jinja",
    "bf16": "auto",
}
# Stage 1's speed settings, chosen from measurements on an H100 (the config's comments,
# bench/results/train_throughput_gpu.json): none changes the maths; 16 rows per step.
STAGE1_SPEED = {"micro_batch_size": 8, "gradient_accumulation_steps": 2, "gradient_checkpointing": False,
                "attn_implementation": "sdpa", "torch_compile": False, "liger_fused_linear_cross_entropy": True}
PAPER_DATASET_VALUES = {"type": "chat_template", "field_messages": "messages", "roles_to_train": ["assistant"],
                        "train_on_eos": "turn"}

_MISSING = object()


def _shipped(which: str) -> dict:
    with open(AXOLOTL_CONFIGS_DIR / f"{which}.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def _ctx(profile: str, run_dir) -> RunContext:
    return RunContext(load_profile(profile), TaskSpec.load("emotion"), run_dir)


@pytest.fixture
def at_root(monkeypatch):
    """orchestrate.py's default run dir (runs/<profile>) and the shipped configs' relative
    paths are relative to the working directory: the repository root."""
    monkeypatch.chdir(ROOT)
    return ROOT


# ---------------------------------------------------------------- resolved configs
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("which", TRAINED_MODELS)
def test_resolved_config_passes_axolotl_validation(profile, which, tmp_path):
    ctx = _ctx(profile, tmp_path / "run")
    cfg = resolve_config(ctx, which)
    validate_config(cfg, ctx.profile["train"].get("target_hardware"), f"{profile}/{which}")
    # the run directory supplies every path, absolute, and the one chat template
    assert cfg["datasets"][0]["path"] == str(ctx.train_set(which))
    assert cfg["dataset_prepared_path"] == str(ctx.run_dir / "prepared" / which)
    assert cfg["output_dir"] == str(ctx.model_dir(which))
    assert cfg["chat_template"] == "jinja"
    assert cfg["chat_template_jinja"] == str(PROMPTS_DIR / CHAT_TEMPLATE)
    assert Path(cfg["chat_template_jinja"]).is_absolute()
    assert not any(v is None for v in cfg.values()), "None values must be dropped, not passed to Axolotl"


# ---------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("which", TRAINED_MODELS)
def test_shipped_config_as_is_passes_axolotl_validation_on_paper_hardware(which):
    validate_config(_shipped(which), load_profile("paper")["train"]["target_hardware"], f"axolotl_configs/{which}.yml")


@pytest.mark.parametrize("which", TRAINED_MODELS)
def test_shipped_config_holds_the_paper_values(which):
    from axolotl.utils.config import validate_config as axolotl_validate
    from axolotl.utils.dict import DictDefault

    cfg = _shipped(which)
    assert {k: cfg.get(k, _MISSING) for k in PAPER_VALUES} == PAPER_VALUES
    # YAML 1.1 reads `2e-5` (no dot) as a string; Axolotl's schema turns it into the float
    assert float(cfg["learning_rate"]) == 2e-5
    caps = {"fp8": False, "n_gpu": 1, **load_profile("paper")["train"]["target_hardware"]}
    seen = axolotl_validate(DictDefault(copy.deepcopy(cfg)), capabilities=caps,
                            env_capabilities={"torch_version": "2.13.0"})
    assert seen["learning_rate"] == 2e-5 and isinstance(seen["learning_rate"], float)
    assert (seen["lr_scheduler"], seen["gradient_checkpointing"], seen["attn_implementation"]) == \
        ("cosine", cfg["gradient_checkpointing"], cfg["attn_implementation"])
    assert len(cfg["datasets"]) == 1
    ds = cfg["datasets"][0]
    assert {k: ds.get(k, _MISSING) for k in PAPER_DATASET_VALUES} == PAPER_DATASET_VALUES
    assert cfg["special_tokens"] == {"pad_token": "<|finetune_right_pad_id|>"}
    assert "train_on_inputs" not in cfg or cfg["train_on_inputs"] is False


def test_stage1_runs_the_measured_fastest_settings_with_the_same_maths():
    cfg = _shipped("stage1")
    assert {k: cfg.get(k, _MISSING) for k in STAGE1_SPEED} == STAGE1_SPEED
    assert cfg["micro_batch_size"] * cfg["gradient_accumulation_steps"] == 16  # rows per optimizer step
    assert (float(cfg["learning_rate"]), cfg["num_epochs"], cfg["warmup_ratio"], cfg["sequence_len"]) == \
        (2e-5, 1, 0.03, 2048)


def test_shipped_configs_differ_only_in_paths_and_schedule():
    """Stage 2 and the baseline share every hyper-parameter: only the target differs; neither packs
    rows (packing would make the number of updates follow the token count)."""
    s2, bl = _shipped("stage2"), _shipped("baseline")
    assert s2["sample_packing"] is False and bl["sample_packing"] is False
    for cfg, which in ((s2, "stage2"), (bl, "baseline")):
        cfg["datasets"][0].pop("path")
        for key in ("dataset_prepared_path", "output_dir"):
            assert cfg.pop(key).endswith(f"/{which}")
    assert s2 == bl


@pytest.mark.parametrize("which", TRAINED_MODELS)
def test_shipped_paths_are_where_orchestrate_writes_by_default(which, at_root):
    from orchestrate import build_parser, context_for

    ctx = context_for(build_parser().parse_args(["prepare" if which == "stage1" else "build-stage2"]))
    assert (ctx.profile["name"], ctx.task.name, ctx.run_dir) == ("paper", "emotion", ROOT / "runs" / "paper")
    cfg = _shipped(which)
    assert cfg["datasets"][0]["path"] == str(ctx.train_set(which).relative_to(ROOT))
    assert cfg["dataset_prepared_path"] == str((ctx.run_dir / "prepared" / which).relative_to(ROOT))
    assert cfg["output_dir"] == str(ctx.model_dir(which).relative_to(ROOT))


@pytest.mark.parametrize("which", TRAINED_MODELS)
def test_paper_profile_resolves_to_exactly_the_shipped_config(which, at_root):
    """The paper profile overrides nothing: `orchestrate.py train-*` runs the shipped config,
    with its relative paths made absolute."""
    ctx = _ctx("paper", "runs/paper")
    expected = _shipped(which)
    expected["chat_template_jinja"] = str(ROOT / expected["chat_template_jinja"])
    expected["datasets"][0]["path"] = str(ROOT / expected["datasets"][0]["path"])
    for key in ("dataset_prepared_path", "output_dir"):
        expected[key] = str(ROOT / expected[key])
    assert resolve_config(ctx, which) == expected


@pytest.mark.parametrize("which", TRAINED_MODELS)
def test_axolotl_reads_the_project_template_from_the_shipped_config(which, at_root):
    """From the repository root, Axolotl loads prompts/chat_template.jinja's text (run
    elsewhere, it would take the relative path itself for a template)."""
    from axolotl.utils.chat_templates import get_chat_template_from_config

    assert get_chat_template_from_config(_shipped(which)) == chat_template()


# ---------------------------------------------------------------- what validation rejects
def _rejects(cfg: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        validate_config(cfg, None, "test config")


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> dict:
    return resolve_config(_ctx("tiny", tmp_path_factory.mktemp("cfg") / "run"), "stage2")


def test_unknown_top_level_key_is_rejected(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["learning_rat"] = 1e-5   # a typo pydantic alone would silently ignore
    _rejects(cfg, r"does not know: learning_rat")


def test_unknown_dataset_key_is_rejected(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["datasets"][0]["roles_to_trian"] = ["assistant"]
    _rejects(cfg, r"does not know: datasets\[0\]\.roles_to_trian")


@pytest.mark.parametrize("key, value", [("learning_rate", "fast"), ("micro_batch_size", "four"),
                                        ("gradient_checkpointing", "maybe"), ("sequence_len", [256])])
def test_wrong_type_is_rejected(tiny_cfg, key, value):
    cfg = copy.deepcopy(tiny_cfg)
    cfg[key] = value
    _rejects(cfg, rf"Axolotl rejects the config:(.|\n)*{key}")


@pytest.mark.parametrize("key, value", [("roles_to_train", "assistant"), ("train_on_eos", "sometimes")])
def test_wrong_dataset_type_is_rejected(tiny_cfg, key, value):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["datasets"][0][key] = value
    _rejects(cfg, rf"Axolotl rejects the config:(.|\n)*{key}")


def test_a_model_path_containing_mpt_gets_the_reason(tiny_cfg):
    """Axolotl calls any base_model whose path contains 'mpt' (".../emptycache/...") an MPT model and
    refuses gradient checkpointing for it; the error says why and what to move."""
    cfg = copy.deepcopy(tiny_cfg)
    cfg.update(base_model="/tmp/emptycache/SmolLM2-135M-Instruct", gradient_checkpointing=True)
    _rejects(cfg, r"not supported for MPT models(.|\n)*path contains 'mpt' for an MPT model: base_model is /tmp/emptycache/SmolLM2")


def test_the_unmodified_config_is_accepted(tiny_cfg):
    """The rejections above come from the edits, not from the base config."""
    validate_config(copy.deepcopy(tiny_cfg), None, "test config")


# ---------------------------------------------------------------- the tiny profile's overrides
def test_tiny_profile_changes_only_the_allowed_keys(tmp_path):
    changed = set()
    for which in TRAINED_MODELS:
        paper = resolve_config(_ctx("paper", tmp_path / "run"), which)
        tiny = resolve_config(_ctx("tiny", tmp_path / "run"), which)
        changed |= {k for k in paper.keys() | tiny.keys() if paper.get(k, _MISSING) != tiny.get(k, _MISSING)}
    assert changed == TINY_ALLOWED_CHANGES


def test_tiny_profile_touches_train_only_through_axolotl_overrides_hardware_and_concurrency():
    paper, tiny = load_profile("paper")["train"], load_profile("tiny")["train"]
    assert {k for k in paper.keys() | tiny.keys() if paper.get(k) != tiny.get(k)} == \
        {"axolotl", "target_hardware", "concurrent"}
    assert set(tiny["axolotl"]) <= TINY_ALLOWED_CHANGES


# ---------------------------------------------------------------- the chat template
CONVERSATIONS = [
    [{"role": "user", "content": "Which emotion does this text express?\nText: i feel low"}],
    [{"role": "user", "content": "  padded question  "}, {"role": "assistant", "content": "reasoning\n\nLabel: joy "}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Label: love"}, {"role": "user", "content": "again, naïve ü 😀"}],
]


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["user", "user+assistant", "multi-turn"])
def test_project_template_renders_like_axolotl_llama3(conversation, add_generation_prompt):
    from axolotl.utils.chat_templates import get_chat_template
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(template):
        (text,), _ = render_jinja_template([conversation], chat_template=template, bos_token="<|begin_of_text|>",
                                           eos_token="<|eot_id|>", add_generation_prompt=add_generation_prompt)
        return text

    ours = render(chat_template())
    assert ours == render(get_chat_template("llama3"))
    assert ours.count("<|begin_of_text|>") == 1 and ours.startswith("<|begin_of_text|><|start_header_id|>")
    assert "Cutting Knowledge Date" not in ours
    assert ours.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n") == add_generation_prompt
