"""Sharded generation end to end, through the CLI: `generate --shard 0/2` and `--shard 1/2`
in one run directory, then `generate` without --shard to merge, must give exactly the
reasonings of an unsharded `generate`, with every retry round run on each shard's own
share and nothing generated again by the merge."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import orchestrate
from pipeline.config import load_profile
from pipeline.generation.runner import select_shard
from pipeline.io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl

pytestmark = pytest.mark.slow
N_TRAIN = 48  # a subset of the tiny run's train split keeps four generate runs short


def _qc_profile(folder: Path) -> Path:
    """The tiny profile with the quality filter on, so that generate has retry rounds to shard."""
    path = folder / "tiny-qc.yml"
    if not path.exists():
        path.write_text("inherit: tiny\nqc: {enabled: true}\n")
    return path


def _copy_trained(tiny_run: Path, dest: Path) -> Path:
    """A run directory with the tiny run's prepare and train-stage1 (and its manifest records) only,
    recorded as made with the quality-filter profile (the same data and stage 1 as tiny's)."""
    shutil.copytree(tiny_run / "data", dest / "data")
    shutil.copytree(tiny_run / "models" / "stage1", dest / "models" / "stage1")
    train = read_jsonl(dest / "data" / "task" / "train.jsonl")[:N_TRAIN]
    atomic_write_jsonl(dest / "data" / "task" / "train.jsonl", train)
    manifest = read_json(tiny_run / "manifest.json")
    for key in ("stages", "state"):
        manifest[key] = {k: v for k, v in manifest.get(key, {}).items() if k in ("prepare", "train-stage1")}
    profile = _qc_profile(dest.parent)
    manifest["profile"], manifest["profile_source"] = load_profile(str(profile)), str(profile)
    atomic_write_json(dest / "manifest.json", manifest)
    return dest


def _generate(run: Path, *args: str) -> str:
    return orchestrate("generate", "--profile", str(_qc_profile(run.parent)), "--run-dir", str(run), *args,
                       timeout=900).stdout


def test_two_shards_and_a_merge_equal_the_unsharded_run(tiny_run, tmp_path):
    whole = _copy_trained(tiny_run, tmp_path / "whole")
    sharded = _copy_trained(tiny_run, tmp_path / "sharded")
    _generate(whole)
    stats = read_json(whole / "generations" / "generation_stats.json")
    assert len(stats["rounds"]) >= 2, "the tiny model's QC rejects should make at least one retry round"

    train_ids = [r["id"] for r in read_jsonl(sharded / "data" / "task" / "train.jsonl")]
    for i in range(2):
        _generate(sharded, "--shard", f"{i}/2")
        share = select_shard(train_ids, f"{i}/2")
        for attempt_dir in sorted((sharded / "generations").glob("attempt-*")):
            asked = [r["id"] for r in read_jsonl(attempt_dir / f"requests-shard-{i}-of-2.jsonl")]
            assert set(asked) <= set(share), f"shard {i}/2 asked for another share's ids in {attempt_dir.name}"
        summary = read_json(sharded / "generations" / f"shard-{i}-of-2.json")
        assert summary["rows"] == len(share) and summary["kept"] + summary["dropped"] == len(share)
    assert not (sharded / "generations" / "reasonings.jsonl").exists()  # a shard is not the finished stage

    # every retry round ran on the shards: the same prompts in all as the unsharded run
    shard_prompts = sum(read_json(sharded / "generations" / f"shard-{i}-of-2.json")["prompts"] for i in range(2))
    assert shard_prompts == stats["prompts"]

    out = _generate(sharded)
    merged = read_json(sharded / "generations" / "generation_stats.json")
    assert [r["generated"] for r in merged["rounds"]] == [0] * len(stats["rounds"]), out
    assert [r["engine_start_s"] for r in merged["rounds"]] == [0] * len(stats["rounds"])  # no engine was started
    assert read_jsonl(sharded / "generations" / "reasonings.jsonl") == read_jsonl(whole / "generations" / "reasonings.jsonl")
    assert merged["kept"] == stats["kept"] and merged["qc"] == stats["qc"]

    records = read_json(sharded / "manifest.json")["stages"]
    assert {records[f"generate --shard {i}/2"]["status"] for i in range(2)} == {"done"}
    assert records["generate"]["status"] == "done"


def test_a_shard_needs_the_trained_stage1(tmp_path):
    proc = orchestrate("generate", "--profile", "tiny", "--run-dir", str(tmp_path / "run"), "--shard", "0/2",
                       check=False, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout, proc.stdout
    assert "stage 'generate' needs stage 'prepare'" in proc.stdout
    manifest = tmp_path / "run" / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["stages"] == {}
