"""Experiment `latency`: what a reasoning costs at inference, at several batch sizes.

Both models of the main run answer the same test examples through the vLLM engine with
predict's decoding; the batch size is the number of prompts handed to the engine in one call
(`generation.chunk_size` of the job; `all`: every prompt at once). Each engine is warmed up on a
few prompts first. These are wall-clock timings: they change with the machine and its load.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.config import deep_merge
from pipeline.experiments.lab import Lab, scores
from pipeline.stages import MODEL_DIRS

TIMING = True
WARM_UP = 4
QUESTION = ("What does the reasoning cost at inference? Seconds and tokens per example, examples per second "
            "and correct answers per second of both models at batch sizes from one request to all at once.")
SWITCH = "the model (baseline or reasoning) and the number of prompts per engine call (batch size)."
READ = ("Batch size 1 is the latency of one request; larger batches show throughput. `correct_per_second` = "
        "accuracy × examples per second: the useful work per second. The reasoning model writes many more "
        "tokens per example, so it pays most at batch size 1. Wall-clock numbers: compare rows of one run, on "
        "one machine, not across machines or runs.")


def run(lab: Lab) -> dict:
    test = lab.test_rows(lab.own.get("test_limit"))
    rows = []
    with lab.session() as session, tempfile.TemporaryDirectory(dir=_mkdir(lab.out), prefix=".timing-") as tmp:
        for name, which in MODEL_DIRS.items():
            model_dir = lab.ctx.model_dir(which)
            _timed(lab, session, name, model_dir, test[:WARM_UP], _batched(lab, None), Path(tmp) / f"{name}-warm-up")
            for size in lab.own["batch_sizes"]:
                ctx = _batched(lab, None if size == "all" else int(size))
                preds, seconds = _timed(lab, session, name, model_dir, test, ctx, Path(tmp) / f"{name}-{size}")
                s = scores(preds, lab.labels)
                rows.append({"model": name, "batch_size": size, "n": len(preds), "wall_seconds": seconds,
                             "seconds_per_example": seconds / len(preds), "examples_per_second": len(preds) / seconds,
                             "output_tokens_per_example": s["mean_output_tokens"], "accuracy": s["accuracy"],
                             "correct_per_second": s["accuracy"] * len(preds) / seconds})
    from eval.plots import plot_latency

    plot = plot_latency(rows, lab.out / "plots" / "latency.png",
                        f"run {lab.ctx.run_dir.name}, {len(test)} test examples")
    return {"timing": rows, "plot": plot.relative_to(lab.ctx.run_dir).as_posix(),
            "not_reproducible": "wall-clock seconds; they change with the machine and its load"}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _batched(lab: Lab, size: int | None):
    """The run's context with `size` prompts per engine call (None: all at once)."""
    return dataclasses.replace(lab.ctx, profile=deep_merge(lab.ctx.profile, {"generation": {"chunk_size": size}}))


def _timed(lab: Lab, session, name, model_dir, test, ctx, work: Path) -> tuple[list[dict], float]:
    """Predictions in a fresh scratch folder (nothing resumed) and the engine's own seconds."""
    from postprocess.labels import parse_label
    from pipeline import prompts
    from pipeline.stages import run_classifier

    results, stats = run_classifier(ctx, session, name, Path(model_dir), prompts.classify_requests(lab.task, test), work)
    preds = [{"id": r["id"], "gold": r["label"], "output_tokens": res["output_tokens"],
              "pred": parse_label(res["output"], lab.labels, lab.task.answer_prefix)} for r, res in zip(test, results)]
    return preds, stats["seconds"]


def tables(result: dict) -> dict[str, pd.DataFrame]:
    return {"latency": pd.DataFrame(result["timing"])}


def notes(result: dict) -> list[str]:
    return [f"![latency and throughput]({result['plot']})", ""]
