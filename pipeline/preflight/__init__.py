"""Up-front checks before any GPU time is spent: `preflight(ctx, stages)`.

Every problem a stage would otherwise hit minutes or hours in (a bad data line, a
template field that does not exist, a gated model without a token, no GPU, a full
disk, an Axolotl config Axolotl rejects) is found here and raised as ONE
`DataError` that names the file and line where there is one and says what to do.

Every check calls the code the stages run, so it cannot drift from them: the runner's
own list of pending stages (`pipeline.run.pending`: a stage recorded fresh in the
manifest and not forced is skipped there, so it is skipped here), prepare's readers,
pipeline/prompts.py, and pipeline/train.py's config resolution and validation. The
profile itself was already validated when it was loaded (pipeline/profile.py).
Checks, in order (cheap ones first):

  shard        `--shard i/N` is well formed (the runner's parser)
  data         the --data-dir splits as prepare reads them (`data.read_data_dir`), and no
               duplicate texts within a split (profile `task_data.duplicate_texts`); or the
               spec's own `files`, read by `data.load_task_splits`
  reasoning    a local reasoning-set file, read by `data.load_reasoning_set`
  templates    every conversation the stages build, built by pipeline/prompts.py on a
               sample row and rendered through the chat template (StrictUndefined)
  lengths      every used text fits: the training row in Axolotl's sequence_len, the
               generate / predict prompt plus max_tokens in generation.max_model_len
               (the base model's tokenizer when it is local, else ~4 characters/token);
               then every label of the spec occurs in the train rows (`data.check_label_coverage`)
  run data     for stages after prepare: the run's task splits have unique ids
  base model   a gated hub model (meta-llama/...) has a token; offline: it is cached
  devices      profile `device: cuda | cpu` (below): a GPU where vLLM or training needs one
  disk         room for the checkpoints the training stages will save
  axolotl      the resolved Axolotl configs pass Axolotl's schema (`train.validate_config`;
               imports axolotl, ~15 s: only when a training stage will run)

Profile key `device: cuda | cpu` (top level) says where the profile's models run.
`cuda`: the vLLM backend and training need a visible NVIDIA GPU (and `--gpus`,
tensor_parallel_size x data_parallel_size must not exceed the visible count). `cpu`:
no GPU checks. A profile without the key is `cpu` when its generation.worker_env sizes
vLLM's CPU KV cache (VLLM_CPU_KVCACHE_SPACE), else `cuda`.

Check only, with orchestrate.py's arguments:
    python orchestrate.py all --profile paper --data-dir ../shared/data/emotion --check

The checks live in three modules: `inputs` (data files, reasoning set, the run's
splits), `templates` (prompt templates and text lengths), `resources` (base model and
hub token, GPUs, disk, Axolotl's schema); this module runs them in order.
"""
from __future__ import annotations

import time

from pipeline.config import RunContext
from pipeline.generation.runner import parse_shard
from pipeline.data import check_label_coverage, load_task_splits, overlap_note
from pipeline.preflight.inputs import check_data_dir, check_reasoning_set, check_run_splits
from pipeline.preflight.resources import TRAINING, check_axolotl_configs, check_base_model, check_devices, check_disk
from pipeline.preflight.templates import SAMPLE_TEXT, check_lengths, check_templates

TEMPLATE_STAGES = {"prepare", "generate", "build-stage2", "predict"}


# ================================================================== entry point
def preflight(ctx: RunContext, stages: list[str], *, shard: str | None = None,
              force: set[str] | frozenset = frozenset(), echo: bool = True) -> None:
    """Raise DataError (one message) for the first problem the given stages would hit."""
    from pipeline import run  # imported here: pipeline.run imports the stages

    t0 = time.perf_counter()
    done: list[str] = []
    if shard is not None:
        parse_shard(shard)
        done.append("shard")
    pending = run.pending(ctx, stages, force, shard)  # the runner's own list
    rows: dict[str, list[dict]] = {}
    if "prepare" in pending:
        if ctx.data_dir is not None:
            rows = check_data_dir(ctx)
            done.append("data")
        elif ctx.task.files:
            load_task_splits(ctx)  # prepare's own loader: columns, empty fields, labels, label coverage
            done.append("data")
        if check_reasoning_set(ctx):
            done.append("reasoning set")
    if TEMPLATE_STAGES & set(pending) or any(s in TRAINING for s in pending):
        sample = (rows.get("train") or [{**{name: SAMPLE_TEXT for name in ctx.task.inputs},
                                          "label": ctx.task.labels[0]}])[0]
        check_templates(ctx.task, sample, ctx.chat_template, ctx.generation["generator"])
        done.append("templates")
    if rows:
        check_lengths(ctx, rows)
        check_label_coverage(ctx, rows["train"], str(ctx.data_dir / ctx.task.text_files["train"]),
                             ctx.profile["task_data"].get("limit_train"))
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
    note = overlap_note(ctx, rows)
    if echo and note:
        print(f"[preflight] {note}")
    if echo:
        print(f"[preflight] ok: {', '.join(done) or 'nothing to check'} "
              f"({', '.join(pending) or ('every stage up to date' if stages else 'no stage requested')}) "
              f"in {time.perf_counter() - t0:.1f}s")
