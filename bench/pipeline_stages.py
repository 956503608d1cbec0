"""Wall time of every stage of a pipeline run: model compute, tool start-up, and our code.

    .venv/bin/python bench/pipeline_stages.py --run            # fresh tiny run, then the table
    .venv/bin/python bench/pipeline_stages.py RUN_DIR          # an existing run directory

Per stage, from the manifest and the tools' own logs:
- model: the trainer's `train_runtime` (Axolotl log); the engine's generation seconds.
- start-up: what each tool process costs before it computes and after, whatever the data
  size: for training, the `axolotl train` process (imports of torch, transformers and
  Axolotl, tokenising, model load, saving); for generate/predict, the vLLM worker's import
  and engine start (`engine_start_s`, measured inside the worker).
- ours: everything left, i.e. the orchestrator's own work: config resolution and schema
  validation, rendering prompts, reading and writing JSONL, QC and label parsing, metrics,
  plots, the report; prepare, build-stage2 and evaluate are entirely ours.
With --run, a first row holds the orchestrator's start-up and preflight (the run's wall
time minus its stages). So a change that slows the orchestrator shows in "ours".
Writes bench/results/pipeline_stages.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def split_stage(name: str, info: dict, wall: float) -> tuple[float, float]:
    """(model seconds, tool start-up seconds) of one stage."""
    if name.startswith("train-"):
        found = re.findall(r"'train_runtime': '?([0-9.]+)", Path(info["log"]).read_text(errors="replace"))
        model = float(found[-1]) if found else 0.0
        return model, wall - model - info.get("orchestrator_s", 0.0)  # the Axolotl process, less its training
    if name == "generate":
        rounds = info.get("rounds", [])
        return sum(r["seconds"] for r in rounds), sum(r.get("engine_start_s", 0.0) for r in rounds)
    if name == "predict":
        return sum(m["seconds"] for m in info.values()), sum(m.get("engine_start_s", 0.0) for m in info.values())
    return 0.0, 0.0


def row(stage: str, wall: float, model: float, startup: float) -> dict:
    ours = wall - model - startup
    return {"stage": stage, "wall_s": round(wall, 1), "model_s": round(model, 1), "startup_s": round(startup, 1),
            "ours_s": round(ours, 1), "ours_share": round(ours / wall, 3) if wall else 0.0}


def overlap(stages: dict) -> float:
    """Seconds of stage time that ran beside another stage (`train.concurrent`): the sum of the
    stages' wall times less the time covered by at least one of them."""
    spans = sorted((r["started"], r["finished"]) for r in stages.values() if r.get("finished"))
    covered, end = 0.0, float("-inf")
    for start, finish in spans:
        covered += max(0.0, finish - max(start, end))
        end = max(end, finish)
    return sum(finish - start for start, finish in spans) - covered


def table(run: Path, run_wall: float | None = None) -> list[dict]:
    """One row per stage, then `total`: the stages' own seconds summed (more than the run's wall
    time when trainings ran side by side; see `overlap`)."""
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    rows = []
    for name, rec in stages.items():
        wall, info = rec.get("seconds") or 0.0, rec.get("info", {})
        rows.append(row(name, wall, *split_stage(name, info, wall)))
    if run_wall is not None:  # interpreter start, imports and preflight, before the first stage
        rows.insert(0, row("start + preflight", run_wall - sum(r["wall_s"] for r in rows) + overlap(stages), 0.0, 0.0))
    rows.append(row("total", *(sum(r[k] for r in rows) for k in ("wall_s", "model_s", "startup_s"))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--run", action="store_true", help="run `orchestrate.py all --profile tiny` first")
    args = ap.parse_args()
    run = Path(args.run_dir or tempfile.mkdtemp(prefix="bench-tiny-")) / ("run" if args.run and not args.run_dir else "")
    run_wall = None
    load = os.getloadavg()[0]
    if args.run:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "all", "--profile", "tiny", "--run-dir", str(run)],
                       check=True, cwd=ROOT)
        run_wall = time.perf_counter() - t0
    rows = table(run, run_wall)
    side_by_side = overlap(json.loads((run / "manifest.json").read_text())["stages"])
    print(f"{'stage':<18}{'wall s':>8}{'model s':>9}{'start-up s':>12}{'ours s':>8}{'ours':>7}")
    for r in rows:
        print(f"{r['stage']:<18}{r['wall_s']:>8.1f}{r['model_s']:>9.1f}{r['startup_s']:>12.1f}{r['ours_s']:>8.1f}"
              f"{r['ours_share']:>7.0%}")
    print(f"stage seconds that ran side by side (train.concurrent): {side_by_side:.1f}"
          + ("" if run_wall is None else f"; the whole run: {run_wall:.1f} s"))
    out = {"command": " ".join(["python", "bench/pipeline_stages.py", *sys.argv[1:]]), "run_dir": str(run),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU", "load_average_at_start": load,
           "run_wall_s": None if run_wall is None else round(run_wall, 1),
           "side_by_side_s": round(side_by_side, 1), "rows": rows}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "pipeline_stages.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
