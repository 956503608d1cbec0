"""Preflight checks of the input data: --data-dir text files, a local reasoning set, the run's splits."""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import RunContext
from pipeline.data import TABLE_SUFFIXES, load_reasoning_set, read_data_dir, read_table
from pipeline.io import DataError


# ================================================================== --data-dir files
def check_data_dir(ctx: RunContext) -> dict[str, list[dict]]:
    """Read every --data-dir split with prepare's own reader; duplicates per task_data.duplicate_texts."""
    used = read_data_dir(ctx)
    for split, rows in used.items():
        _check_duplicate_texts(ctx.data_dir / ctx.task.text_files[split], rows,
                               ctx.profile["task_data"]["duplicate_texts"], ctx.profile["task_data"].get(f"limit_{split}"))
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
    """A local reasoning-set file, read by prepare's own loader (every mapped column present and
    non-empty, named by line). False if the set is not a local file."""
    source = str(ctx.profile["reasoning_set"]["source"])
    if source == "synthetic" or Path(source).suffix not in TABLE_SUFFIXES:
        return False
    load_reasoning_set(ctx)
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


