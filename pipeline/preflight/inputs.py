"""Preflight checks of the input data: --data-dir text files, a local reasoning set, the run's splits."""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import RunContext
from pipeline.data import read_table, read_text, read_text_label_file
from pipeline.io import DataError


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
                raise DataError(f"{where}: field 'id' is missing or empty; rerun `{ctx.command('prepare', '--force')}`")
            if rid in seen:
                raise DataError(f"{where}: field 'id' {rid!r} duplicates line {seen[rid]}; ids must be unique: "
                                f"rerun `{ctx.command('prepare', '--force')}`")
            seen[rid] = row["_line"]
            if not isinstance(row.get("text"), str) or not row["text"].strip():
                raise DataError(f"{where}: field 'text' is empty; rerun `{ctx.command('prepare', '--force')}`")
            if row.get("label") not in ctx.task.labels:
                raise DataError(f"{where}: field 'label' {row.get('label')!r} is not one of {ctx.task.labels}; "
                                f"rerun `{ctx.command('prepare', '--force')}`")


