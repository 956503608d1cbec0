"""Up-front checks before any GPU time is spent: `preflight(ctx, stages)`.

Every problem a stage would otherwise hit minutes or hours in (a bad data line, a
template field that does not exist, a gated model without a token, no GPU, a full
disk, an Axolotl config Axolotl rejects) is found here and raised as ONE
`DataError` that names the file and line where there is one and says what to do.

Only the stages that will actually run are checked: a stage the manifest records as
finished with the current fingerprint (and not in `force`) is skipped by
`run_stages`, so it is skipped here too. Checks, in order (cheap ones first):

  shard        `--shard i/N` is well formed
  data         the --data-dir text;label files: readable UTF-8, `text;label` lines,
               known labels, no empty texts, no duplicate texts within a split
               (profile `task_data.duplicate_texts: error | warn`, default error)
  reasoning    a local reasoning-set file (.jsonl/.csv/.parquet): valid rows, every
               mapped column present and non-empty
  templates    every prompt template the task uses renders with StrictUndefined on a
               sample row (the fields pipeline/prompts.py passes), and loads from prompts/
  lengths      every used text fits: the training row in Axolotl's sequence_len, the
               generate / predict prompt plus max_tokens in generation.max_model_len
               (the base model's tokenizer when it is local, else ~4 characters/token)
  run data     for stages after prepare: the run's task splits have unique ids
  base model   a gated hub model (meta-llama/...) has a token; offline: it is cached
  devices      profile `device: cuda | cpu` (below): a GPU where vLLM or training needs one
  disk         room for the checkpoints the training stages will save
  axolotl      the resolved Axolotl configs pass Axolotl's schema (imports axolotl,
               ~15 s: only when a training stage will run)

Profile key `device: cuda | cpu` (top level) says where the profile's models run.
`cuda`: the vLLM backend and training need a visible NVIDIA GPU (and `--gpus`,
tensor_parallel_size x data_parallel_size must not exceed the visible count). `cpu`:
no GPU checks. A profile without the key is `cpu` when its generation.worker_env sizes
vLLM's CPU KV cache (VLLM_CPU_KVCACHE_SPACE), else `cuda`.

Check only, with orchestrate.py's arguments:
    python orchestrate.py all --profile paper --data-dir ../shared/data/emotion --check
"""
from __future__ import annotations

import difflib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import yaml

from pipeline.config import PROMPTS_DIR, TASKS_DIR, RunContext, TaskSpec, spec_path
from pipeline.data import read_table, read_text, read_text_label_file
from pipeline.io import DataError

