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
from pipeline.config import AXOLOTL_CONFIGS_DIR, TRAINED_MODELS, RunContext
from pipeline.data import describe_source, load_reasoning_set, load_task_splits, overlap_note, train_test_overlap
from pipeline.generation.job import GenerationJob, engine_config
from pipeline.generation import launch
from pipeline.generation.launch import GenerationSession, resolve_backend
from pipeline.generation.runner import parse_shard, select_shard
from pipeline.generation.shards import ShardStore
from pipeline.io import DataError, atomic_write_json, atomic_write_jsonl, ids_digest, read_jsonl
from pipeline.train import run_training


# ---------------------------------------------------------------- prepare
def prepare(ctx: RunContext) -> dict:
    """Task splits -> data/task/{train,test}.jsonl; reasoning set -> data/stage1.jsonl (none when
    the prompted base model writes the reasonings); the tiny base model, or the GGUF one's
    Hugging Face folder, when the profile asks for one."""
    from pipeline.base_model import ensure_base_model

    info = {}
    splits = load_task_splits(ctx, info)  # bad data stops here, before a base model is built
    ensure_base_model(ctx.profile)
    if ctx.profile.get("base_model_gguf"):
        info["base_model"] = ctx.base_model
    if ctx.profile["base_model"] == "tiny":
        from pipeline.synthetic import tokenizer_corpus
        from pipeline.tiny_model import build_tiny_model

        build_tiny_model(ctx.base_model_dir, tokenizer_corpus(ctx.task.labels, ctx.task.answer_prefix, ctx.task.inputs),
                         **ctx.profile["tiny_model"])
        info["base_model"] = str(ctx.base_model_dir)
    info["test_overlap"], overlap_ids = train_test_overlap(splits["train"], splits["test"])
    if note := overlap_note(ctx, splits):
        print(f"prepare: {note}")
    if ctx.profile["task_data"].get("drop_test_overlap"):
        splits["train"] = [r for i, r in enumerate(splits["train"]) if i not in overlap_ids]
        info["overlap_dropped"] = len(overlap_ids)
    info["source"] = describe_source(ctx)
    for split, rows in splits.items():
        atomic_write_jsonl(ctx.task_split(split), rows)
        info[f"task_{split}"] = len(rows)
    if prompted(ctx):  # no stage-1 model to train: no reasoning set to read
        info["stage1_rows"] = 0
        return info
    rs = load_reasoning_set(ctx)
    atomic_write_jsonl(ctx.train_set("stage1"), (
        {"id": r["id"], "messages": prompts.stage1_messages(r["question"], r["answer"], r["reasoning"])} for r in rs))
    info["stage1_rows"] = len(rs)
    return info


def prompted(ctx: RunContext) -> bool:
    """`generation.generator: prompted`: the base model writes the reasonings; stage 1 is not trained."""
    return ctx.profile["generation"].get("generator") == "prompted"


def generator_model(ctx: RunContext) -> Path:
    """The model that writes the reasonings: the trained stage-1 model, or the base model when prompted."""
    return Path(ctx.base_model) if prompted(ctx) else ctx.model_dir("stage1")


# ---------------------------------------------------------------- training
def train_stage1(ctx: RunContext) -> dict:
    if prompted(ctx):
        print(f"train-stage1: nothing to train, generation.generator is 'prompted' (the base model "
              f"{ctx.profile['base_model']} writes the reasonings)")
        return {"skipped": "generation.generator: prompted", "generator": "prompted"}
    return run_training(ctx, "stage1")


def train_stage2(ctx: RunContext) -> dict:
    return run_training(ctx, "stage2")


def train_baseline(ctx: RunContext) -> dict:
    return run_training(ctx, "baseline")


# ---------------------------------------------------------------- generate
def _request_seed(base: int, attempt: int, example_id: str) -> int:
    """Keyed by id, not position: a retried example gets the same seed sharded or not."""
    return random.Random(f"{base}:{attempt}:{example_id}").randrange(2**31)


def _session_args(ctx: RunContext, log_name: str, echo: bool) -> tuple:
    return (resolve_backend(ctx.generation["backend"]), engine_config(ctx.generation), ctx.log(log_name),
            ctx.profile["offline"], ctx.generation.get("worker_env"), echo)


