"""`orchestrate.py export` on the tiny demo's run: the dataset reloads with `datasets` with the
run's own rows, and the dataset and model cards state the run's real settings and numbers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import ROOT
from pipeline.export import DATASET_FILES, push_to_hub
from pipeline.io import read_json, read_jsonl

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    return Path(tiny_run).resolve()


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "export", "--run-dir", str(run_dir),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **OFFLINE})
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0
    return out


def card(path: Path) -> tuple[dict, str]:
    """(YAML header, body) of a README.md card."""
    _, header, body = path.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(header), body


def test_dataset_reloads_with_the_runs_rows(exported, run_dir, monkeypatch, tmp_path):
    from datasets import load_dataset, load_from_disk

    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    for name, rel in DATASET_FILES.items():
        want = read_jsonl(run_dir / rel)
        assert want, rel
        parquet = sorted((exported / "dataset" / name).glob("*.parquet"))
        assert [p.name for p in parquet] == ["train-00000-of-00001.parquet"]
        # a private cache: `datasets` may otherwise return an earlier export's rows from ~/.cache
        assert load_dataset("parquet", data_files={"train": [str(p) for p in parquet]},
                            cache_dir=str(tmp_path))["train"].to_list() == want
        assert load_from_disk(str(exported / "arrow" / name))["train"].to_list() == want
        # the card's `configs` make the folder itself loadable by config name, as on the hub
        assert load_dataset(str(exported / "dataset"), name, cache_dir=str(tmp_path))["train"].to_list() == want


def test_dataset_card_states_the_runs_settings(exported, run_dir):
    header, body = card(exported / "dataset" / "README.md")
    manifest, stats = read_json(run_dir / "manifest.json"), read_json(run_dir / "generations" / "generation_stats.json")
    gen = manifest["profile"]["generation"]
    assert header["license"] == "other" and header["license_name"] == "fill-in"
    assert header["task_categories"] == ["text-classification"]
    assert {c["config_name"] for c in header["configs"]} == set(DATASET_FILES)
    for key in ("temperature", "top_p", "max_tokens", "seed", "max_retries"):
        assert f"| {key} | {gen[key]} |" in body, key
    assert f"| backend | {stats['backend']} {stats['backend_version']} |" in body
    assert f"kept: {stats['kept']}, dropped: {stats['dropped']}" in body
    for label, c in stats["qc"]["per_class"].items():
        assert f"| {label} | {c['kept']} | {c['retried']} | {c['dropped']} |" in body
    assert "synthetic data" in body and "tiny random-initialised Llama" in body
    source = manifest["profile"]["reasoning_set"]["source"]
    assert ("examples made by `pipeline/synthetic.py`" if source == "synthetic" else f"`{source}`") in body
    assert f"| `reasonings` | {stats['kept']} |" in body
    first_request = read_jsonl(run_dir / "generations" / "attempt-0" / "requests.jsonl")[0]["messages"][0]["content"]
    assert first_request in body
    assert (exported / "dataset" / "generation_stats.json").read_bytes() == \
        (run_dir / "generations" / "generation_stats.json").read_bytes()


@pytest.mark.parametrize("which", ["stage1", "stage2", "baseline"])
def test_model_folders_and_cards(exported, run_dir, which):
    folder, src = exported / "models" / which, run_dir / "models" / which
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (folder / name).read_bytes() == (src / name).read_bytes(), name
    # weights, tokenizer and configs; no checkpoints, trainer state or Axolotl's debug log
    assert {p.name for p in folder.iterdir()} == \
        {p.name for p in src.iterdir() if p.is_file()} - {"debug.log", "training_args.bin"} | {"README.md", "axolotl_config.yml"}
    resolved = (run_dir / "configs" / f"{which}.yml").read_text()
    assert (folder / "axolotl_config.yml").read_text() == resolved
    header, body = card(folder / "README.md")
    assert header["library_name"] == "transformers" and header["license"] == "other"
    assert "base_model" not in header  # the tiny base model is local, not a hub id
    assert resolved.strip() in body
    settings = yaml.safe_load(resolved)
    assert f"learning rate {settings['learning_rate']}, {settings['lr_scheduler']} schedule" in body
    assert f"sequence length {settings['sequence_len']}, micro-batch {settings['micro_batch_size']}" in body
    training = read_json(run_dir / "manifest.json")["stages"][f"train-{which}"]["info"]
    assert f"| rows trained (after Axolotl's length filter) | {training['rows_trained']} |" in body
    metrics = read_json(run_dir / "metrics.json")["models"]
    name = {"stage2": "reasoning", "baseline": "baseline"}.get(which)
    if name:
        m = metrics[name]
        assert f"| accuracy | {m['accuracy']:.4f} |" in body and f"| macro-F1 | {m['macro_f1']:.4f} |" in body
        assert f"({m['n']} examples)" in body and f"--model {name}" in body
    else:
        assert "| accuracy |" not in body


def test_push_needs_a_token_and_uploads_nothing_without_one(run_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(OFFLINE, HF_HOME=str(tmp_path / "hf"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "export", "--run-dir", str(run_dir),
                           "--out", str(out), "--push-to-hub", "someorg"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 2
    assert "no Hugging Face token" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()  # it stopped before doing any work


def test_push_uploads_each_folder_to_its_repo(exported, monkeypatch):
    """The hub client is replaced by a recorder: which repos are made and what goes into each."""
    import huggingface_hub

    calls = []

    class Recorder:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, repo_type, private, exist_ok):
            calls.append(("create", repo_id, repo_type, private))

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            calls.append(("upload", repo_id, repo_type, Path(folder_path)))

    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    ids = {"dataset": "org/emotion-tiny-reasonings", "stage2": "org/emotion-tiny-stage2"}
    urls = push_to_hub(exported, ids, "tok")
    assert calls == [("token", "tok"),
                     ("create", ids["dataset"], "dataset", True), ("upload", ids["dataset"], "dataset", exported / "dataset"),
                     ("create", ids["stage2"], "model", True), ("upload", ids["stage2"], "model", exported / "models" / "stage2")]
    assert urls == ["https://huggingface.co/datasets/org/emotion-tiny-reasonings",
                    "https://huggingface.co/org/emotion-tiny-stage2"]