TRAINING = {"train-stage1": "stage1", "train-stage2": "stage2", "train-baseline": "baseline"}
TEMPLATE_STAGES = {"prepare", "generate", "build-stage2", "predict"}
GATED_PREFIXES = ("meta-llama/",)
# Parameter counts of hub models we know; others are read from a local checkpoint or
# estimated from the name ("...-3B-...").
KNOWN_PARAMS = {"meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400, "meta-llama/Llama-3.2-1B": 1_235_814_400}
CHARS_PER_TOKEN = 4
SAMPLE_TEXT = "i feel calm and a little tired today"
SAMPLE_REASONING = "The writer describes feeling calm and tired, which points to the given label."


# ================================================================== entry point
def preflight(ctx: RunContext, stages: list[str], *, shard: str | None = None,
              force: set[str] | frozenset = frozenset(), echo: bool = True) -> None:
    """Raise DataError (one message) for the first problem the given stages would hit."""
    t0 = time.perf_counter()
    pending = pending_stages(ctx, stages, force)
    done: list[str] = []
    if shard is not None:
        check_shard(shard)
        done.append("shard")
    rows: dict[str, list[dict]] = {}
    if "prepare" in pending:
        if ctx.data_dir is not None:
            rows = check_data_dir(ctx)
            done.append("data")
        if check_reasoning_set(ctx):
            done.append("reasoning set")
    if TEMPLATE_STAGES & set(pending) or any(s in TRAINING for s in pending):
        sample = (rows.get("train") or [{"text": SAMPLE_TEXT, "label": ctx.task.labels[0]}])[0]
        check_templates(ctx.task, sample)
        done.append("templates")
    if rows:
        check_lengths(ctx, rows)
        done.append("lengths")
    if "prepare" not in pending and {"generate", "build-stage2", "predict"} & set(pending):
        check_run_splits(ctx)
        done.append("run data")
    training = [TRAINING[s] for s in pending if s in TRAINING]
    if training:
        check_base_model(ctx)
        done.append("base model")
    if check_devices(ctx, pending):
        done.append("devices")
    if training:
        check_disk(ctx, training)
        check_axolotl_configs(ctx, training)
        done += ["disk", "axolotl configs"]
    if echo:
        print(f"[preflight] ok: {', '.join(done) or 'nothing to check'} "
              f"({', '.join(pending) or ('every stage up to date' if stages else 'no stage requested')}) "
              f"in {time.perf_counter() - t0:.1f}s")


def pending_stages(ctx: RunContext, stages: list[str], force=frozenset()) -> list[str]:
    """The requested stages run_stages will run: not recorded fresh in the manifest, or forced."""
    from pipeline.run import ORDER, fingerprints
    from pipeline.stages import STAGES

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise DataError(f"unknown stage(s) {unknown}; choose from {', '.join(ORDER)}")
    wanted = [s for s in ORDER if s in stages]
    if not ctx.manifest_path.exists():
        return wanted
    from pipeline.manifest import Manifest

    try:
        manifest = Manifest(ctx.manifest_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{ctx.manifest_path}: not valid JSON ({e}); move it aside to start this run "
                        f"directory over") from None
    fps = fingerprints(ctx)
    return [s for s in wanted if s in force or not manifest.is_fresh(s, fps[s], STAGES[s].outputs(ctx))]


# ================================================================== shard
def check_shard(shard: str) -> None:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard or "")
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise DataError(f"--shard {shard!r}: expected i/N with 0 <= i < N, e.g. --shard 0/4 ... --shard 3/4")


# ================================================================== task spec (with line numbers)
def _yaml_key_lines(path: Path) -> dict[str, int]:
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DataError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def load_task(name_or_path: str) -> TaskSpec:
    """TaskSpec.load, with errors that name the line of the offending key."""
    path = spec_path(name_or_path, TASKS_DIR, "task spec")
    lines = _yaml_key_lines(path)
    known = [f for f in TaskSpec.__dataclass_fields__ if f != "path"]
    for key, line in lines.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(f"{path}:{line}: unknown field {key!r} in the task spec; {hint}known fields: {known}")
    try:
        return TaskSpec.load(str(path))
    except DataError as e:  # add the line of the field the message names
        msg = str(e)
        field = re.search(r"field '(\w+)'", msg)
        if field and field.group(1) in lines and msg.startswith(f"{path}:"):
            msg = f"{path}:{lines[field.group(1)]}:{msg[len(str(path)) + 1:]}"
        raise DataError(msg) from None


# ================================================================== --data-dir files
def check_data_dir(ctx: RunContext) -> dict[str, list[dict]]:
    """Parse every --data-dir split; return the rows prepare will use (after limit_<split>)."""
    task, spec = ctx.task, ctx.profile.get("task_data") or {}
    if not ctx.data_dir.is_dir():
        raise DataError(f"--data-dir {ctx.data_dir}: no such folder (task {task.name!r} expects "
                        f"{', '.join(task.text_files.values())} in it)")
    if not task.text_files:
        raise DataError(f"{task.path}: the task spec has no `text_files`, so --data-dir cannot be used with it")
    policy = spec.get("duplicate_texts", "error")
    if policy not in ("error", "warn"):
        raise DataError(f"profile {ctx.profile.get('name')!r}: task_data.duplicate_texts is {policy!r}; "
                        f"use 'error' or 'warn'")
    used = {}
    for split, fname in task.text_files.items():
        path = ctx.data_dir / fname
        rows = read_text_label_file(path, task.labels, spec=task.path, what=f"task {task.name!r} expects {fname} in --data-dir, "
                                                f"as `text_files` in {task.path.name if task.path else 'its spec'} says")
        limit = spec.get(f"limit_{split}")
        rows = rows[:limit] if limit else rows
        _check_duplicate_texts(path, rows, policy, limit)
        used[split] = rows
    return used


