"""Wall time of every stage of a pipeline run, split into model compute and the rest.

    .venv/bin/python bench/pipeline_stages.py --run            # fresh tiny run, then the table
    .venv/bin/python bench/pipeline_stages.py RUN_DIR          # an existing run directory

Model compute is the trainer's own `train_runtime` (Axolotl log) for training stages
and the engine's generation seconds (stats) for generate/predict; everything else
(process start-up, imports, loading, tokenising, saving, parsing, metrics) is overhead,
so a change that slows the orchestrator shows here. Writes bench/results/pipeline_stages.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def model_seconds(run: Path, stage: str, info: dict) -> float:
    if stage.startswith("train-"):
        text = Path(info["log"]).read_text(errors="replace")
        found = re.findall(r"'train_runtime': '?([0-9.]+)", text)
        return float(found[-1]) if found else 0.0
    if stage == "generate":
        return sum(r["seconds"] for r in info.get("rounds", []))
    if stage == "predict":
        return sum(m["seconds"] for m in info.values())
    return 0.0


def table(run: Path) -> list[dict]:
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    rows = []
    for name, rec in stages.items():
        wall = rec.get("seconds") or 0.0
        model = model_seconds(run, name, rec.get("info", {}))
        rows.append({"stage": name, "wall_s": round(wall, 1), "model_s": round(model, 1),
                     "overhead_s": round(wall - model, 1), "overhead_share": round((wall - model) / wall, 3) if wall else 0})
    total = sum(r["wall_s"] for r in rows)
    model = sum(r["model_s"] for r in rows)
    rows.append({"stage": "total", "wall_s": round(total, 1), "model_s": round(model, 1),
                 "overhead_s": round(total - model, 1), "overhead_share": round((total - model) / total, 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("--run", action="store_true", help="run `orchestrate.py all --profile tiny` first")
    args = ap.parse_args()
    run = Path(args.run_dir or tempfile.mkdtemp(prefix="bench-tiny-")) / ("run" if args.run and not args.run_dir else "")
    t0 = time.time()
    if args.run:
        subprocess.run([sys.executable, str(ROOT / "orchestrate.py"), "all", "--profile", "tiny", "--run-dir", str(run)],
                       check=True, cwd=ROOT)
    rows = table(run)
    print(f"{'stage':<16}{'wall s':>9}{'model s':>9}{'overhead s':>12}{'overhead':>10}")
    for r in rows:
        print(f"{r['stage']:<16}{r['wall_s']:>9.1f}{r['model_s']:>9.1f}{r['overhead_s']:>12.1f}{r['overhead_share']:>10.0%}")
    out = {"command": " ".join(["python", "bench/pipeline_stages.py", *sys.argv[1:]]), "run_dir": str(run),
           "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, no GPU", "rows": rows,
           "elapsed_s": round(time.time() - t0, 1)}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "pipeline_stages.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