def open_session(ctx: RunContext, log_name: str, echo: bool = True) -> GenerationSession:
    """One worker for all jobs of a stage (vLLM start-up is the expensive part), the one
    `prestart_session` started if there is one; `echo=False` keeps the worker's log off stdout
    (classify prints JSON there)."""
    return launch.session(*_session_args(ctx, log_name, echo))


def prestart_session(log_name: str):
    """A stage's `prestart` (generation.prestart): its worker, started while the stage before it runs."""
    def start(ctx: RunContext) -> None:
        if ctx.generation.get("prestart"):
            launch.prestart(*_session_args(ctx, log_name, True))
    return start


def shard_summary(ctx: RunContext, shard: str) -> Path:
    i, n = parse_shard(shard)
    return ctx.generations / f"shard-{i}-of-{n}.json"


def generate(ctx: RunContext, shard: str | None = None) -> dict:
    """The stage-1 model writes one reasoning per training example (text + gold label).

    Round 0 asks for every id. With `qc.enabled` (the quality filter), reasonings that
    fail quality control are asked again with a new seed, up to `max_retries` rounds, and
    the rest are dropped and counted; without it every output is kept, as the paper ran.
    Every round's raw outputs stay in shards, so a rerun replays QC and resumes.
    `shard="i/N"` runs every round on this machine's share (rows i, i+N, ...) only;
    seeds depend on (seed, attempt, id), so the unsharded rerun that merges the copied
    shards finds every round's outputs already made and generates nothing again.
    """
    from pipeline.base_model import ensure_base_model
    from postprocess.reasoning import ReasoningQC, clean_reasoning

    gen, task = ctx.generation, ctx.task
    ensure_base_model(ctx.profile)
    train = read_jsonl(ctx.task_split("train"))
    share = select_shard(train, shard)
    by_id = {r["id"]: r for r in train}
    filtering = ctx.profile["qc"]["enabled"]
    qc = ReasoningQC(task.labels, task.answer_prefix, min_chars=ctx.profile["qc"]["min_chars"],
                     max_repeat_ratio=ctx.profile["qc"]["max_repeat_ratio"])
    sampling = {k: gen[k] for k in ("temperature", "top_p", "max_tokens")}
    todo, kept, rounds = list(share), {}, []
    suffix = "" if shard is None else "-shard-{}-of-{}".format(*parse_shard(shard))  # file names
    name = "generate" if shard is None else f"generate --shard {shard}"
    with open_session(ctx, f"generate{suffix}") as session:
        for attempt in range(1 + gen["max_retries"]):
            if not todo:
                break
            work = ctx.generations / f"attempt-{attempt}"
            requests = [{"id": r["id"], "messages": prompts.reasoning_request(task, r, r["label"], gen["generator"]),
                         "seed": _request_seed(gen["seed"], attempt, r["id"]) if gen["per_request_seed"] else None}
                        for r in todo]
            requests_path = atomic_write_jsonl(work / f"requests{suffix}.jsonl", requests)
            job = GenerationJob.from_profile(gen, generator_model(ctx), requests_path, work / "shards", sampling,
                                             seed=gen["seed"] + attempt, chat=ctx.chat_template)
            rounds.append(session.run(job))
            results, missing = ShardStore(work / "shards").merged([r["id"] for r in requests])
            print(f"{name} round {attempt}: {len(requests)} ids, {rounds[-1]['skipped_done']} found in "
                  f"shards (earlier or other machines' runs), {rounds[-1]['generated']} generated now, "
                  f"{len(missing)} missing")
            if missing:
                raise DataError(f"{work / 'shards'}: {len(missing)} ids missing after generation, e.g. {missing[:5]}")
            for res in results:
                row = by_id[res["id"]]
                cleaned = qc.accept(res["id"], row["label"], res["output"], source_text=row["text"]) if filtering \
                    else clean_reasoning(res["output"], task.labels, task.answer_prefix)
                if cleaned is not None:
                    kept[res["id"]] = {**res, "reasoning": cleaned, "attempt": attempt}
            todo = [r for r in todo if r["id"] not in kept]
    for r in todo:
        qc.drop(r["id"])
    stats = {"prompts": sum(r["requests"] for r in rounds), "output_tokens": sum(r["output_tokens"] for r in rounds),
             "wall_seconds": sum(r["seconds"] for r in rounds), "rounds": rounds,
             "backend": rounds[0]["backend"] if rounds else None,
             "backend_version": rounds[0]["backend_version"] if rounds else None, "kept": len(kept), "dropped": len(todo),
             "generator": gen.get("generator", "stage1"), "generator_model": str(generator_model(ctx)),
             "qc": {"enabled": filtering, **qc.stats.to_dict()}}
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
    """Reasonings -> data/stage2.jsonl (text -> reasoning + label) and data/baseline.jsonl (text -> label),
    on the SAME example ids in the same order: the two models may differ only in the target.

    An id is left out of both sets when it has no reasoning, or when either of its rows is longer
    than its config's `sequence_len` (Axolotl would silently drop it from one set only)."""
    from pipeline.train import resolve_config, token_lengths

    task = ctx.task
    reasoning = {r["id"]: r["reasoning"] for r in read_jsonl(ctx.generations / "reasonings.jsonl")}
    train = read_jsonl(ctx.task_split("train"))
    rows = {"stage2": [], "baseline": []}
    for r in train:
        if r["id"] in reasoning:
            answer = prompts.stage2_answer(task, reasoning[r["id"]], r["label"])
            rows["stage2"].append({"id": r["id"], "messages": prompts.classify_messages(task, r, answer)})
            rows["baseline"].append({"id": r["id"], "messages": prompts.classify_messages(
                task, r, prompts.baseline_answer(task, r["label"]))})
    too_long: set[str] = set()
    for which, sets in rows.items():
        limit = resolve_config(ctx, which)["sequence_len"]
        lengths = token_lengths(ctx.base_model, [row["messages"] for row in sets], ctx.chat_template)
        too_long |= {row["id"] for row, n in zip(sets, lengths) if n > limit}
    for which, sets in rows.items():
        atomic_write_jsonl(ctx.train_set(which), (row for row in sets if row["id"] not in too_long))
    kept = [row["id"] for row in rows["baseline"] if row["id"] not in too_long]
    print(f"build-stage2: {len(kept)} ids in both training sets; {len(train) - len(rows['baseline'])} without a "
          f"reasoning, {len(too_long)} over sequence_len left out of both")
    return {"rows": len(kept), "without_reasoning": len(train) - len(rows["baseline"]), "too_long": len(too_long),
            "ids_sha256": ids_digest(kept)}


