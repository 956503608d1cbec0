"""Reliability: generation resumes after SIGKILL, shards cover every id once, one process
per run directory, the manifest skips only what is really finished, and secrets never
reach the run directory or a log."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipeline import prompts
from pipeline.config import RunContext, TaskSpec, load_profile
from pipeline.generation.job import GenerationJob
from pipeline.generation.launch import sub_shard, vllm_python
from pipeline.generation.runner import select_shard
from pipeline.generation.shards import ShardStore
from pipeline.io import DataError, read_jsonl
from pipeline.manifest import Manifest, RunLock
from tests.conftest import survivors

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"HF_TOKEN": "hf_secretvalue123", "HUGGING_FACE_HUB_TOKEN": "hf_othersecret456",
           "WANDB_API_KEY": "wandb0123456789abcdef0123456789abcdef0123"}


def orchestrate(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          env={**os.environ, **(env or {})})
    print(proc.stdout)
    return proc


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """`orchestrate.py prepare --profile tiny` once, with secrets in the environment."""
    run_dir = tmp_path_factory.mktemp("reliability") / "run"
    proc = orchestrate("prepare", "--profile", "tiny", "--run-dir", str(run_dir), env=SECRETS)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return run_dir


def tiny_ctx(run_dir: Path, **task_data) -> RunContext:
    profile = load_profile("tiny")
    profile["task_data"].update(task_data)
    return RunContext(profile, TaskSpec.load("emotion"), run_dir)


# ================================================================== generation: resume after SIGKILL
def _generate(job: GenerationJob, work: Path, delay: float = 0.0) -> dict:
    """What `generate` does per round on the transformers backend: one session, one job."""
    import pipeline.generation.hf_engine as hf
    from pipeline.generation.launch import GenerationSession

    if delay:  # a slow engine, so that the kill lands mid-run (only ever in the forked child)
        generate = hf.TransformersEngine.generate

        def slow(self, *args, **kwargs):
            out = generate(self, *args, **kwargs)
            time.sleep(delay)
            return out

        hf.TransformersEngine.generate = slow
    with GenerationSession("transformers", job.engine, work / "gen.log", offline=True, echo=False) as s:
        return s.run(job)


@pytest.fixture
def one_torch_thread():
    """torch and the Llama classes imported once, before the fork (the child inherits them, and no
    torch op has run yet); one thread: on a small shared CPU, torch's default threads are ~50x slower."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM  # noqa: F401

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_generation_resumes_after_sigkill(prepared, tmp_path, one_torch_thread):
    import multiprocessing

    ctx = tiny_ctx(prepared)
    train = read_jsonl(ctx.task_split("train"))[:15]
    requests = [{"id": r["id"], "messages": prompts.classify_messages(ctx.task, r["text"]), "seed": None} for r in train]
    ids = [r["id"] for r in requests]
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    shards = tmp_path / "shards"
    job = GenerationJob(model=str(ctx.base_model_dir), chat_template=prompts.chat_template(),
                        requests=str(tmp_path / "requests.jsonl"), out_dir=str(shards), chunk_size=3,
                        sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": 4},
                        engine={"dtype": "float32", "batch_size": 3})

    first = multiprocessing.get_context("fork").Process(target=_generate, args=(job, tmp_path, 2.0))
    first.start()
    deadline = time.time() + 240
    while not ShardStore(shards).shards():
        assert first.is_alive(), f"generation ended (exit {first.exitcode}) before writing a shard"
        assert time.time() < deadline, "no shard after 240 s"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.join()
    assert first.exitcode == -signal.SIGKILL

    done = ShardStore(shards).done_ids()
    assert 0 < len(done) < len(ids), "the kill should land mid-run"
    # A shard killed mid-write is only ever a .tmp file; plant one to show it is ignored.
    (shards / ".part-killed.tmp").write_text('{"id": "train-00000", "output": "half a li')
    stats = _generate(job, tmp_path)
    assert stats["skipped_done"] == len(done) > 0
    assert stats["generated"] == len(ids) - len(done)

    rows = ShardStore(shards).rows()
    assert sorted(r["id"] for r in rows) == sorted(ids)  # exactly one result per id
    merged, missing = ShardStore(shards).merged(ids)
    assert missing == [] and [r["id"] for r in merged] == ids
    for shard in ShardStore(shards).shards():  # every shard complete: each line a full result
        for line in shard.read_text().splitlines():
            assert {"id", "output", "output_tokens", "backend"} <= set(json.loads(line))


