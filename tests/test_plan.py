"""`orchestrate.py plan` takes its training MFU from the measurement of the shipped config
and says where it came from; --mfu overrides it."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from pipeline.config import ROOT
from pipeline.plan import MEASURED_TRAINING, measured_mfu, train_flop_per_token


def plan(*args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "plan", "--profile", "paper", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_plan_defaults_to_the_measured_mfu_of_the_shipped_config():
    shipped = next(r for r in json.loads(MEASURED_TRAINING.read_text())["results"] if r["variant"] == "shipped")
    out = plan()
    assert f"MFU {shipped['mfu']:.1%} for training" in out
    assert re.search(r"training MFU from: bench/results/train_throughput_gpu\.json, variant 'shipped' \(micro-batch 8 x "
                     r"accumulation 2, checkpointing off, .*\), 1 x NVIDIA H100", out), out
    # the stage-1 hours follow from it: FLOP / (989 TFLOP/s x MFU)
    row = next(line.split() for line in out.splitlines() if line.startswith("train-stage1"))
    flop, expected_h = float(row[3]), float(row[5])
    assert abs(expected_h - flop / (989e12 * shipped["mfu"]) / 3600) < 2e-3


def test_mfu_flag_overrides_the_measurement():
    out = plan("--mfu", "0.5")
    assert "MFU 50.0% for training" in out and "training MFU from: --mfu" in out


def test_no_measurement_of_the_shipped_config_means_no_default(tmp_path):
    data = json.loads(MEASURED_TRAINING.read_text())
    data["results"] = [r for r in data["results"] if r["variant"] != "shipped"]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    assert measured_mfu(path) is None
    assert measured_mfu(tmp_path / "absent.json") is None


def test_flop_per_token_adds_attention_over_the_row():
    # Llama-3.2-1B, 350-token rows: 6N plus 12 x 16 layers x 2048 hidden x 350 tokens
    assert train_flop_per_token(1.236e9, 16, 2048, 350) == 6 * 1.236e9 + 137_625_600


def test_plan_uses_the_profiles_and_the_datas_own_sizes(shared_emotion):
    """`plan --profile tiny` counts the tiny model and its 600 synthetic rows, not the paper's;
    --data-dir counts the train file's rows."""
    from orchestrate import build_parser, context_for
    from pipeline.plan import estimate

    tiny = {r["stage"]: r for r in estimate(context_for(build_parser().parse_args(["plan", "--profile", "tiny"])),
                                            989.0, 0.3, 20000.0)}
    assert tiny["train-stage1"]["rows"] == tiny["train-stage2"]["rows"] == 600
    assert tiny["train-stage2"]["tokens"] == 300 * 16 * 55  # max_steps x rows per step x tokens per row
    real = {r["stage"]: r for r in estimate(context_for(build_parser().parse_args(
        ["plan", "--profile", "paper", "--data-dir", str(shared_emotion)])), 989.0, 0.3, 20000.0)}
    assert real["train-baseline"]["rows"] == real["generate"]["rows"] == 16000
    assert real["train-baseline"]["source"] == "data"
