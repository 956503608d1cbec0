"""Preflight: every bad input in tests/bad_inputs/ is reported up front, through the CLI,
as one message naming the file and line (exit 2, no traceback); and the machine checks
(gated model token, GPU, disk, Axolotl configs) fire only where they apply."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import preflight as pf
from pipeline import prompts
from pipeline.preflight import inputs, resources, templates
from pipeline.config import RunContext, TaskSpec, load_profile
from pipeline.io import DataError
from pipeline.run import ORDER

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "bad_inputs"
CASES = yaml.safe_load((BAD / "cases.yml").read_text(encoding="utf-8"))["cases"]


def cli(*args: str, env: dict | None = None, check_only: bool = True, timeout: int = 120):
    """orchestrate.py with `--check` (preflight only), or a plain python command line."""
    cmd = [sys.executable, str(ROOT / "orchestrate.py"), *args, "--check"] if check_only else [sys.executable, *args]
    proc = subprocess.run(cmd,
                          cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          env={**os.environ, **(env or {})})
    print(proc.stdout)
    return proc


def ctx_for(tmp_path, profile="tiny", task="emotion", data_dir=None, **overrides) -> RunContext:
    prof = load_profile(profile)
    for dotted, value in overrides.items():
        node = prof
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return RunContext(prof, TaskSpec.load(task), tmp_path / "run", data_dir=data_dir)


# ------------------------------------------------------------------ the corpus, through the CLI
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_is_reported_with_file_and_line(case, tmp_path):
    args = [a.replace("{bad}", str(BAD)) for a in case["args"]]
    proc = cli(*args, "--run-dir", str(tmp_path / "run"))
    out = proc.stdout
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert out.startswith("error: ") and out.count("error: ") == 1, out
    where = case["file"] + (f":{case['line']}:" if case["line"] is not None else ":")
    assert where in out, f"expected {where!r} in: {out}"
    for fragment in case["expect"]:
        assert fragment in out, f"expected {fragment!r} in: {out}"
    assert not (tmp_path / "run" / "models").exists()  # nothing was built


def test_corpus_covers_each_kind_of_bad_input():
    names = {c["name"] for c in CASES}
    assert {"no_semicolon", "unknown_label", "empty_text", "duplicate_texts", "long_text",
            "reasoning_set_broken_json", "reasoning_set_missing_column", "task_unknown_field",
            "label_not_in_task", "template_unknown_field"} <= names
    for case in CASES:  # every file a case points at exists (missing_split_file names the absent one)
        assert (BAD / case["file"]).exists() or case["name"] == "missing_split_file", case["file"]


def test_good_inputs_pass(tmp_path, shared_emotion):
    proc = cli("prepare", "--profile", "tiny", "--run-dir", str(tmp_path / "a"))
    assert proc.returncode == 0 and "[preflight] ok" in proc.stdout, proc.stdout
    # the real data: the tiny profile's first 400 train / 200 test rows are clean
    proc = cli("prepare", "--profile", "tiny", "--data-dir", str(shared_emotion), "--run-dir", str(tmp_path / "b"))
    assert proc.returncode == 0 and "data, templates, lengths" in proc.stdout, proc.stdout


def test_full_shared_data_has_duplicates_which_warn_policy_keeps(tmp_path, shared_emotion, capsys):
    """All 16,000 train rows hold 31 duplicated texts (30 with conflicting labels)."""
    ctx = ctx_for(tmp_path, data_dir=shared_emotion, task_data__limit_train=None)
    with pytest.raises(DataError, match=r"train\.txt:5068: field 'text' duplicates line 1502 .*31 duplicated texts"):
        inputs.check_data_dir(ctx)
    ctx.profile["task_data"]["duplicate_texts"] = "warn"
    rows = inputs.check_data_dir(ctx)
    assert len(rows["train"]) == 16000 and "warning:" in capsys.readouterr().err


def test_orchestrate_runs_preflight_before_any_stage(tmp_path):
    """Wiring: orchestrate.py must call preflight before run_stages (fails until it does)."""
    proc = cli(str(ROOT / "orchestrate.py"), "prepare", "--profile", "tiny", "--data-dir",
               str(BAD / "data" / "duplicate_texts"), "--run-dir", str(tmp_path / "run"), check_only=False, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout, proc.stdout
    assert "duplicate_texts/train.txt:5: field 'text' duplicates line 2" in proc.stdout
    assert not (tmp_path / "run" / "models").exists()


@pytest.mark.parametrize("argv, message", [
    (["generate"], "stage 'generate' needs stage 'prepare' finished"),
    (["all", "--gpus", "2"], "training asks for 2 GPUs (--gpus / train.gpus) but no NVIDIA GPU is visible"),
])
def test_check_refuses_what_the_run_would_refuse(argv, message, tmp_path, monkeypatch, capsys):
    """`--check` on an empty run directory or with GPUs this machine lacks fails as the run would."""
    import orchestrate

    monkeypatch.setattr(resources, "visible_gpus", lambda: 0)
    code = orchestrate.main([*argv, "--profile", "tiny", "--run-dir", str(tmp_path / "run"), "--check"])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run" / "models").exists()


# ------------------------------------------------------------------ data and templates, in process
def test_long_text_is_counted_with_the_local_tokenizer(tmp_path):
    from pipeline.tiny_model import train_tokenizer

    ctx = ctx_for(tmp_path, data_dir=BAD / "data" / "long_text")
    tok = train_tokenizer(["i feel restless and i keep walking around the house"] * 20, vocab_size=400)
    ctx.base_model_dir.mkdir(parents=True)
    tok.save(str(ctx.base_model_dir / "tokenizer.json"))
    text = (BAD / "data" / "long_text" / "train.txt").read_text().splitlines()[2].rpartition(";")[0]
    n = len(tok.encode(text, add_special_tokens=False).ids)
    with pytest.raises(DataError) as e:
        pf.preflight(ctx, ["prepare"])
    msg = str(e.value)
    assert f"long_text/train.txt:3: field 'text' is {n} tokens (counted with the base model's tokenizer" in msg
    assert "ESTIMATE" not in msg


def test_texts_that_fit_pass_and_a_lower_sequence_len_fails(tmp_path):
    ctx = ctx_for(tmp_path, data_dir=BAD / "data" / "duplicate_texts", task_data__duplicate_texts="warn")
    pf.preflight(ctx, ["prepare"])
    ctx.profile["train"]["axolotl"]["sequence_len"] = 40  # the prompt alone is ~60 estimated tokens
    with pytest.raises(DataError, match=r"train\.txt:1: .*sequence_len 40"):
        pf.preflight(ctx, ["prepare"])


@pytest.mark.parametrize("name, broken, fragment", [
    ("stage1_user.jinja", "Question: {{ question }}\nAnswer: {{ gold }}\n", "'gold' is undefined"),
    ("stage1_assistant.jinja", "\n\n{{ reasoning_text }}\n", "'reasoning_text' is undefined"),
    ("stage2_assistant.jinja", "{{ reasoning }}\n\nLabel: {{ labels }}\n", "'labels' is undefined"),
    ("baseline_assistant.jinja", "Label: {{ label.name }}\n", "has no attribute 'name'"),
    ("chat_template.jinja", "{{ bos_token }}\n{% for m in messages %}{{ m.text }}{% endfor %}\n",
     "has no attribute 'text'"),
])
def test_every_template_the_task_uses_is_rendered(tmp_path, monkeypatch, name, broken, fragment):
    prompts_dir = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts_dir)
    (prompts_dir / name).write_text(broken, encoding="utf-8")
    monkeypatch.setattr(prompts, "PROMPTS_DIR", prompts_dir)  # what the stages render with
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "{{" in text and fragment.split("'")[1] in text)
    with pytest.raises(DataError) as e:
        templates.check_templates(TaskSpec.load("emotion"), {"text": "i feel fine", "label": "joy"})
    assert f"{prompts_dir / name}:{line}: " in str(e.value) and fragment in str(e.value)


def test_a_question_template_beside_its_task_spec_is_rendered_by_the_pipeline(tmp_path):
    """A task's own template may live outside prompts/ (a path relative to it): preflight and the
    stages load it the same way, through pipeline/prompts.py."""
    spec = tmp_path / "task.yml"
    data = yaml.safe_load((ROOT / "tasks" / "emotion.yml").read_text())
    (tmp_path / "q.jinja").write_text("Classify: {{ text }}\n", encoding="utf-8")
    data["question_template"] = os.path.relpath(tmp_path / "q.jinja", ROOT / "prompts")
    spec.write_text(yaml.safe_dump(data))
    task = TaskSpec.load(str(spec))
    templates.check_templates(task, {"text": "i feel fine", "label": "joy"})
    assert prompts.classify_messages(task, "i feel fine") == [{"role": "user", "content": "Classify: i feel fine"}]


def test_prepared_split_with_duplicate_ids_is_reported(tmp_path):
    ctx = ctx_for(tmp_path)
    path = ctx.task_split("train")
    path.parent.mkdir(parents=True)
    rows = [{"id": "train-00000", "text": "a", "label": "joy"}, {"id": "train-00001", "text": "b", "label": "joy"},
            {"id": "train-00000", "text": "c", "label": "love"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"train\.jsonl:3: field 'id' 'train-00000' duplicates line 1"):
        pf.preflight(ctx, ["build-stage2"])


@pytest.mark.parametrize("shard, ok", [("0/2", True), ("1/2", True), ("2/2", False), ("a/2", False), ("1", False)])
def test_shard_argument(tmp_path, shard, ok):
    ctx = ctx_for(tmp_path)
    if ok:
        pf.preflight(ctx, [], shard=shard)
    else:
        with pytest.raises(DataError, match="expected i/N with 0 <= i < N"):
            pf.preflight(ctx, [], shard=shard)


def test_only_pending_stages_are_checked(tmp_path):
    """A stage the manifest records fresh is not re-checked (run_stages skips it), unless forced."""
    from pipeline.manifest import Manifest
    from pipeline.run import fingerprints, pending
    from pipeline.stages import STAGES

    ctx = ctx_for(tmp_path, data_dir=BAD / "data" / "no_semicolon")
    for out in STAGES["prepare"].outputs(ctx):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("")
    manifest = Manifest(ctx.manifest_path)
    manifest.start("prepare", fingerprints(ctx)["prepare"])
    manifest.finish("prepare", STAGES["prepare"].outputs(ctx))
    assert pending(ctx, ["prepare"]) == []  # the runner's own list
    pf.preflight(ctx, ["prepare"])  # the bad file is not read again
    with pytest.raises(DataError, match="no ';'"):
        pf.preflight(ctx, ["prepare"], force={"prepare"})


# ------------------------------------------------------------------ machine checks
@pytest.fixture
def no_hub_token(monkeypatch):
    import huggingface_hub

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)


def test_paper_training_checks_token_then_gpu_then_disk(tmp_path, monkeypatch, no_hub_token):
    ctx = ctx_for(tmp_path, profile="paper")
    monkeypatch.setattr(resources, "visible_gpus", lambda: 0)
    calls = []
    monkeypatch.setattr(pf, "check_axolotl_configs", lambda ctx, training: calls.append(training))
    with pytest.raises(DataError, match=r"meta-llama/Llama-3\.2-1B-Instruct' is gated .* no token was found"):
        pf.preflight(ctx, ["train-stage1"])

    monkeypatch.setenv("HF_TOKEN", "hf_x" * 8)
    with pytest.raises(DataError, match=r"training \(train-stage1\) needs an NVIDIA GPU"):
        pf.preflight(ctx, ["train-stage1"])

    monkeypatch.setattr(resources, "visible_gpus", lambda: 1)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(resources.shutil, "disk_usage", lambda p: usage._replace(free=int(20e9)))
    # 1.236e9 params x (2 B weights x (2 checkpoints + final) + 4 B AdamW moments x 2 checkpoints) x 3 runs
    with pytest.raises(DataError, match=r"20\.0 GB free, but training .* about 51\.9 GB .*1\.236B parameters"):
        pf.preflight(ctx, ["train-stage1", "train-stage2", "train-baseline"])
    with pytest.raises(DataError, match="--gpus"):
        pf.preflight(RunContext(ctx.profile, ctx.task, ctx.run_dir, gpus=4), ["train-stage1"])

    monkeypatch.setattr(resources.shutil, "disk_usage", lambda p: usage._replace(free=int(60e9)))
    pf.preflight(ctx, ["train-stage1", "train-stage2", "train-baseline"])
    assert calls == [["stage1", "stage2", "baseline"]]


def test_offline_hub_model_must_be_cached(tmp_path, no_hub_token):
    ctx = ctx_for(tmp_path, profile="paper", offline=True)
    with pytest.raises(DataError, match="offline is true but base_model .* is not in the Hugging Face cache"):
        resources.check_base_model(ctx)
    resources.check_base_model(ctx_for(tmp_path, profile="paper", base_model=str(tmp_path)))  # a local folder is fine


def test_vllm_on_a_cuda_profile_needs_a_gpu(tmp_path, monkeypatch):
    import pipeline.generation.launch as launch

    monkeypatch.setattr(launch, "resolve_backend", lambda name: "transformers" if name == "transformers" else "vllm")
    monkeypatch.setattr(resources, "visible_gpus", lambda: 0)
    paper = ctx_for(tmp_path, profile="paper")
    assert resources.profile_device(paper.profile) == "cuda" and resources.profile_device(ctx_for(tmp_path).profile) == "cpu"
    with pytest.raises(DataError, match=r"device: cuda\): generation backend vllm needs an NVIDIA GPU .*--backend transformers"):
        resources.check_devices(paper, ["generate"])
    resources.check_devices(ctx_for(tmp_path), ["generate", "predict"])                       # tiny: CPU profile
    resources.check_devices(ctx_for(tmp_path, profile="paper", device="cpu"), ["generate"])   # the explicit flag
    resources.check_devices(RunContext(paper.profile, paper.task, paper.run_dir, backend="transformers"), ["predict"])
    monkeypatch.setattr(resources, "visible_gpus", lambda: 1)
    resources.check_devices(paper, ["generate"])
    with pytest.raises(DataError, match="tensor_parallel_size x data_parallel_size = 2 GPUs, but 1 visible"):
        resources.check_devices(ctx_for(tmp_path, profile="paper", generation__data_parallel_size=2), ["predict"])


def test_visible_gpus_respects_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert resources.visible_gpus() == 0


def test_param_count_reads_a_local_checkpoint_else_the_tiny_shape(tmp_path):
    ctx = ctx_for(tmp_path)
    # the tiny profile's shape, before prepare built it (tests/test_reliability.py checks the built one)
    assert resources.param_count(ctx) == (754_304, "from the profile's tiny_model shape")
    header = json.dumps({"__metadata__": {}, "a": {"dtype": "F32", "shape": [3, 5], "data_offsets": [0, 60]},
                         "b": {"dtype": "F32", "shape": [7], "data_offsets": [60, 88]}}).encode()
    ctx.base_model_dir.mkdir(parents=True)
    (ctx.base_model_dir / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(88))
    assert resources.param_count(ctx) == (22, f"counted in {ctx.base_model_dir}")
    assert resources.param_count(ctx_for(tmp_path, profile="paper"))[0] == 1_235_814_400
    assert resources.param_count(ctx_for(tmp_path, base_model="someone/Qwen2.5-7B-Instruct"))[0] == 7_000_000_000
    assert resources.param_count(ctx_for(tmp_path, base_model="someone/model", plan__parameters=3.2e9)) == (
        3_200_000_000, "the profile's plan.parameters")


def test_axolotl_configs_checked_only_when_training(tmp_path):
    script = ("import sys; from pipeline.config import *; from pipeline.preflight import preflight;"
              f"preflight(RunContext(load_profile('tiny'), TaskSpec.load('emotion'), {str(tmp_path / 'r')!r}),"
              " ['prepare', 'generate', 'build-stage2', 'predict', 'evaluate']);"
              "print('axolotl imported:', 'axolotl' in sys.modules)")
    proc = cli("-c", script, check_only=False)
    assert proc.returncode == 0 and "axolotl imported: False" in proc.stdout

    ctx = ctx_for(tmp_path, train__axolotl__learning_rat=0.1)
    with pytest.raises(DataError) as e:
        pf.preflight(ctx, ["train-stage1"])
    assert "stage1.yml with profile 'tiny' overrides" in str(e.value) and "learning_rat" in str(e.value)
    ctx = ctx_for(tmp_path, train__stage2={"micro_batch_size": "many"})
    with pytest.raises(DataError, match=r"(?s)stage2\.yml .*Axolotl rejects the config.*micro_batch_size"):
        pf.preflight(ctx, ["train-stage2"])
    pf.preflight(ctx_for(tmp_path), ["train-stage1", "train-stage2", "train-baseline"])
    # the paper configs validate against the profile's target hardware (H100), on any machine
    resources.check_axolotl_configs(ctx_for(tmp_path, profile="paper"), ["stage1", "stage2", "baseline"])
