"""The pipeline, one function per stage: prepare -> train-stage1 -> generate ->
build-stage2 -> train-stage2, train-baseline -> predict -> evaluate.

Each stage reads its declared inputs from the run directory, writes its declared
outputs atomically and returns a small dict for the manifest. `STAGES` lists them
with their dependencies, the configuration that fingerprints them, and outputs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline import prompts
from pipeline.config import AXOLOTL_CONFIGS_DIR, RunContext
from pipeline.data import load_reasoning_set, load_task_splits
from pipeline.generation.job import GenerationJob, engine_config
from pipeline.generation.launch import GenerationSession, resolve_backend
from pipeline.generation.runner import parse_shard, select_shard
from pipeline.generation.shards import ShardStore
from pipeline.io import DataError, atomic_write_json, atomic_write_jsonl, read_jsonl
from pipeline.train import run_training


# ---------------------------------------------------------------- prepare
def prepare(ctx: RunContext) -> dict:
    """Task splits -> data/task/{train,test}.jsonl; reasoning set -> data/stage1.jsonl;
    the tiny base model when the profile asks for one."""
    info = {}
    if ctx.profile["base_model"] == "tiny":
        from pipeline.synthetic import tokenizer_corpus
        from pipeline.tiny_model import build_tiny_model

        build_tiny_model(ctx.base_model_dir, tokenizer_corpus(ctx.task.labels), **ctx.profile["tiny_model"])
        info["base_model"] = str(ctx.base_model_dir)
    splits = load_task_splits(ctx)
    for split, rows in splits.items():
        atomic_write_jsonl(ctx.task_split(split), rows)
        info[f"task_{split}"] = len(rows)
    rs = load_reasoning_set(ctx)
    atomic_write_jsonl(ctx.train_set("stage1"), (
        {"id": r["id"], "messages": prompts.stage1_messages(r["question"], r["answer"], r["reasoning"])} for r in rs))
    info["stage1_rows"] = len(rs)
    return info


# ---------------------------------------------------------------- training
def train_stage1(ctx: RunContext) -> dict:
    return run_training(ctx, "stage1")


def train_stage2(ctx: RunContext) -> dict:
    return run_training(ctx, "stage2")


def train_baseline(ctx: RunContext) -> dict:
    return run_training(ctx, "baseline")


# ---------------------------------------------------------------- generate
def _request_seed(base: int, attempt: int, example_id: str) -> int:
    """Keyed by id, not position: a retried example gets the same seed sharded or not."""
    return random.Random(f"{base}:{attempt}:{example_id}").randrange(2**31)


def _session(ctx: RunContext, log_name: str) -> GenerationSession:
    """One worker for all jobs of a stage (vLLM start-up is the expensive part)."""
    return GenerationSession(resolve_backend(ctx.generation["backend"]), engine_config(ctx.generation),
                             ctx.log(log_name), ctx.profile["offline"], ctx.generation.get("worker_env"))


def shard_summary(ctx: RunContext, shard: str) -> Path:
    i, n = parse_shard(shard)
    return ctx.generations / f"shard-{i}-of-{n}.json"


def generate(ctx: RunContext, shard: str | None = None) -> dict:
    """The stage-1 model writes one reasoning per training example (text + gold label).

    Round 0 asks for every id; reasonings that fail quality control are asked again
    with a new seed, up to `max_retries` rounds; the rest are dropped and counted.
    Every round's raw outputs stay in shards, so a rerun replays QC and resumes.
    `shard="i/N"` runs every round on this machine's share (rows i, i+N, ...) only;
    seeds depend on (seed, attempt, id), so the unsharded rerun that merges the copied
    shards finds every round's outputs already made and generates nothing again.
    """
    from postprocess.reasoning import ReasoningQC

    gen, task = ctx.generation, ctx.task
    train = read_jsonl(ctx.task_split("train"))
    share = select_shard(train, shard)
    gold = {r["id"]: r["label"] for r in train}
    qc = ReasoningQC(task.labels, task.answer_prefix, min_chars=ctx.profile["qc"]["min_chars"],
                     max_repeat_ratio=ctx.profile["qc"]["max_repeat_ratio"])
    sampling = {k: gen[k] for k in ("temperature", "top_p", "max_tokens")}
    todo, kept, rounds = list(share), {}, []
    suffix = "" if shard is None else "-shard-{}-of-{}".format(*parse_shard(shard))  # file names
    name = "generate" if shard is None else f"generate --shard {shard}"
    with _session(ctx, f"generate{suffix}") as session:
        for attempt in range(1 + gen["max_retries"]):
            if not todo:
                break
            work = ctx.generations / f"attempt-{attempt}"
            requests = [{"id": r["id"], "messages": prompts.generation_messages(task, r["text"], r["label"]),
                         "seed": _request_seed(gen["seed"], attempt, r["id"]) if gen["per_request_seed"] else None}
                        for r in todo]
            requests_path = atomic_write_jsonl(work / f"requests{suffix}.jsonl", requests)
            job = GenerationJob.from_profile(gen, ctx.model_dir("stage1"), requests_path, work / "shards", sampling,
                                             seed=gen["seed"] + attempt)
            rounds.append(session.run(job))
            results, missing = ShardStore(work / "shards").merged([r["id"] for r in requests])
            print(f"{name} round {attempt}: {len(requests)} ids, {rounds[-1]['skipped_done']} found in "
                  f"shards (earlier or other machines' runs), {rounds[-1]['generated']} generated now, "
                  f"{len(missing)} missing")
            if missing:
                raise DataError(f"{work / 'shards'}: {len(missing)} ids missing after generation, e.g. {missing[:5]}")
            for res in results:
                cleaned = qc.accept(res["id"], gold[res["id"]], res["output"])
                if cleaned is not None:
                    kept[res["id"]] = {**res, "reasoning": cleaned, "attempt": attempt}
            todo = [r for r in todo if r["id"] not in kept]
    for r in todo:
        qc.drop(r["id"])
    stats = {"prompts": sum(r["requests"] for r in rounds), "output_tokens": sum(r["output_tokens"] for r in rounds),
             "wall_seconds": sum(r["seconds"] for r in rounds), "rounds": rounds,
             "backend": rounds[0]["backend"] if rounds else None,
             "backend_version": rounds[0]["backend_version"] if rounds else None, "kept": len(kept), "dropped": len(todo),
             "qc": qc.stats.to_dict()}
    stats["output_tokens_per_s"] = stats["output_tokens"] / stats["wall_seconds"] if stats["wall_seconds"] else None
    if shard is not None:  # the merge (an unsharded rerun) writes the reasonings
        atomic_write_json(shard_summary(ctx, shard), {"shard": shard, "rows": len(share), **stats})
        print(f"{name}: {len(kept)}/{len(share)} of this share kept, {len(todo)} dropped; copy the "
              f"generations/ folders together and run `generate` without --shard to merge")
        return {"shard": shard, **{k: v for k, v in stats.items() if k != "qc"}}
    rows = [{"id": r["id"], "text": r["text"], "label": r["label"], "reasoning": kept[r["id"]]["reasoning"],
             "raw": kept[r["id"]]["output"], "attempt": kept[r["id"]]["attempt"],
             "backend": kept[r["id"]]["backend"], "backend_version": kept[r["id"]]["backend_version"]}
            for r in train if r["id"] in kept]
    atomic_write_jsonl(ctx.generations / "reasonings.jsonl", rows)
    atomic_write_json(ctx.generations / "generation_stats.json", stats)
    print(f"generate: {len(rows)}/{len(train)} reasonings kept, {len(todo)} dropped, "
          f"{stats['output_tokens']} tokens in {stats['wall_seconds']:.1f}s "
          f"({stats['output_tokens_per_s'] or 0:.0f} tok/s, backend {stats['backend']})")
    return {k: v for k, v in stats.items() if k != "qc"}


# ---------------------------------------------------------------- build-stage2
def build_stage2(ctx: RunContext) -> dict:
    """Reasonings -> data/stage2.jsonl (text -> reasoning + label); train split -> data/baseline.jsonl."""
    task = ctx.task
    reasonings = read_jsonl(ctx.generations / "reasonings.jsonl")
    atomic_write_jsonl(ctx.train_set("stage2"), (
        {"id": r["id"], "messages": prompts.classify_messages(task, r["text"], prompts.stage2_answer(r["reasoning"], r["label"]))}
        for r in reasonings))
    train = read_jsonl(ctx.task_split("train"))
    atomic_write_jsonl(ctx.train_set("baseline"), (
        {"id": r["id"], "messages": prompts.classify_messages(task, r["text"], prompts.baseline_answer(r["label"]))}
        for r in train))
    return {"stage2_rows": len(reasonings), "baseline_rows": len(train)}


# ---------------------------------------------------------------- predict
MODEL_DIRS = {"baseline": "baseline", "reasoning": "stage2"}


def predict(ctx: RunContext) -> dict:
    """Greedy decoding of both trained models on the test split; labels parsed, never crash.

    Both models run in one worker: the second swaps the engine but not the process."""
    from postprocess.labels import label_regex, parse_label

    task, test = ctx.task, read_jsonl(ctx.task_split("test"))
    info = {}
    requests = [{"id": r["id"], "messages": prompts.classify_messages(task, r["text"])} for r in test]
    with _session(ctx, "predict") as session:
        for name, model_dir in MODEL_DIRS.items():
            work = ctx.run_dir / "predictions" / f".work-{name}"
            atomic_write_jsonl(work / "requests.jsonl", requests)
            sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": ctx.profile["predict"]["max_tokens"][name]}
            regex = label_regex(task.labels, task.answer_prefix, with_reasoning=name == "reasoning") \
                if ctx.profile["predict"].get("constrained_label") else None
            stats = session.run(GenerationJob.from_profile(ctx.generation, ctx.model_dir(model_dir), work / "requests.jsonl",
                                                           work / "shards", sampling, guided_regex=regex))
            results, missing = ShardStore(work / "shards").merged([r["id"] for r in requests])
            if missing:
                raise DataError(f"{work / 'shards'}: {len(missing)} ids missing after prediction, e.g. {missing[:5]}")
            rows = []
            for r, res in zip(test, results):
                pred = parse_label(res["output"], task.labels, task.answer_prefix)
                rows.append({"id": r["id"], "text": r["text"], "gold": r["label"], "pred": pred,
                             "valid": pred is not None, "output": res["output"], "finish_reason": res["finish_reason"],
                             "output_tokens": res["output_tokens"],
                             "prompt_tokens": len(res["prompt_token_ids"]), "seconds": res["seconds"],
                             "backend": res["backend"], "backend_version": res["backend_version"]})
            atomic_write_jsonl(ctx.predictions(name), rows)
            acc = sum(r["pred"] == r["gold"] for r in rows) / max(len(rows), 1)
            info[name] = {"n": len(rows), "accuracy": acc, "invalid": sum(not r["valid"] for r in rows),
                          "backend": stats["backend"], "backend_version": stats["backend_version"],
                          "seconds": stats["seconds"], "engine_start_s": stats["engine_start_s"],
                          "skipped_done": stats["skipped_done"]}
            print(f"predict[{name}]: accuracy {acc:.3f} on {len(rows)} test rows, {info[name]['invalid']} invalid")
    return info


# ---------------------------------------------------------------- evaluate
def evaluate(ctx: RunContext) -> dict:
    from eval.evaluate import run_evaluate

    metrics = run_evaluate([ctx.run_dir], ctx.run_dir, ctx.task.labels, ctx.task.paper_reference)
    return {name: {"accuracy": m["accuracy"]} for name, m in metrics["models"].items()}


# ---------------------------------------------------------------- the table of stages
@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext], dict]
    deps: tuple[str, ...]
    config: Callable[[RunContext], object]      # what fingerprints the stage besides its deps
    outputs: Callable[[RunContext], list[Path]]
    state: Callable[[RunContext], list[Path]] = lambda ctx: []  # partial work a rerun resumes from


def _data_files(ctx: RunContext) -> list[Path]:
    if ctx.data_dir is None:
        return []
    return [ctx.data_dir / f for f in ctx.task.text_files.values()]


def _train_config(which: str):
    return lambda ctx: [ctx.profile["train"], AXOLOTL_CONFIGS_DIR / f"{which}.yml", prompts.template_paths(ctx.task)[0]]


def _train_state(which: str):
    return lambda ctx: [ctx.model_dir(which), ctx.run_dir / "prepared" / which]


STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("prepare", prepare, (),
          lambda ctx: [{k: ctx.profile.get(k) for k in ("base_model", "tiny_model", "reasoning_set", "task_data", "seed")},
                       ctx.task.path, prompts.template_paths(ctx.task), _data_files(ctx),
                       str(ctx.data_dir) if ctx.data_dir else None],
          lambda ctx: [ctx.task_split("train"), ctx.task_split("test"), ctx.train_set("stage1")]),
    Stage("train-stage1", train_stage1, ("prepare",), _train_config("stage1"),
          lambda ctx: [ctx.model_dir("stage1") / "config.json"], _train_state("stage1")),
    Stage("generate", generate, ("prepare", "train-stage1"),
          lambda ctx: [{k: v for k, v in ctx.profile["generation"].items() if k not in ("backend", "worker_env")},
                       ctx.profile["qc"]],
          lambda ctx: [ctx.generations / "reasonings.jsonl", ctx.generations / "generation_stats.json"],
          lambda ctx: [ctx.generations]),
    Stage("build-stage2", build_stage2, ("generate",), lambda ctx: prompts.template_paths(ctx.task),
          lambda ctx: [ctx.train_set("stage2"), ctx.train_set("baseline")]),
    Stage("train-stage2", train_stage2, ("build-stage2",), _train_config("stage2"),
          lambda ctx: [ctx.model_dir("stage2") / "config.json"], _train_state("stage2")),
    Stage("train-baseline", train_baseline, ("build-stage2",), _train_config("baseline"),
          lambda ctx: [ctx.model_dir("baseline") / "config.json"], _train_state("baseline")),
    Stage("predict", predict, ("train-stage2", "train-baseline"), lambda ctx: ctx.profile["predict"],
          lambda ctx: [ctx.predictions("baseline"), ctx.predictions("reasoning")],
          lambda ctx: [ctx.run_dir / "predictions" / f".work-{m}" for m in MODEL_DIRS]),
    Stage("evaluate", evaluate, ("predict",), lambda ctx: ctx.task.paper_reference,
          lambda ctx: [ctx.run_dir / "metrics.json", ctx.run_dir / "report.md"]),
]}
