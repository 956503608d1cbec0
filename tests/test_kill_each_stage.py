"""Kill the pipeline once inside every stage, rerun the same command each time, and the
finished run equals the uninterrupted one: the session's `own_task_run` (the README's
own-data walkthrough on the shortened tiny profile, which checkpoints every 10 of its 40 steps and
writes a shard every 8 requests, so that every stage has work in flight to interrupt).

Each stage is interrupted in turn, always by a signal to `orchestrate.py` alone (not its
process group, which is the harder case: its children must not outlive it), while its
work is in flight: SIGKILL (a crash or the OOM killer), SIGTERM (`kill PID`, a scheduler's
preemption) or SIGINT (Ctrl-C). Training stages are killed once they have written a complete
checkpoint, so the rerun must resume from it; generate and predict once they have written a
shard, so the rerun must skip the finished ids. Stage 2 and the baseline train side by side
(the tiny profile's `train.concurrent`), so a kill in one interrupts both. Then the run must finish with the same
data files, reasonings, weights of all three models, predictions and metrics as the
uninterrupted run: generation uses per-request seeds and greedy prediction, and training
resumes with the Trainer's saved optimizer, scheduler and RNG state.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline.generation.shards import ShardStore
from tests.conftest import ROOT, survivors

pytestmark = pytest.mark.e2e

# stage, signal, when: at the stage's start line, or once work is on disk (checkpoint, shard)
PLAN = [
    ("prepare", signal.SIGKILL, "start"),
    ("train-stage1", signal.SIGKILL, "progress"),
    ("generate", signal.SIGTERM, "progress"),
    ("build-stage2", signal.SIGKILL, "start"),
    ("train-stage2", signal.SIGINT, "progress"),
    ("train-baseline", signal.SIGTERM, "progress"),
    ("predict", signal.SIGKILL, "progress"),
    ("evaluate", signal.SIGINT, "start"),
]
TRAINED = {"train-stage1": "stage1", "train-stage2": "stage2", "train-baseline": "baseline"}


def work_on_disk(run: Path, stage: str) -> int:
    """The step of a training's last complete checkpoint; the shards of generate or predict."""
    if stage in TRAINED:
        return max((int(c.name.rsplit("-", 1)[1]) for c in (run / "models" / TRAINED[stage]).glob("checkpoint-*")
                     if (c / "trainer_state.json").exists()), default=0)
    shards = {"generate": run / "generations" / "attempt-0" / "shards",
              "predict": run / "predictions" / ".work-baseline" / "shards"}[stage]
    return len(ShardStore(shards).shards())


def all_command(task_dir: Path, run: Path) -> list[str]:
    """The command that made `own_task_run`, into another run directory."""
    return [sys.executable, str(ROOT / "orchestrate.py"), "all", "--profile", str(ROOT / "tests" / "helpers" / "tiny_fast.yml"),
            "--task", str(task_dir / "task.yml"), "--run-dir", str(run)]


def as_from_a_terminal() -> None:
    """Ctrl-C reaches a command started from a terminal. A shell script that starts a job in the
    background (`make test &`, `nohup ... &`) makes it and all its children ignore SIGINT, and
    Python keeps that: the orchestrator would not see the SIGINT this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(command: list[str], run: Path, stage: str, sig: int, when: str) -> tuple[int, str, list[psutil.Process]]:
    """`command` (`orchestrate.py all`) until `stage` is under way, then `sig` to that process alone:
    at its start line, or once it has written a checkpoint or shard more than it found."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=as_from_a_terminal)
    lines: list[str] = []
    children: list[psutil.Process] = []
    started = threading.Event()

    def kill() -> None:
        children.extend(psutil.Process(proc.pid).children(recursive=True))
        proc.send_signal(sig)

    before = []  # the work on disk when the stage started: the baseline trains beside stage 2 (train.concurrent)

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"[{stage}] running") and not started.is_set():
                if when == "start":
                    kill()
                else:
                    before.append(work_on_disk(run, stage))
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(timeout=900), f"[{stage}] never started:\n{''.join(lines[-40:])}"
        if when == "progress":
            deadline = time.time() + 600
            while work_on_disk(run, stage) <= before[0]:
                assert proc.poll() is None, f"run ended before {stage} wrote work to disk:\n{''.join(lines[-40:])}"
                assert time.time() < deadline, f"{stage}: no checkpoint or shard after 600 s"
                time.sleep(0.05)
            kill()
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=30)
    return rc, "".join(lines), survivors(children, timeout=60)


def stage_status(run: Path, stage: str) -> str | None:
    path = run / "manifest.json"
    return json.loads(path.read_text())["stages"].get(stage, {}).get("status") if path.exists() else None