def _check_duplicate_texts(path: Path, rows: list[dict], policy: str, limit: int | None) -> None:
    first: dict[str, dict] = {}
    dups = []
    for row in rows:
        if row["text"] in first:
            dups.append((first[row["text"]], row))
        else:
            first[row["text"]] = row
    if not dups:
        return
    a, b = dups[0]
    labels = "the same label" if a["label"] == b["label"] else f"labels {a['label']!r} and {b['label']!r}"
    scope = f" among the first {limit} rows prepare uses" if limit else ""
    more = f" ({len(dups)} duplicated texts in all{scope})" if len(dups) > 1 else ""
    msg = (f"{path}:{b['_line']}: field 'text' duplicates line {a['_line']} of the same split, with {labels}"
           f"{more}: {_clip(b['text'])!r}")
    if policy == "warn":
        print(f"[preflight] warning: {msg}; kept (task_data.duplicate_texts: warn)", file=sys.stderr)
        return
    raise DataError(f"{msg}. Remove one of the lines, or set task_data.duplicate_texts: warn in the profile "
                    f"to keep duplicates")


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


# ================================================================== local reasoning set
def check_reasoning_set(ctx: RunContext) -> bool:
    """A local reasoning-set file: every row has every mapped column, non-empty. False if not local."""
    from pipeline.data import TABLE_SUFFIXES

    spec = ctx.profile.get("reasoning_set") or {}
    source = str(spec.get("source", ""))
    if source == "synthetic" or Path(source).suffix not in TABLE_SUFFIXES:
        return False
    path = Path(source)
    if path.suffix != ".parquet":
        read_text(path, "profile reasoning_set.source")  # exists, readable, UTF-8
    try:
        rows = read_table(path)
    except DataError:
        raise
    except Exception as e:  # pandas / pyarrow parse errors
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]}: {e}") from None
    if not rows:
        raise DataError(f"{path}: no rows (profile reasoning_set.source)")
    columns = spec.get("columns") or {}
    for row in rows:
        where = f"{path}:{row['_line']}"
        for ours, src in columns.items():
            if src not in row:
                have = [c for c in row if c != "_line"]
                raise DataError(f"{where}: column {src!r} ({ours}) is missing; this row has columns {have}. "
                                f"Fix the row, or map the column in the profile (reasoning_set.columns.{ours})")
            value = row[src]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: column {src!r} ({ours}) is empty or not text ({value!r}); "
                                f"fill it in or remove that row")
    return True


# ================================================================== prompt templates
def _template_env():
    import jinja2

    def load(name: str):
        path = _template_path(name)
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8"), str(path), lambda: False

    return jinja2.Environment(loader=jinja2.FunctionLoader(load), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False, autoescape=False)


def _template_path(name: str) -> Path:
    return Path(os.path.normpath(PROMPTS_DIR / name))


def _render(env, name: str, fields: dict) -> str:
    """Render one template; errors name the template file and line."""
    import jinja2

    path = _template_path(name)
    try:
        return env.get_template(name).render(**fields).strip()
    except jinja2.TemplateNotFound:
        raise DataError(f"{path}: template not found (the task spec or pipeline/prompts.py names it)") from None
    except jinja2.TemplateSyntaxError as e:
        raise DataError(f"{e.filename or path}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        line = _template_line(e, path)
        where = f"{path}:{line}" if line else str(path)
        raise DataError(f"{where}: {e.message} (the template is rendered with the fields {sorted(fields)}); "
                        f"use one of those fields or fix the name") from None
    except Exception as e:
        raise DataError(f"{path}: cannot be rendered: {type(e).__name__}: {e}") from None


def _template_line(exc: BaseException, path: Path) -> int | None:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename) == path:
            return frame.lineno
    return None