# ================================================================== sharding
IDS = [f"r{i:03d}" for i in range(37)]
ROWS = [{"id": i} for i in IDS]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_machine_shards_cover_every_id_once(n):
    got = [r["id"] for i in range(n) for r in select_shard(ROWS, f"{i}/{n}")]
    assert sorted(got) == IDS and len(got) == len(set(got))
    assert [r["id"] for r in select_shard(ROWS, None)] == IDS
    sizes = [len(select_shard(ROWS, f"{i}/{n}")) for i in range(n)]
    assert max(sizes) - min(sizes) <= 1  # balanced by construction


@pytest.mark.parametrize("n, m", [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 4), (4, 2)])
def test_machine_shards_times_replicas_cover_every_id_once(n, m):
    got = []
    for i in range(n):
        machine = None if n == 1 else f"{i}/{n}"
        for j in range(m):
            part = select_shard(ROWS, sub_shard(machine, j, m))
            # replica j of machine i takes rows[i::n][j::m]
            assert part == select_shard(select_shard(ROWS, machine), f"{j}/{m}")
            got += [r["id"] for r in part]
    assert sorted(got) == IDS and len(got) == len(set(got))


@pytest.mark.parametrize("shard", ["2/2", "-1/2"])
def test_out_of_range_shard_is_refused(shard):
    with pytest.raises(DataError, match="expected i/N with 0 <= i < N"):
        select_shard(ROWS, shard)


def test_merged_reports_missing_ids_and_keeps_first_result(tmp_path):
    store = ShardStore(tmp_path)
    store.write([{"id": "a", "output": "1"}, {"id": "c", "output": "3"}])
    store.write([{"id": "a", "output": "again"}])
    (tmp_path / ".part-x.tmp").write_text('{"id": "b", "output": "half')  # never read
    rows, missing = store.merged(["a", "b", "c", "d"])
    assert [r["id"] for r in rows] == ["a", "c"] and rows[0]["output"] == "1"
    assert missing == ["b", "d"]