def rows_by_id(path: Path, keys: tuple[str, ...]) -> dict:
    return {r["id"]: tuple(r[k] for k in keys) for r in map(json.loads, path.read_text().splitlines())}


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, own_task_run) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("killed") / "run"
    command = all_command(own_task_run[0], run)
    outcomes = {}
    for stage, sig, when in PLAN:
        rc, out, alive = interrupt(command, run, stage, sig, when)
        outcomes[stage] = {"rc": rc, "status": stage_status(run, stage), "alive": alive, "out": out,
                           "signal": signal.Signals(sig).name}
        print(f"killed {stage} with {signal.Signals(sig).name} ({when}): exit {rc}, "
              f"manifest status {outcomes[stage]['status']}")
    final = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=1500)
    print(final.stdout[-3000:])
    assert final.returncode == 0, final.stdout[-4000:]
    return run, outcomes


def test_each_kill_lands_mid_stage_and_leaves_no_process_behind(interrupted_run):
    _, outcomes = interrupted_run
    for stage, sig, _ in PLAN:
        o = outcomes[stage]
        expected_rc = -signal.SIGKILL if sig == signal.SIGKILL else 130  # SIGTERM/SIGINT: clean interrupt
        assert o["rc"] == expected_rc, f"{stage}: exit {o['rc']}\n{o['out'][-3000:]}"
        assert o["alive"] == [], f"{stage}: {o['alive']} outlived the killed orchestrator"
        if stage == "build-stage2" and o["status"] == "done":
            # A 0.1 s stage may finish before the signal lands; the kill then hit train-stage2's start-up.
            assert "[train-stage2] running" in o["out"] and "[train-stage2] done" not in o["out"]
            continue
        assert o["status"] in ("running", "failed"), f"{stage}: status {o['status']} after the kill"
        assert f"[{stage}] done" not in o["out"]
        if sig != signal.SIGKILL:
            assert "interrupted: finished work is kept" in o["out"] and "Traceback" not in o["out"]


def test_training_resumed_from_its_checkpoint(interrupted_run):
    run, _ = interrupted_run
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    for stage, which in TRAINED.items():
        resumed = stages[stage]["info"]["resumed_from"]
        assert resumed and resumed.startswith("checkpoint-"), f"{stage} started over: {stages[stage]['info']}"
        last_invocation = (run / "logs" / f"{which}.log").read_text().rsplit("\n$ ", 1)[1]
        assert f"resume from checkpoint at {run / 'models' / which / resumed}" in last_invocation, last_invocation[-2000:]


def test_generation_and_prediction_skipped_finished_ids(interrupted_run):
    run, _ = interrupted_run
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert stages["generate"]["info"]["rounds"][0]["skipped_done"] > 0
    assert stages["predict"]["info"]["baseline"]["skipped_done"] > 0
    for shards, n in ((run / "generations" / "attempt-0" / "shards", stages["prepare"]["info"]["task_train"]),
                      (run / "predictions" / ".work-baseline" / "shards", stages["prepare"]["info"]["task_test"])):
        ids = [r["id"] for r in ShardStore(shards).rows()]
        assert len(ids) == len(set(ids)) == n, shards  # every id exactly once across the runs' shards


def test_interrupted_run_equals_the_uninterrupted_one(interrupted_run, own_task_run):
    run, reference = interrupted_run[0], own_task_run[1]
    for rel in ("data/task/train.jsonl", "data/task/test.jsonl", "data/stage1.jsonl", "data/stage2.jsonl",
                "data/baseline.jsonl"):
        assert (run / rel).read_bytes() == (reference / rel).read_bytes(), rel
    keys = ("label", "reasoning", "raw", "attempt")
    assert rows_by_id(run / "generations" / "reasonings.jsonl", keys) == \
        rows_by_id(reference / "generations" / "reasonings.jsonl", keys)
    for which in TRAINED.values():
        got, want = weights(run / "models" / which), weights(reference / "models" / which)
        assert got.keys() == want.keys()
        differ = [k for k in want if not (got[k] == want[k]).all()]
        assert differ == [], f"{which}: {len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
    for name in ("baseline", "reasoning"):
        path = Path("predictions") / f"{name}.jsonl"
        assert rows_by_id(run / path, ("output", "pred")) == rows_by_id(reference / path, ("output", "pred")), name
    got, want = (json.loads((r / "metrics.json").read_text())["models"] for r in (run, reference))
    assert {m: v["accuracy"] for m, v in got.items()} == {m: v["accuracy"] for m, v in want.items()}
