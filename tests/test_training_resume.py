"""A training stage killed mid-run resumes from its last Axolotl checkpoint instead of
starting over (auto_resume_from_checkpoints), and the stage then finishes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, orchestrate


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    orchestrate("prepare", "--profile", "tiny", "--run-dir", str(run))
    cmd = [sys.executable, str(ROOT / "orchestrate.py"), "train-stage1", "--profile", "tiny", "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = run / "models" / "stage1" / "checkpoint-50"
    deadline = time.time() + 600
    while not (checkpoint / "trainer_state.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert (checkpoint / "trainer_state.json").exists(), "no checkpoint appeared before the deadline"
    time.sleep(1.0)  # let the checkpoint's files settle, as a crash would find them
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((run / "manifest.json").read_text())["stages"]["train-stage1"]["status"] == "running"

    orchestrate("train-stage1", "--profile", "tiny", "--run-dir", str(run))
    log = (run / "logs" / "stage1.log").read_text()
    second = log.rsplit("$ ", 1)[1]  # the resumed invocation's part of the log
    assert f"resume from checkpoint at {run / 'models' / 'stage1' / 'checkpoint-50'}" in second, second[-3000:]
    first_logged_epoch = float(second.split("'epoch': '")[1].split("'")[0])
    assert first_logged_epoch > 1.0, "the resumed run started from the beginning"  # 50 of 150 steps ≈ 1.3 epochs
    stage = json.loads((run / "manifest.json").read_text())["stages"]["train-stage1"]
    assert stage["status"] == "done" and (run / "models" / "stage1" / "model.safetensors").exists()
