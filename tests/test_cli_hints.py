"""Every command the CLI suggests works as written and targets the run it was printed for."""
from __future__ import annotations

import json
import shlex
import subprocess

import orchestrate
from tests.conftest import ROOT, orchestrate as run_cli


def _hinted(text: str) -> list[list[str]]:
    """The orchestrate.py command lines quoted in `text` (between backticks or after 'to rerun it: ')."""
    found = [c for c in text.split("`")[1::2] if "orchestrate.py" in c]
    found += [line.split("to rerun it: ")[1].rstrip(")") for line in text.splitlines() if "to rerun it: " in line]
    return [shlex.split(c) for c in found]


def test_missing_dependency_names_this_runs_dir_and_profile(tmp_path, capsys):
    run = tmp_path / "fresh"
    assert orchestrate.main(["predict", "--profile", "tiny", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    commands = _hinted(err)
    assert len(commands) == 2 and "runs/paper" not in err
    for argv in commands:
        args = orchestrate.build_parser().parse_args(argv[2:])  # parses as written
        assert (args.profile, args.run_dir) == ("tiny", str(run))
        assert args.command in ("train-stage2", "all")


def _cli_args(task_dir, run) -> list[str]:
    return ["--profile", str(ROOT / "tests" / "helpers" / "tiny_fast.yml"), "--task", str(task_dir / "task.yml"),
            "--run-dir", str(run)]


def test_skip_hint_reruns_evaluate_and_the_report_is_identical(own_task_run):
    task_dir, run, _ = own_task_run
    before_md = (run / "report.md").read_text()
    before = json.loads((run / "metrics.json").read_text())
    out = run_cli("evaluate", *_cli_args(task_dir, run)).stdout
    (argv,) = _hinted(out)
    assert argv[2] == "evaluate" and "--force" in argv and "--from" not in argv
    again = subprocess.run(argv, cwd=ROOT, text=True, capture_output=True, timeout=600)
    assert again.returncode == 0 and "[evaluate] running" in again.stdout, again.stdout + again.stderr
    after_md = (run / "report.md").read_text()
    after = json.loads((run / "metrics.json").read_text())
    cut = "## Timing (not reproducible)"
    assert after_md.split(cut)[0] == before_md.split(cut)[0]
    assert {k: v for k, v in after.items() if k != "timing"} == {k: v for k, v in before.items() if k != "timing"}
    assert json.dumps(after)[:json.dumps(after).index('"timing"')] == json.dumps(before)[:json.dumps(before).index('"timing"')]
    assert after["run"]["sizes"]["test"] == before["models"]["baseline"]["n"]


def test_all_skip_hint_uses_from(own_task_run):
    task_dir, run, _ = own_task_run
    out = run_cli("all", *_cli_args(task_dir, run)).stdout
    hints = _hinted(out)
    assert len(hints) == 8
    for argv in hints:
        args = orchestrate.build_parser().parse_args(argv[2:])
        assert args.command == "all" and args.from_stage and f"[{args.from_stage}] up to date" in out
        assert args.task == str(task_dir / "task.yml") and (ROOT / args.profile).resolve() == ROOT / "tests" / "helpers" / "tiny_fast.yml"


def test_a_run_directory_remembers_its_profile(tiny_run):
    """Later commands on a run need only --run-dir; another --profile is refused with the reason."""
    out = run_cli("evaluate", "--run-dir", str(tiny_run)).stdout
    assert "[evaluate] up to date, skipped" in out and "--profile tiny" in out
    proc = run_cli("evaluate", "--run-dir", str(tiny_run), "--profile", "paper", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout
    assert f"{tiny_run} was made with profile 'tiny', not 'paper'" in proc.stdout