def check_templates(task: TaskSpec, row: dict) -> None:
    """Render every template the task uses with the fields pipeline/prompts.py gives it, on `row`.

    Mirrors pipeline/prompts.py: question_template(text, labels); stage1_user(question,
    answer); stage1_assistant(reasoning); stage2_assistant(reasoning, label);
    baseline_assistant(label); the chat template as transformers/vLLM render it.
    """
    from pipeline import prompts

    env = _template_env()
    label = row.get("label", task.labels[0])
    question = _render(env, task.question_template, {"text": row["text"], "labels": task.labels})
    user1 = _render(env, "stage1_user.jinja", {"question": question, "answer": label})
    assistant1 = _render(env, "stage1_assistant.jinja", {"reasoning": SAMPLE_REASONING})
    stage2 = _render(env, "stage2_assistant.jinja", {"reasoning": SAMPLE_REASONING, "label": label})
    baseline = _render(env, "baseline_assistant.jinja", {"label": label})
    for messages, gen_prompt in (([("user", user1), ("assistant", assistant1)], False), ([("user", user1)], True),
                                 ([("user", question), ("assistant", stage2)], False),
                                 ([("user", question), ("assistant", baseline)], False), ([("user", question)], True)):
        _render(env, prompts.CHAT_TEMPLATE, _chat_fields([{"role": r, "content": c} for r, c in messages], gen_prompt))
    # pipeline.prompts loads by name from prompts/ (jinja's FileSystemLoader): a name it cannot load
    # (e.g. with '..') would only fail mid-stage.
    import jinja2

    for path in prompts.template_paths(task):
        try:
            prompts._env().get_template(path.relative_to(prompts.PROMPTS_DIR).as_posix())
        except (jinja2.TemplateNotFound, ValueError):
            raise DataError(f"{task.path}: question_template {task.question_template!r} cannot be loaded by "
                            f"pipeline/prompts.py; put the template in {PROMPTS_DIR} and give its file name") from None


def _chat_fields(messages: list[dict], add_generation_prompt: bool, special: dict | None = None) -> dict:
    """What transformers' apply_chat_template passes to a chat template."""
    def raise_exception(message):
        raise ValueError(message)

    def strftime_now(fmt):
        import datetime

        return datetime.datetime.now().strftime(fmt)

    return {"messages": messages, "add_generation_prompt": add_generation_prompt, "tools": None, "documents": None,
            "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>",
            "unk_token": None, **(special or {}), "raise_exception": raise_exception, "strftime_now": strftime_now}


# ================================================================== lengths
def local_tokenizer(ctx: RunContext) -> Path | None:
    """tokenizer.json of the base model when it is on this machine (the tiny one after prepare)."""
    base = ctx.profile.get("base_model")
    if base == "tiny":
        path = ctx.base_model_dir / "tokenizer.json"
    elif Path(str(base)).expanduser().is_dir():
        path = Path(str(base)).expanduser() / "tokenizer.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(base), "tokenizer.json")
        except Exception:
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    return path if path is not None and path.is_file() else None


def token_counter(ctx: RunContext) -> tuple[Callable[[list[str]], list[int]], str]:
    """(count(texts) -> token counts, how they were counted)."""
    path = local_tokenizer(ctx)
    if path is not None:
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path))
            return (lambda texts: [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)],
                    f"counted with the base model's tokenizer {path}")
        except Exception:
            pass
    return (lambda texts: [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts],
            f"an ESTIMATE at {CHARS_PER_TOKEN} characters per token: the base model's tokenizer is not local yet")


def _special_tokens(ctx: RunContext) -> dict:
    path = local_tokenizer(ctx)
    cfg = path.parent / "tokenizer_config.json" if path else None
    if cfg and cfg.is_file():
        data = json.loads(cfg.read_text(encoding="utf-8"))
        return {k: v if isinstance(v, str) else (v or {}).get("content")
                for k in ("bos_token", "eos_token", "pad_token") if (v := data.get(k)) is not None}
    return {}