# ---------------------------------------------------------------- predict
MODEL_DIRS = {"baseline": "baseline", "reasoning": "stage2"}


def answer_decoding(profile: dict, task, name: str, constrained: bool | None = None) -> tuple[dict, str | None]:
    """predict's decoding for model `name`: greedy, predict.max_tokens[name] new tokens (a model the
    profile does not list gets the reasoning model's budget; label_first stops at the end of its label
    line), and the label regex when constrained decoding is on (`constrained`, else the profile's
    predict.constrained_label). Offline and served."""
    from postprocess.labels import label_regex

    cfg = profile["predict"]
    budgets = cfg["max_tokens"]
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": int(budgets.get(name) or budgets["reasoning"])}
    if name == "label_first":  # the label comes first: decoding stops at the end of its line
        sampling["stop"] = ["\n"]
    constrained = cfg.get("constrained_label") if constrained is None else constrained
    regex = label_regex(task.labels, task.answer_prefix, with_reasoning=name == "reasoning") if constrained else None
    return sampling, regex


def run_classifier(ctx: RunContext, session: GenerationSession, name: str, model_dir: Path,
                   requests: list[dict], work: Path) -> tuple[list[dict], dict]:
    """Answer `requests` ({id, messages}) with model `name` and predict's decoding
    (`answer_decoding`): the one code path of `predict` and `classify`.
    Returns the results in request order and the stats."""
    atomic_write_jsonl(work / "requests.jsonl", requests)
    sampling, regex = answer_decoding(ctx.profile, ctx.task, name)
    stats = session.run(GenerationJob.from_profile(ctx.generation, model_dir, work / "requests.jsonl",
                                                   work / "shards", sampling, guided_regex=regex,
                                                   chat=ctx.chat_template))
    results, missing = ShardStore(work / "shards").merged([r["id"] for r in requests])
    if missing:
        raise DataError(f"{work / 'shards'}: {len(missing)} ids missing after prediction, e.g. {missing[:5]}")
    return results, stats