def test_concurrent_writers_never_overwrite_a_shard(tmp_path, monkeypatch):
    """vLLM data-parallel replicas write into the same shard folder at the same time."""
    import pipeline.io as io_mod

    barrier = threading.Barrier(2, timeout=10)
    real_fsync = os.fsync

    def fsync_together(fd):  # both writers pick their shard name, then finish together
        real_fsync(fd)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(io_mod.os, "fsync", fsync_together)
    store = ShardStore(tmp_path)
    threads = [threading.Thread(target=store.write, args=([{"id": f"replica{j}"}],)) for j in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(store.done_ids()) == ["replica0", "replica1"], "one replica's shard was overwritten"


# ================================================================== the run-directory lock
def test_second_process_on_a_locked_run_dir_exits_2_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        proc = orchestrate("prepare", "--profile", "tiny", "--run-dir", str(run_dir), timeout=120)
    assert proc.returncode == 2, proc.stdout
    assert f"another orchestrate.py process (pid {os.getpid()})" in proc.stdout
    assert "Traceback" not in proc.stdout
    assert not (run_dir / "manifest.json").exists() and not (run_dir / "models").exists()


def test_lock_of_a_killed_process_is_released(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pipeline.manifest import RunLock\n"
                               f"with RunLock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(120)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DataError, match=f"pid {holder.pid}"):
            with RunLock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # the OS dropped the dead process's lock
        assert (tmp_path / ".lock").read_text() == str(os.getpid())


def test_a_child_dies_with_its_killed_parent():
    """An orphaned trainer or worker would keep writing into a run directory a rerun owns."""
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, time; from pipeline.procs import tied_to_parent\n"
                               "tied = subprocess.Popen(tied_to_parent(['sleep', '300']))\n"
                               "plain = subprocess.Popen(['sleep', '300'])\n"
                               "print(tied.pid, plain.pid, flush=True); time.sleep(300)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    tied, plain = (psutil.Process(int(pid)) for pid in parent.stdout.readline().split())
    try:
        deadline = time.time() + 30
        while tied.cmdline()[:1] != ["sleep"]:  # die_with_parent has exec'd the command
            assert time.time() < deadline, tied.cmdline()
            time.sleep(0.05)
        parent.kill()
        parent.wait()
        assert survivors([tied], timeout=10) == []
        assert survivors([plain], timeout=1) == [plain]  # without the guard, the orphan lives on
    finally:
        for p in (tied, plain):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def test_an_incompletely_saved_checkpoint_is_set_aside_before_resuming(tmp_path):
    from pipeline.train import resume_point

    ctx = tiny_ctx(tmp_path / "run")
    models = ctx.model_dir("stage1")
    for step, state in ((50, '{"global_step": 50}'), (100, '{"global_step": 100}'), (150, '{"global_st'), (200, None)):
        (models / f"checkpoint-{step}").mkdir(parents=True)
        (models / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
        if state is not None:  # the Trainer writes trainer_state.json last
            (models / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert resume_point(ctx, "stage1") == "checkpoint-100"
    assert sorted(p.name for p in models.iterdir()) == ["checkpoint-100", "checkpoint-50"]
    stale = sorted(p.name.rsplit("-", 1)[0] for p in (ctx.run_dir / ".stale").iterdir())
    assert stale == ["stage1-checkpoint-150-incomplete", "stage1-checkpoint-200-incomplete"]
    assert resume_point(tiny_ctx(tmp_path / "fresh"), "stage1") is None


# ================================================================== manifest: what is skipped
def test_prepare_is_skipped_only_while_it_is_really_finished(prepared, tmp_path, capsys):
    from pipeline.run import run_stages

    run_dir = tmp_path / "run"
    shutil.copytree(prepared, run_dir)
    ctx = tiny_ctx(run_dir)

    def run(ctx, force=frozenset()):
        capsys.readouterr()
        run_stages(ctx, ["prepare"], set(force))
        return capsys.readouterr().out

    def finished():
        return Manifest(ctx.manifest_path).stage("prepare")["finished"]

    t0 = finished()
    assert "[prepare] up to date, skipped" in run(ctx) and finished() == t0

    changed = tiny_ctx(run_dir, n_train=300)   # a value prepare depends on
    assert "[prepare] running" in run(changed)
    assert len(read_jsonl(changed.task_split("train"))) == 300
    assert "up to date, skipped" in run(changed)
    assert "[prepare] running" in run(ctx)      # and back
    assert len(read_jsonl(ctx.task_split("train"))) == 600

    t1 = finished()
    assert "[prepare] running" in run(ctx, force={"prepare"}) and finished() > t1

    # Killed mid-write: only a .tmp beside the output, which is never taken as the output.
    out = ctx.task_split("train")
    good = out.read_text()
    out.unlink()
    (out.parent / f".{out.name}.abc123.tmp").write_text(good[: len(good) // 2])
    with pytest.raises(DataError, match="needs stage 'prepare' finished"):
        run_stages(ctx, ["train-stage1"], set())
    assert "[prepare] running" in run(ctx) and out.read_text() == good

    # Killed after writing its outputs but before recording them: status 'running' is not finished.
    manifest = Manifest(ctx.manifest_path)
    manifest.data["stages"]["prepare"]["status"] = "running"
    manifest.save()
    assert "[prepare] running" in run(ctx)
    assert Manifest(ctx.manifest_path).stage("prepare")["status"] == "done"


def test_disk_estimate_counts_the_real_tiny_checkpoint(prepared, tmp_path):
    """preflight's parameter formula for the tiny shape equals what prepare built."""
    from pipeline.preflight.resources import param_count

    counted, how = param_count(tiny_ctx(prepared))
    assert how.startswith("counted in")
    assert param_count(tiny_ctx(tmp_path / "not-built")) == (counted, "from the profile's tiny_model shape")


# ================================================================== secrets
def test_secrets_never_reach_the_run_dir(prepared, tmp_path, monkeypatch, capsys):
    import pipeline.train as train
    from pipeline.procs import redact, run_logged, tool_env

    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "run"
    shutil.copytree(prepared, run_dir)
    ctx = tiny_ctx(run_dir)
    ctx.profile["train"]["wandb_project"] = "reliability"
    # Axolotl's schema check only reads the config (and costs ~15 s to import): what is
    # written to RUN/configs is what this test inspects.
    monkeypatch.setattr(train, "validate_config", lambda cfg, caps, source: None)
    config = train.write_config(ctx, "stage1")
    assert "wandb_project: reliability" in config.read_text()

    log = ctx.log("secret-check")
    cmd = ["sh", "-c", 'echo "token=$HF_TOKEN"; echo "wandb=$WANDB_API_KEY" >&2; echo "$1"', "sh", SECRETS["HF_TOKEN"]]
    capsys.readouterr()
    run_logged(cmd, log, tool_env(offline=True, wandb=True), echo=True)
    echoed = capsys.readouterr().out
    text = log.read_text()
    assert "token=***" in text and "wandb=***" in text and "token=***" in echoed
    assert redact(f"a {SECRETS['WANDB_API_KEY']} b") == "a *** b"

    leaks = [(str(p.relative_to(run_dir)), key) for p in run_dir.rglob("*") if p.is_file()
             for key, value in SECRETS.items() if value.encode() in p.read_bytes()]
    assert leaks == []
    assert {"manifest.json", "configs/stage1.yml", "logs/secret-check.log"} <= {
        str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.vllm
@pytest.mark.skipif(vllm_python() is None, reason="no vLLM environment (.venv-vllm or VLLM_PYTHON)")
def test_a_prestarted_worker_is_adopted_once_or_stopped_when_the_orchestrator_exits(tmp_path):
    """generation.prestart: the session a stage opens is the one started for it (same arguments),
    once; a prestarted worker that no stage adopted ends with the process that started it."""
    from pipeline.generation import launch

    args = ("vllm", {"dtype": "float32"}, tmp_path / "generate.log", True, {"VLLM_CPU_KVCACHE_SPACE": "1"})
    launch.prestart(*args)
    ahead = launch._PRESTARTED[launch._key(*args, True)]
    try:
        assert launch.session(*args) is ahead and ahead.procs and ahead.procs[0].poll() is None
        assert launch.session(*args) is not ahead  # adopted once
        assert launch.session(*args[:-1], {"VLLM_CPU_KVCACHE_SPACE": "2"}) is not ahead
    finally:
        ahead.__exit__(KeyboardInterrupt, None, None)
    assert ahead.procs[0].poll() is not None
    script = ("import sys; from pathlib import Path; from pipeline.generation import launch; "
              f"launch.prestart('vllm', {{}}, Path({str(tmp_path / 'p.log')!r}), True); "
              "print(next(iter(launch._PRESTARTED.values())).procs[0].pid)")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, text=True, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    pid = int(out.stdout.split()[-1])
    assert survivors([psutil.Process(pid)], timeout=60) == [] if psutil.pid_exists(pid) else True


def test_a_worker_that_died_before_its_first_job_is_a_stage_failure(tmp_path, monkeypatch):
    """A prestarted worker may die (a broken vLLM environment) long before its stage writes it a
    job: the stage fails naming the log, not with a BrokenPipeError."""
    from pipeline.generation import launch
    from pipeline.procs import StageFailed

    broken = tmp_path / "python"  # a vLLM environment whose interpreter dies at once
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(launch, "vllm_python", lambda module="vllm": broken)
    session = launch.GenerationSession("vllm", {}, tmp_path / "generate.log", True)
    session._start_workers(preload=True)
    session.procs[0].wait(timeout=60)
    (tmp_path / "r.jsonl").write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    job = GenerationJob(model="m", chat_template="", requests=str(tmp_path / "r.jsonl"),
                        out_dir=str(tmp_path / "shards"), sampling={})
    with pytest.raises(StageFailed, match="exited with status 3"):
        with session:
            session.run(job)