def check_lengths(ctx: RunContext, rows: dict[str, list[dict]]) -> None:
    """Every used text must fit: its training row in sequence_len, its prompts + max_tokens in max_model_len."""
    from pipeline import prompts
    from pipeline.train import resolve_config

    task, gen = ctx.task, ctx.generation
    count, how = token_counter(ctx)
    env, special = _template_env(), _special_tokens(ctx)
    longest = max(task.labels, key=len)

    def chat(messages, gen_prompt):
        return _render(env, prompts.CHAT_TEMPLATE, _chat_fields(messages, gen_prompt, special))

    seq = {which: resolve_config(ctx, which).get("sequence_len") for which in ("stage2", "baseline")}
    seq_which = min((w for w in seq if seq[w]), key=lambda w: seq[w], default=None)
    budgets = []  # (which split, overhead tokens, limit, what it is)
    if seq_which:
        over = count([chat(prompts.classify_messages(task, "", prompts.baseline_answer(longest)), False)])[0]
        budgets.append(("train", over, seq[seq_which],
                        f"the baseline/stage-2 training row (prompt + answer) must fit sequence_len {seq[seq_which]} "
                        f"(axolotl_configs/{seq_which}.yml with the profile's train.axolotl)",
                        "raise train.axolotl.sequence_len in the profile"))
    if gen.get("max_model_len"):
        mml = int(gen["max_model_len"])
        over = count([chat(prompts.generation_messages(task, "", longest), True)])[0]
        budgets.append(("train", over, mml - int(gen.get("max_tokens", 0)),
                        f"the generate prompt plus generation.max_tokens {gen.get('max_tokens', 0)} must fit "
                        f"generation.max_model_len {mml}", "raise generation.max_model_len in the profile"))
        pmax = max((ctx.profile.get("predict") or {}).get("max_tokens", {"x": 0}).values())
        over = count([chat(prompts.classify_messages(task, ""), True)])[0]
        budgets.append(("test", over, mml - int(pmax),
                        f"the predict prompt plus predict.max_tokens {pmax} must fit generation.max_model_len {mml}",
                        "raise generation.max_model_len in the profile"))
    for split, split_rows in rows.items():
        path = ctx.data_dir / task.text_files[split]
        n = count([r["text"] for r in split_rows])
        for bsplit, over, limit, what, fix in budgets:
            if bsplit != split:
                continue
            bad = [(r, k) for r, k in zip(split_rows, n) if k + over > limit]
            if bad:
                r, k = bad[0]
                more = f" ({len(bad) - 1} more rows of this split are too long too)" if len(bad) > 1 else ""
                raise DataError(f"{path}:{r['_line']}: field 'text' is {k} tokens ({how}); with the {over} tokens "
                                f"of prompt around it that is {k + over}, but {what}{more}. Shorten or remove that "
                                f"line, or {fix}")


# ================================================================== prepared run data
def check_run_splits(ctx: RunContext) -> None:
    """The run's data/task/*.jsonl (written by prepare): unique ids, non-empty texts, known labels."""
    for split in ("train", "test"):
        path = ctx.task_split(split)
        if not path.exists():
            continue  # run_stages reports the missing prepare
        seen: dict[str, int] = {}
        for row in read_table(path):
            where = f"{path}:{row['_line']}"
            rid = row.get("id")
            if not isinstance(rid, str) or not rid:
                raise DataError(f"{where}: field 'id' is missing or empty; rerun `orchestrate.py prepare --force`")
            if rid in seen:
                raise DataError(f"{where}: field 'id' {rid!r} duplicates line {seen[rid]}; ids must be unique: "
                                f"rerun `orchestrate.py prepare --force`")
            seen[rid] = row["_line"]
            if not isinstance(row.get("text"), str) or not row["text"].strip():
                raise DataError(f"{where}: field 'text' is empty; rerun `orchestrate.py prepare --force`")
            if row.get("label") not in ctx.task.labels:
                raise DataError(f"{where}: field 'label' {row.get('label')!r} is not one of {ctx.task.labels}; "
                                f"rerun `orchestrate.py prepare --force`")


