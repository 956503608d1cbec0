"""bench/train_throughput.py reads Axolotl's own log lines right.

`tests/fixtures/axolotl_train_tiny.log` is an excerpt of a real `axolotl train` log (the
benchmark's CPU run, `bench/train_throughput.py --tiny --steps 30`: one log per step,
tqdm bars between them, values printed as quoted strings). `axolotl_h100_line.log` holds
a line in the H100 run's format with the value that an older regex read as 1.198.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.train_throughput import parse_log, throughput

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tiny_log() -> tuple[list[dict], dict]:
    return parse_log((FIXTURES / "axolotl_train_tiny.log").read_text())


def test_every_log_line_and_the_summary_are_read_as_numbers(tiny_log):
    logs, summary = tiny_log
    assert len(logs) == 10
    assert all(isinstance(v, float) for log in logs for v in log.values())
    # the first log has no rate (no earlier window); the cumulative counters only grow
    assert "tokens/train_per_sec_per_gpu" not in logs[0]
    assert all("tokens/train_per_sec_per_gpu" in log for log in logs[1:])
    assert logs[0]["tokens/trainable"] == 294 and logs[0]["tokens/total"] == 1136
    assert all(b["tokens/total"] > a["tokens/total"] for a, b in zip(logs, logs[1:]))
    assert summary["train_runtime"] > 0


def test_scientific_notation_in_quotes_is_the_number_it_writes():
    logs, _ = parse_log((FIXTURES / "axolotl_h100_line.log").read_text())
    assert len(logs) == 1
    assert logs[0]["tokens/train_per_sec_per_gpu"] == 11980.0
    assert logs[0]["learning_rate"] == 1.998e-05
    assert logs[0]["memory/max_allocated (GiB)"] == 33.01


def test_one_window_all_tokens_and_trained_tokens(tiny_log):
    logs, summary = tiny_log
    # steps 2 -> 3: 874 - 582 = 292 trained tokens at 67.25/s is 4.342 s, in which
    # 3440 - 2320 = 1120 token slots (padding included) went through the model
    r = throughput(logs[:3], summary, logging_steps=1, warmup_steps=2)
    assert r["trained_tokens_per_s"] == pytest.approx(67.25)
    assert r["tokens_per_s"] == pytest.approx(1120 / (292 / 67.25))
    assert r["steady_steps"] == 1
    assert r["peak_allocated_gib"] is None  # a CPU: Axolotl logs 0 GiB


def test_warm_up_windows_are_left_out(tiny_log):
    logs, summary = tiny_log
    steady = throughput(logs, summary, logging_steps=1, warmup_steps=5)
    assert steady["steady_steps"] == len(logs) - 5
    seconds = sum((b["tokens/trainable"] - a["tokens/trainable"]) / b["tokens/train_per_sec_per_gpu"]
                  for a, b in zip(logs[4:], logs[5:]))
    assert steady["tokens_per_s"] == pytest.approx((logs[-1]["tokens/total"] - logs[4]["tokens/total"]) / seconds)
    assert steady["tokens_per_s"] > steady["trained_tokens_per_s"]  # prompts and padding are computed too
    with pytest.raises(ValueError, match="no logging window after 10 warm-up steps"):
        throughput(logs, summary, logging_steps=1, warmup_steps=10)


def test_the_h100_run_gives_the_recorded_steady_state():
    """The shipped config's H100 log (every log line of the run) gives the tokens/s, peak memory
    and MFU that bench/results/train_throughput_gpu.json records for it."""
    import json

    recorded = json.loads((FIXTURES.parent.parent / "bench" / "results" / "train_throughput_gpu.json").read_text())
    shipped = next(r for r in recorded["results"] if r["variant"] == "shipped")
    logs, summary = parse_log((FIXTURES / "axolotl_train_h100.log").read_text())
    assert len(logs) == 20 and summary["train_runtime"] == 33.76
    r = throughput(logs, summary, logging_steps=2, warmup_steps=shipped["warmup_steps"])
    assert r["steady_steps"] == shipped["steady_steps"] == 30
    assert r["tokens_per_s"] == pytest.approx(shipped["tokens_per_s"])
    assert r["trained_tokens_per_s"] == pytest.approx(shipped["trained_tokens_per_s"])
    assert r["tokens_per_s_incl_warmup"] == pytest.approx(1228800 / 33.76)
    assert r["peak_allocated_gib"] == shipped["peak_allocated_gib"] == 38.85
    assert r["tokens_per_s"] * recorded["flop_per_token"] / 989e12 == pytest.approx(shipped["mfu"])


def test_a_variant_that_hangs_is_stopped_and_recorded_and_the_next_one_runs(tmp_path, monkeypatch):
    """The benchmark's own loop with its trainer swapped for stand-ins: one that never ends
    (stopped by --variant-timeout), one that fails, and one that prints a real Axolotl log."""
    import json
    import sys

    import bench.train_throughput as bench
    import pipeline.train

    commands = {"flex": [sys.executable, "-c", "import time; time.sleep(120)"],
                "-liger": [sys.executable, "-c", "raise SystemExit(3)"],
                "shipped": [sys.executable, "-c", f"print(open({str(FIXTURES / 'axolotl_train_tiny.log')!r}).read())"]}
    monkeypatch.setattr(pipeline.train, "train_command", lambda path, gpus: commands[Path(path).stem])
    out = tmp_path / "result.json"
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--tiny", "--steps", "10", "--variant-timeout", "3",
                                      "--variants", "flex,-liger,shipped", "--out", str(out)])
    bench.main()
    flex, liger, shipped = json.loads(out.read_text())["results"]
    assert flex["variant"] == "flex" and flex["error"].startswith("StageFailed: not finished after --variant-timeout 3 s")
    assert "`axolotl train` exited with status 3" in liger["error"]
    assert "error" not in shipped and shipped["steady_steps"] == 8 and shipped["tokens_per_s"] > 0
