"""The small real run's results in one JSON and one Markdown table (README, "A small real run").

    .venv/bin/python bench/small_real.py --run-dir runs/small [--load-log uptime.log] \
        [--machine "2-core CPU machine"] [--out bench/results/small_real.json]

Reads what `orchestrate.py all --profile small` left in the run directory (metrics.json, written
by `evaluate`, and manifest.json) and copies out the numbers the README reports: accuracy and
macro-F1 of both models and of the two reference classifiers on the same test rows, McNemar's
test, per-class recall, rows and optimizer steps of each training, and each stage's seconds.
`--load-log` is a file of `uptime` lines taken during the run; their load averages are kept, as
the seconds mean little without them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.io import atomic_write_json, read_json  # noqa: E402

MODELS = ("baseline", "reasoning", "tfidf_logreg", "majority")


def load_averages(path: Path) -> list[float]:
    """The 1-minute load averages of a file of `uptime` lines."""
    return [float(m.group(1)) for m in re.finditer(r"load average: ([0-9.]+),", path.read_text())]


COMMAND = (".venv/bin/python orchestrate.py all --profile small --run-dir runs/small --data-dir ../shared/data/emotion "
           "--seeds 0,1")


def one_run(r: dict) -> dict:
    """The README's numbers of one run (a seed's entry of metrics.json `per_run`, or a single run's
    metrics.json): both models and the reference classifiers, McNemar, the two trainings."""
    models = r["models"]
    cmp = next(c for c in r["comparisons"] if {c["a"], c["b"]} == {"baseline", "reasoning"})
    training = r["training"]["models"]
    return {
        "models": {name: {"n": models[name]["n"], "accuracy": models[name]["accuracy"],
                          "macro_f1": models[name]["macro_f1"], "invalid": models[name].get("invalid"),
                          "recall": {lab: v["recall"] for lab, v in models[name]["per_class"].items()}}
                   for name in MODELS if name in models},
        "mcnemar": {k: cmp[k] for k in ("b01", "b10", "n", "statistic", "pvalue", "method", "significant",
                                        "acc_diff", "ci95")},
        "training": {name: {k: v for k, v in rec.items() if k in ("rows_trained", "optimizer_steps",
                                                                    "examples_per_step", "first_loss", "last_loss",
                                                                    "ids_sha256", "label_tokens_per_epoch")}
                     for name, rec in training.items()},
    }


def _training_seed(info: dict) -> int | None:
    """A replicate's seed (RUN/seed-N), else the profile's."""
    seeds = info.get("seeds") or {}
    return seeds.get("replicate") if seeds.get("replicate") is not None else seeds.get("profile")


def summarise(run_dir: Path, machine: str, load: list[float] | None, command: str = COMMAND) -> dict:
    """One run, or (`--seeds`) each seed's run and the mean and spread across them."""
    metrics, manifest = read_json(run_dir / "metrics.json"), read_json(run_dir / "manifest.json")
    per_run = metrics.get("per_run") or [{**metrics, "info": metrics["run"]}]
    seeds = [{"seed": _training_seed(r["info"]), **one_run(r)} for r in per_run]
    agg = metrics.get("aggregate")
    out = {
        "command": command,
        "machine": machine,
        "load_average_1min": {"samples": len(load), "min": min(load), "mean": round(sum(load) / len(load), 2),
                              "max": max(load)} if load else None,
        "run": metrics["run"],
        "labels": metrics["labels"],
        "seeds": seeds,
        "across_seeds": {**{name: {k: agg[name][k] for k in ("accuracy", "macro_f1")} for name in MODELS if name in agg},
                         "acc_diff": agg["comparison"]["acc_diff"]} if agg else None,
        "generation": {k: manifest["stages"]["generate"]["info"].get(k)
                       for k in ("generator", "prompts", "kept", "dropped", "output_tokens", "wall_seconds")},
        # the data engine's stages (RUN) and each run's trainings, predict and evaluate (RUN, or RUN/seed-N)
        "stage_seconds": {run_dir.name: {name: rec["seconds"] for name, rec in manifest["stages"].items()
                                         if rec.get("seconds") is not None},
                          **{Path(rd).name: sec for rd, sec in metrics["timing"]["stages"].items()}},
    }
    out["total_stage_seconds"] = round(sum(s for sec in out["stage_seconds"].values() for s in sec.values()), 1)
    return out


def table(res: dict) -> str:
    """Accuracy per seed and its mean, macro-F1 and per-class recall as means over the seeds."""
    labels, seeds = res["labels"], res["seeds"]
    head = ("| model | " + " | ".join(f"accuracy seed {s['seed']}" for s in seeds)
            + (" | accuracy mean ± sd" if len(seeds) > 1 else "") + " | macro-F1 | "
            + " | ".join(f"recall {lab}" for lab in labels) + " |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in seeds[0]["models"]:
        ms = [s["models"][name] for s in seeds]
        accs = [m["accuracy"] for m in ms]
        cells = [f"{a:.3f}" for a in accs]
        if len(seeds) > 1:
            spread = res["across_seeds"][name]["accuracy"]
            cells.append(f"{spread['mean']:.3f} ± {spread['std']:.3f}")
        cells.append(f"{sum(m['macro_f1'] for m in ms) / len(ms):.3f}")
        cells += [f"{sum(m['recall'][lab] for m in ms) / len(ms):.3f}" for lab in labels]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--load-log", type=Path)
    ap.add_argument("--machine", default="2-core CPU machine")
    ap.add_argument("--command", default=COMMAND, help="the command that made the run (recorded as given)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "small_real.json")
    args = ap.parse_args(argv)
    res = summarise(args.run_dir, args.machine, load_averages(args.load_log) if args.load_log else None,
                    args.command)
    atomic_write_json(args.out, res)
    print(table(res))
    for s in res["seeds"]:
        mc = s["mcnemar"]
        print(f"seed {s['seed']}: McNemar ({mc['method']}) b01={mc['b01']}, b10={mc['b10']}, p={mc['pvalue']:.3g}; "
              f"reasoning - baseline {mc['acc_diff']:+.3f} (95% CI {mc['ci95'][0]:+.3f}, {mc['ci95'][1]:+.3f})")
    print("stage seconds:", res["stage_seconds"], "total", res["total_stage_seconds"])
    print("wrote", args.out)


if __name__ == "__main__":
    main()
