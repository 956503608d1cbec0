"""The typed profile (pipeline/profile.py): shipped profiles load with every default filled,
a misspelt key, a wrong type or an out-of-range value stops the CLI before any work (exit 2,
file, line, key and the closest known key), and `--profile PATH` inherits a shipped profile."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import load_profile
from pipeline.io import DataError

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_typo_in_a_profile_stops_the_cli_before_anything_is_trained(tmp_path):
    profile = write(tmp_path / "mine.yml", "inherit: tiny\ngeneration:\n  temprature: 0.5\n")
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "all", "--profile", str(profile),
                           "--run-dir", str(run)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120, env=dict(os.environ))
    print(proc.stdout)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout
    assert proc.stdout.startswith(f"error: {profile}:3: profile 'mine': unknown key 'generation.temprature'; "
                                  f"did you mean 'generation.temperature'?")
    assert not run.exists()  # nothing prepared, trained or recorded


@pytest.mark.parametrize("text, line, fragment", [
    ("qc: {min_chars: -1}\n", 2, "key 'qc.min_chars': Input should be greater than or equal to 0 (got -1)"),
    ("generation:\n  top_p: 1.5\n", 3, "key 'generation.top_p': Input should be less than or equal to 1"),
    ("generation: {max_retries: two}\n", 2, "key 'generation.max_retries': Input should be a valid integer"),
    ("task_data: {duplicate_texts: keep}\n", 2, "key 'task_data.duplicate_texts': Input should be 'error' or 'warn'"),
    ("device: tpu\n", 2, "key 'device': Input should be 'cuda' or 'cpu'"),
    ("gpu: 2\n", 2, "unknown key 'gpu'; the keys of the top level are: "),
])
def test_types_and_ranges_are_checked_with_file_and_line(tmp_path, text, line, fragment):
    profile = write(tmp_path / "p.yml", "inherit: tiny\n" + text)
    with pytest.raises(DataError) as e:
        load_profile(str(profile))
    assert str(e.value).startswith(f"{profile}:{line}: profile 'p': ") and fragment in str(e.value), str(e.value)


def test_every_problem_is_reported_at_once(tmp_path):
    profile = write(tmp_path / "p.yml", "inherit: tiny\nqc: {min_char: 3}\npredict: {max_token: {baseline: 4}}\n")
    with pytest.raises(DataError) as e:
        load_profile(str(profile))
    assert "'qc.min_char'; did you mean 'qc.min_chars'?" in str(e.value)
    assert "'predict.max_token'; did you mean 'predict.max_tokens'?" in str(e.value)


def test_a_profile_file_inherits_a_shipped_profile_or_a_relative_path(tmp_path):
    write(tmp_path / "base.yml", "inherit: tiny\ngeneration: {temperature: 0.3}\n")
    child = write(tmp_path / "child.yml", "inherit: base.yml\nqc: {min_chars: 5}\n")
    got, tiny = load_profile(str(child)), load_profile("tiny")
    assert got["name"] == "child" and got["generation"]["temperature"] == 0.3 and got["qc"]["min_chars"] == 5
    assert {k: v for k, v in got.items() if k not in ("name", "generation", "qc")} == \
        {k: v for k, v in tiny.items() if k not in ("name", "generation", "qc")}
    loop = write(tmp_path / "loop.yml", "inherit: loop.yml\n")
    with pytest.raises(DataError, match="loops back"):
        load_profile(str(loop))


def test_shipped_profiles_load_with_defaults_filled():
    paper, tiny = load_profile("paper"), load_profile("tiny")
    assert paper["seeds"] is None and paper["qc"]["enabled"] is False  # one run; no filter, as the paper ran
    assert paper["task_data"]["drop_test_overlap"] is False and paper["predict"]["max_tokens"]["label_first"] is None
    assert tiny["base_model"] == "tiny" and tiny["generation"]["dtype"] == "float32"
    assert tiny["train"]["axolotl"]["liger_rope"] is None  # None unsets an Axolotl key: kept, not dropped