def predict(ctx: RunContext) -> dict:
    """Greedy decoding of both trained models on the test split; labels parsed, never crash.

    Both models run in one worker: the second swaps the engine but not the process."""
    from postprocess.labels import parse_label

    task, test = ctx.task, read_jsonl(ctx.task_split("test"))
    info = {}
    requests = prompts.classify_requests(task, test)
    with open_session(ctx, "predict") as session:
        for name, model_dir in MODEL_DIRS.items():
            results, stats = run_classifier(ctx, session, name, ctx.model_dir(model_dir), requests,
                                            ctx.run_dir / "predictions" / f".work-{name}")
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
    trains: bool = False  # an Axolotl training: independent ones may run side by side (train.concurrent)
    prestart: Callable[[RunContext], None] | None = None  # started while the stage before it runs


def _data_files(ctx: RunContext) -> list[Path]:
    if ctx.data_dir is None:
        return [Path(f) for f in ctx.task.files.values()]
    return [ctx.data_dir / f for f in ctx.task.text_files.values()]


def _train_config(which: str):
    """The profile's training settings that reach this model (not the other models' sections, nor
    `concurrent`: how many trainings run at once changes no weight)."""
    return lambda ctx: [{k: v for k, v in ctx.profile["train"].items()
                         if (k not in TRAINED_MODELS or k == which) and k != "concurrent"},
                        AXOLOTL_CONFIGS_DIR / f"{which}.yml", prompts.template_file(ctx.chat_template),
                        *([ctx.seed] if ctx.seed is not None and which != "stage1" else [])]


def _train_state(which: str):
    return lambda ctx: [ctx.model_dir(which), ctx.run_dir / "prepared" / which]


STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("prepare", prepare, (),
          lambda ctx: [{k: ctx.profile.get(k) for k in ("base_model", "base_model_gguf", "tiny_model", "reasoning_set",
                                                        "task_data", "seed")},
                       ctx.task.path, prompts.template_paths(ctx.task, ctx.chat_template), _data_files(ctx),
                       str(ctx.data_dir) if ctx.data_dir else None],
          lambda ctx: [ctx.task_split("train"), ctx.task_split("test"), *([] if prompted(ctx) else [ctx.train_set("stage1")])]),
    Stage("train-stage1", train_stage1, ("prepare",), _train_config("stage1"),
          lambda ctx: [] if prompted(ctx) else [ctx.model_dir("stage1") / "config.json"], _train_state("stage1"),
          trains=True),
    Stage("generate", generate, ("prepare", "train-stage1"),
          lambda ctx: [{k: v for k, v in ctx.profile["generation"].items()
                        if k not in ("backend", "worker_env", "prestart")},
                       ctx.profile["qc"], *([prompts.template_file(prompts.PROMPTED_REASONING)] if prompted(ctx) else [])],
          lambda ctx: [ctx.generations / "reasonings.jsonl", ctx.generations / "generation_stats.json"],
          lambda ctx: [ctx.generations], prestart=prestart_session("generate")),
    Stage("build-stage2", build_stage2, ("generate",), lambda ctx: prompts.template_paths(ctx.task, ctx.chat_template),
          lambda ctx: [ctx.train_set("stage2"), ctx.train_set("baseline")]),
    Stage("train-stage2", train_stage2, ("build-stage2",), _train_config("stage2"),
          lambda ctx: [ctx.model_dir("stage2") / "config.json"], _train_state("stage2"), trains=True),
    Stage("train-baseline", train_baseline, ("build-stage2",), _train_config("baseline"),
          lambda ctx: [ctx.model_dir("baseline") / "config.json"], _train_state("baseline"), trains=True),
    Stage("predict", predict, ("train-stage2", "train-baseline"), lambda ctx: ctx.profile["predict"],
          lambda ctx: [ctx.predictions("baseline"), ctx.predictions("reasoning")],
          lambda ctx: [ctx.run_dir / "predictions" / f".work-{m}" for m in MODEL_DIRS],
          prestart=prestart_session("predict")),
    Stage("evaluate", evaluate, ("predict",), lambda ctx: ctx.task.paper_reference,
          lambda ctx: [ctx.run_dir / "metrics.json", ctx.run_dir / "report.md"]),
]}
