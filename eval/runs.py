"""Reading run directories into per-model columns, and pooling several runs (seeds) into one.

Kept apart from the analysis so the contract of a run directory (data/task/*.jsonl,
predictions/<model>.jsonl, rows paired by id) is checked in one place, with errors that name the
file. A "series" is a model's predictions as columns: ids, gold, pred, output_tokens, seconds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from eval.baselines import REFERENCE_MODELS, run_reference_baselines
from eval.metrics import correctness
from pipeline.io import DataError, read_json, read_jsonl

GENERATING_MODELS = ("baseline", "reasoning")


def home_of(run_dir: Path) -> Path:
    """The run directory holding `run_dir`'s data engine: its `shared_dir` for a replicate
    (RUN/seed-N, recorded in its manifest), else itself."""
    manifest = Path(run_dir) / "manifest.json"
    shared = (read_json(manifest) or {}).get("shared_dir") if manifest.exists() else None
    return Path(shared) if shared else Path(run_dir)


def _rows_by_model(run_dir: Path, labels: Sequence[str]) -> dict[str, list[dict]]:
    """Prediction rows of each generating model present in RUN/predictions.

    A missing field, a gold label outside `labels` or a duplicate id is a DataError naming the file:
    rows pair by id, and a gold label the task does not know means the wrong task or file.
    """
    out = {}
    for model in GENERATING_MODELS:
        path = run_dir / "predictions" / f"{model}.jsonl"
        if not path.exists():
            continue
        rows = read_jsonl(path)
        for i, r in enumerate(rows, 1):
            missing = [k for k in ("id", "gold", "pred") if k not in r]
            if missing:
                raise DataError(f"{path}: row {i} lacks {missing}; every row needs id, gold and pred")
            if r["gold"] not in labels:
                raise DataError(f"{path}: row {i} has gold {r['gold']!r}, not one of the task labels {list(labels)}")
        ids = [str(r["id"]) for r in rows]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise DataError(f"{path}: duplicate ids {dup}; rows pair by id, so each id must appear once")
        out[model] = rows
    return out


def _series(rows: Sequence[dict]) -> dict:
    """Column view of prediction rows: ids, gold, pred, output_tokens, seconds, finish_reason."""
    return {"ids": [str(r["id"]) for r in rows], "gold": [r["gold"] for r in rows],
            "pred": [r.get("pred") for r in rows], "output_tokens": [r.get("output_tokens") for r in rows],
            "seconds": [r.get("seconds") for r in rows], "finish_reason": [r.get("finish_reason") for r in rows]}


def load_run(run_dir: Path, labels: Sequence[str]) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """Read one run: (series per model incl. reference baselines, reference extras, notes).

    Reference baselines are trained on RUN/data/task/train.jsonl and scored on the test rows the
    generating models were scored on (all of test.jsonl when there are no predictions), so every
    model in a table answers the same examples.
    """
    run_dir = Path(run_dir)
    notes: list[str] = []
    preds = _rows_by_model(run_dir, labels)
    for model in GENERATING_MODELS:
        if model not in preds:
            notes.append(f"{run_dir}: predictions/{model}.jsonl is missing; {model} is not evaluated")
    series = {m: _series(rows) for m, rows in preds.items()}
    extras: dict[str, dict] = {}
    task_dir = home_of(run_dir) / "data" / "task"
    train_p, test_p = task_dir / "train.jsonl", task_dir / "test.jsonl"
    if not (train_p.exists() and test_p.exists()):
        notes.append(f"{run_dir}: data/task/train.jsonl or test.jsonl is missing; no reference baselines")
        return series, extras, notes
    train, test = read_jsonl(train_p), read_jsonl(test_p)
    scored = {i for s in series.values() for i in s["ids"]}
    if scored:
        gold_by_id = {str(r["id"]): r["label"] for r in test}
        for m, s in series.items():
            outside = [i for i in s["ids"] if i not in gold_by_id]
            wrong = sum(1 for i, g in zip(s["ids"], s["gold"]) if i in gold_by_id and gold_by_id[i] != g)
            if outside:
                notes.append(f"{run_dir}: {len(outside)} {m} prediction ids are not in test.jsonl (e.g. {outside[0]})")
            if wrong:
                notes.append(f"{run_dir}: {wrong} {m} rows have a gold label that differs from test.jsonl")
        test = [r for r in test if str(r["id"]) in scored]
    refs = run_reference_baselines(train, test, labels)
    for name in REFERENCE_MODELS:
        series[name] = {"ids": [str(r["id"]) for r in test], "gold": [r["label"] for r in test],
                        "pred": refs[name]["pred"], "output_tokens": None,
                        "seconds": [refs[name]["seconds_per_example"]] * len(test)}
        extras[name] = {"train_seconds": refs[name]["train_seconds"]}
    return series, extras, notes


def paired(sa: dict, sb: dict, labels: Sequence[str]) -> dict:
    """Correctness of a and b on the ids both answered, with their gold labels and ids (bootstrap clusters)."""
    pos_b = {i: k for k, i in enumerate(sb["ids"])}
    common = [(k, pos_b[i]) for k, i in enumerate(sa["ids"]) if i in pos_b]
    gold = [sa["gold"][k] for k, _ in common]
    a_ok = correctness(gold, [sa["pred"][k] for k, _ in common], labels)
    b_ok = correctness(gold, [sb["pred"][j] for _, j in common], labels)
    return {"gold": gold, "a": a_ok, "b": b_ok, "groups": [sa["ids"][k] for k, _ in common]}


def pool_runs(runs: list[tuple[dict, dict]], labels: Sequence[str]) -> tuple[dict, dict, dict]:
    """Concatenate every run's series per model; pairs keep the example id as bootstrap cluster."""
    series: dict[str, dict] = {}
    extras: dict[str, dict] = {}
    pairs: dict[str, dict] = {}
    for s_run, x_run in runs:
        for name, s in s_run.items():
            tgt = series.setdefault(name, {"ids": [], "gold": [], "pred": [], "output_tokens": [], "seconds": [],
                                           "finish_reason": []})
            for key in tgt:
                vals = s[key] if s.get(key) is not None else [None] * len(s["ids"])
                tgt[key].extend(vals)
        for name, x in x_run.items():
            extras.setdefault(name, {"train_seconds": 0.0})["train_seconds"] += x["train_seconds"] / len(runs)
        if "baseline" in s_run and "reasoning" in s_run:
            p = paired(s_run["baseline"], s_run["reasoning"], labels)
            tgt = pairs.setdefault("baseline:reasoning", {"gold": [], "a": [], "b": [], "groups": []})
            for key in tgt:
                tgt[key].extend(list(p[key]))
    for p in pairs.values():
        p["a"], p["b"] = np.asarray(p["a"], dtype=bool), np.asarray(p["b"], dtype=bool)
    for s in series.values():
        if all(v is None for v in s["output_tokens"]):
            s["output_tokens"] = None
    return series, extras, pairs