# ================================================================== base model
def hub_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def check_base_model(ctx: RunContext) -> None:
    base = str(ctx.profile.get("base_model"))
    name = ctx.profile.get("name")
    if base == "tiny" or Path(base).expanduser().is_dir():
        return
    if base.startswith(("/", "./", "../", "~")):
        raise DataError(f"profile {name!r}: base_model {base!r} is not a folder on this machine")
    if ctx.profile.get("offline"):
        from huggingface_hub import constants, try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(base, "config.json"), str):
            raise DataError(f"profile {name!r}: offline is true but base_model {base!r} is not in the Hugging Face "
                            f"cache ({constants.HF_HUB_CACHE}); download it once online, point base_model at a "
                            f"local folder, or set offline: false")
        return
    if base.startswith(GATED_PREFIXES) and not hub_token():
        raise DataError(f"profile {name!r}: base_model {base!r} is gated on the Hugging Face hub and no token was "
                        f"found (HF_TOKEN, HUGGING_FACE_HUB_TOKEN or `hf auth login`). Accept its licence at "
                        f"https://huggingface.co/{base}, then export HF_TOKEN=... or log in")


# ================================================================== devices
def profile_device(profile: dict) -> str:
    device = profile.get("device")
    if device is None:
        worker_env = (profile.get("generation") or {}).get("worker_env") or {}
        device = "cpu" if "VLLM_CPU_KVCACHE_SPACE" in worker_env else "cuda"
    if device not in ("cpu", "cuda"):
        raise DataError(f"profile {profile.get('name')!r}: device is {device!r}; use 'cuda' or 'cpu'")
    return device


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use (nvidia-smi, else /dev/nvidiaN), within CUDA_VISIBLE_DEVICES."""
    physical = 0
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
            physical = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU ")) if out.returncode == 0 else 0
        except (OSError, subprocess.TimeoutExpired):
            physical = 0
    if not physical:
        physical = sum(1 for p in Path("/dev").glob("nvidia[0-9]*"))
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        ids = [x for x in cvd.split(",") if x.strip() and x.strip() != "-1"]
        return min(len(ids), physical)
    return physical


def check_devices(ctx: RunContext, pending: list[str]) -> bool:
    """vLLM generation and training on a `cuda` profile need enough visible GPUs."""
    from pipeline.generation.launch import resolve_backend

    needs_gen = bool({"generate", "predict"} & set(pending))
    training = [s for s in pending if s in TRAINING]
    if not needs_gen and not training:
        return False
    backend = resolve_backend(ctx.generation.get("backend", "auto")) if needs_gen else None
    if profile_device(ctx.profile) == "cpu":
        return True
    name = ctx.profile.get("name")
    gpus = visible_gpus()
    fix = (f"run on a GPU machine, or use a CPU profile (e.g. --profile tiny, or set device: cpu in profile {name!r})")
    if backend == "vllm":
        gen = ctx.generation
        need = int(gen.get("tensor_parallel_size", 1)) * int(gen.get("data_parallel_size", 1))
        if gpus == 0:
            raise DataError(f"profile {name!r} (device: cuda): generation backend vllm needs an NVIDIA GPU and none "
                            f"is visible; {fix}, or pass --backend transformers")
        if need > gpus:
            raise DataError(f"profile {name!r}: generation.tensor_parallel_size x data_parallel_size = {need} GPUs, "
                            f"but {gpus} visible; lower them in the profile")
    if training:
        want = ctx.gpus or int((ctx.profile.get("train") or {}).get("gpus", 1))
        if gpus == 0:
            raise DataError(f"profile {name!r} (device: cuda): training ({', '.join(training)}) needs an NVIDIA GPU "
                            f"and none is visible; {fix}")
        if want > gpus:
            raise DataError(f"training asks for {want} GPUs (--gpus / train.gpus) but {gpus} are visible; "
                            f"pass --gpus {gpus}")
    return True


# ================================================================== disk
def _safetensors_params(folder: Path) -> int | None:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def param_count(ctx: RunContext) -> tuple[int | None, str]:
    """(parameters of the base model, how that number was found)."""
    base = str(ctx.profile.get("base_model"))
    folder = ctx.base_model_dir if base == "tiny" else Path(base).expanduser()
    if folder.is_dir() and (n := _safetensors_params(folder)):
        return n, f"counted in {folder}"
    if base == "tiny":
        t = {"hidden_size": 128, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 512,
             "vocab_size": 2048, **(ctx.profile.get("tiny_model") or {})}
        h, hd = t["hidden_size"], t["hidden_size"] // t["num_heads"]
        vocab = -(-t["vocab_size"] // 64) * 64
        layer = h * h * 2 + 2 * h * t["num_kv_heads"] * hd + 3 * h * t["intermediate_size"] + 2 * h
        return vocab * h + t["num_layers"] * layer + h, "from the profile's tiny_model shape"
    if base in KNOWN_PARAMS:
        return KNOWN_PARAMS[base], f"the known size of {base}"
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", base)
    if m:
        return int(float(m.group(1)) * 1e9), f"estimated from the name {base!r}"
    if (ctx.profile.get("plan") or {}).get("parameters"):
        return int(float(ctx.profile["plan"]["parameters"])), "the profile's plan.parameters"
    return None, "unknown"


def checkpoint_bytes(ctx: RunContext, which: str, params: int) -> int:
    """Disk one training run ends with: save_total_limit checkpoints plus the final model.

    Weights: 2 bytes/param (bf16) or 4 (fp32). Optimizer state: AdamW's two moments in the
    parameter dtype (HF Trainer on a bf16-loaded model), or 12 bytes/param (fp32 master +
    both moments) under DeepSpeed; none with save_only_model.
    """
    from pipeline.train import resolve_config

    cfg = resolve_config(ctx, which)
    weight = 2 if cfg.get("bf16") in (True, "auto") or cfg.get("fp16") in (True, "auto") else 4
    optim = 0 if cfg.get("save_only_model") else (12 if cfg.get("deepspeed") else 2 * weight)
    if cfg.get("save_strategy") == "no":
        ckpts = 0
    elif cfg.get("save_total_limit"):
        ckpts = int(cfg["save_total_limit"])
    elif cfg.get("max_steps") and cfg.get("save_steps"):
        ckpts = math.ceil(cfg["max_steps"] / cfg["save_steps"])
    else:
        ckpts = 1
    return params * (weight * (ckpts + 1) + optim * ckpts)


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(ctx: RunContext, training: list[str]) -> None:
    params, how = param_count(ctx)
    if not params:
        return
    need = sum(checkpoint_bytes(ctx, which, params) for which in training)
    free = shutil.disk_usage(_existing(ctx.run_dir)).free
    if need > free:
        gb = lambda b: f"{b / 1e9:.1f} GB"  # noqa: E731
        raise DataError(f"{ctx.run_dir}: {gb(free)} free, but training {', '.join(training)} will write about "
                        f"{gb(need)} of checkpoints and models ({params / 1e9:.3f}B parameters, {how}; "
                        f"save_total_limit checkpoints each). Free some space, use another --run-dir, or lower "
                        f"train.axolotl.save_total_limit in the profile")


# ================================================================== axolotl configs
def check_axolotl_configs(ctx: RunContext, training: list[str]) -> None:
    """Axolotl's own schema on each resolved config (pipeline.train.validate_config; imports axolotl)."""
    from pipeline.config import AXOLOTL_CONFIGS_DIR
    from pipeline.train import resolve_config, validate_config

    train = ctx.profile.get("train") or {}
    hardware = train.get("target_hardware")
    if hardware is not None:  # as pipeline.train.write_config validates it
        hardware = {**hardware, "n_gpu": ctx.gpus or train.get("gpus", 1)}
    for which in training:
        cfg = resolve_config(ctx, which)
        source = (f"{AXOLOTL_CONFIGS_DIR / f'{which}.yml'} with profile {ctx.profile.get('name')!r} overrides "
                  f"(train.axolotl, train.{which})")
        validate_config(cfg, hardware, source)
