"""Load the task's splits and the stage-1 reasoning set from any supported source.

Task sources, first match wins: the `text;label` files of a --data-dir (e.g.
../shared/data/emotion); the task spec's own `files` (.csv/.jsonl/.parquet with named
`columns`, label as name or index); the profile's `task_data.source` (the spec's `hub`
dataset, or the tiny profile's synthetic generator). The reasoning set: a hub id or a
local .jsonl/.csv/.parquet file. Every row comes out as plain dicts with stable ids;
bad rows raise DataError naming file, line and field.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Sequence

from pipeline.config import RunContext, TaskSpec
from pipeline.io import DataError, iter_jsonl_lines

TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def read_text(path: Path, what: str = "") -> str:
    """A UTF-8 text file, or a DataError saying why not (missing, a folder, unreadable, not UTF-8)."""
    path, why = Path(path), f" ({what})" if what else ""
    if not path.exists():
        raise DataError(f"{path}: missing{why}")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a file{why}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check its permissions{why}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte {raw[e.start]:#04x} at column {col}); "
                        f"re-save the file as UTF-8") from None


def read_text_label_file(path: Path, labels: Sequence[str], what: str = "", spec: Path | None = None) -> list[dict]:
    """`text;label` lines, split on the LAST semicolon; blank lines are skipped."""
    rows = []
    for lineno, line in enumerate(read_text(path, what).splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition(";")
        if not sep:
            raise DataError(f"{path}:{lineno}: no ';' separating text and label (expected 'text;label', "
                            f"split on the last ';'); fix or remove that line")
        text, label = text.strip(), label.strip()
        if not text:
            raise DataError(f"{path}:{lineno}: field 'text' is empty; fix or remove that line")
        if label not in labels:
            close = difflib.get_close_matches(label, labels, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(f"{path}:{lineno}: field 'label' is {label!r}, not one of {list(labels)}; {hint}"
                            f"fix the line or add the label to `labels` in the task spec{f' ({spec.name})' if spec else ''}")
        rows.append({"text": text, "label": label, "_line": lineno})
    if not rows:
        raise DataError(f"{path}: no rows{f' ({what})' if what else ''}; expected `text;label` lines")
    return rows


def read_table(path: Path) -> list[dict]:
    """A local table as a list of dicts, each with the `_line` it came from."""
    path = Path(path)
    if path.suffix != ".parquet":
        read_text(path)  # exists, readable, UTF-8
    if path.suffix in (".jsonl", ".json"):
        return [{**obj, "_line": lineno} for lineno, obj in iter_jsonl_lines(path)]
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False) if path.suffix == ".csv" else pd.read_parquet(path)
    except Exception as e:  # pandas / pyarrow parse errors
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]}: {e}") from None
    rows = frame.to_dict("records")
    first = 2 if path.suffix == ".csv" else 1  # CSV: line 1 is the header
    for i, row in enumerate(rows):
        row["_line"] = i + first
    return rows


def read_hub(path: str, split: str, name: str | None = None) -> list[dict]:
    from datasets import load_dataset

    return [dict(r) for r in load_dataset(path, name, split=split)]


def map_columns(rows: list[dict], columns: dict[str, str], source: str,
                mapped_in: str = "the profile (reasoning_set.columns", text: tuple[str, ...] | None = None) -> list[dict]:
    """Rename source columns to our names, keeping each row's `_line`; the `text` columns (all by
    default) must be non-empty text. Errors name the row's line and list the columns it has, so a
    wrong mapping is fixed in one go; `mapped_in` says where the mapping lives."""
    if not rows:
        raise DataError(f"{source}: no rows")
    out = []
    for i, row in enumerate(rows):
        where = f"{source}:{row['_line']}" if row.get("_line") else f"{source}, row {i + 1}"
        for ours, src in columns.items():
            if src not in row:
                have = [c for c in row if c != "_line"]
                raise DataError(f"{where}: column {src!r} ({ours}) is missing; this row has columns {have}. "
                                f"Fix the row, or map the column in {mapped_in}.{ours})")
            if (text is None or ours in text) and (not isinstance(row[src], str) or not row[src].strip()):
                raise DataError(f"{where}: column {src!r} ({ours}) is empty or not text ({row[src]!r}); "
                                f"fill it in or remove that row")
        out.append({**{ours: row[src] for ours, src in columns.items()}, "_line": row.get("_line")})
    return out


def _is_local(source: str) -> bool:
    return Path(source).suffix in TABLE_SUFFIXES


def load_reasoning_set(ctx: RunContext) -> list[dict]:
    """Rows {id, question, answer, reasoning} for stage 1."""
    spec = ctx.profile["reasoning_set"]
    source = spec["source"]
    if source == "synthetic":
        from pipeline.synthetic import make_reasoning_set

        rows = make_reasoning_set(spec["n"], seed=ctx.profile.get("seed", 0))
    else:
        raw = read_table(Path(source)) if _is_local(source) else read_hub(source, spec.get("split", "train"))
        rows = map_columns(raw, spec["columns"], source)
    if spec.get("limit"):
        rows = rows[: spec["limit"]]
    return [{"id": f"rs-{i:06d}", **{k: v for k, v in r.items() if k != "_line"}} for i, r in enumerate(rows)]


def task_columns(task: TaskSpec, hub: dict | None = None) -> dict[str, str]:
    """{<each input field>: <column>, label: <column>}: the spec's `columns`, else (hub data) the
    hub's `text_field` / `label_field`, else a column of the field's own name."""
    defaults = {"text": hub.get("text_field"), "label": hub.get("label_field")} if hub else {}
    return {name: task.columns.get(name) or defaults.get(name) or name for name in [*task.inputs, "label"]}


def _normalise_label(value, task: TaskSpec, where: str) -> str:
    """A label name, or its index in the spec's `labels` (a name wins when labels are themselves digits)."""
    if isinstance(value, str) and value.strip() in task.labels:
        return value.strip()
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int,)) and not isinstance(value, bool) and 0 <= value < len(task.labels):
        return task.labels[value]
    if isinstance(value, str) and value.strip() in task.labels:
        return value.strip()
    raise DataError(f"{where}: field 'label' is {value!r}, not one of {task.labels} (or their indices)")


def read_data_dir(ctx: RunContext) -> dict[str, list[dict]]:
    """The --data-dir splits as prepare uses them (first `task_data.limit_<split>` rows), each row
    with the `_line` it came from; preflight checks exactly these rows."""
    task, spec = ctx.task, ctx.profile["task_data"]
    if not ctx.data_dir.is_dir():
        raise DataError(f"--data-dir {ctx.data_dir}: no such folder (task {task.name!r} expects "
                        f"{', '.join(task.text_files.values())} in it)")
    if not task.text_files:
        raise DataError(f"{task.path}: the task spec has no `text_files`, so --data-dir cannot be used with it")
    out = {}
    for split, fname in task.text_files.items():
        rows = read_text_label_file(ctx.data_dir / fname, task.labels, spec=task.path,
                                    what=f"task {task.name!r} expects {fname} in --data-dir, as `text_files` in "
                                         f"{task.path.name if task.path else 'its spec'} says")
        out[split] = subset(rows, spec.get(f"limit_{split}"), spec, ctx.profile.get("seed", 0))
    return out


def subset(rows: list[dict], limit: int | None, spec: dict, seed: int) -> list[dict]:
    """`limit` rows of a split: the first ones, or (task_data.subset: stratified) a class-stratified
    sample with each label's share of the split, drawn with `seed`, in the split's own order."""
    if not limit or limit >= len(rows):
        return rows
    if spec.get("subset") != "stratified":
        return rows[:limit]
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(list(range(len(rows))), train_size=limit, random_state=seed,
                               stratify=[str(r["label"]) for r in rows])
    return [rows[i] for i in sorted(keep)]


def describe_source(ctx: RunContext) -> str:
    """Where the task's rows come from, in words, for the manifest and the report's header."""
    task, spec = ctx.task, ctx.profile["task_data"]
    if ctx.data_dir is not None:
        where = f"--data-dir {ctx.data_dir} ({', '.join(task.text_files.values())}, text;label lines)"
    elif task.files:
        cols = task_columns(task)
        where = (f"{task.files['train']} (train), {task.files['test']} (test); columns "
                 + ", ".join(f"{ours}={col!r}" for ours, col in cols.items()))
    elif spec["source"] == "synthetic":
        kind = "sentence pairs, " if len(task.inputs) > 1 else ""
        return (f"synthetic (pipeline/synthetic.py, {kind}seed {ctx.profile.get('seed', 0)}): "
                f"{spec['n_train']} train, {spec['n_test']} test rows")
    else:
        hub = task.hub
        where = f"hub dataset {hub['path']}" + (f" ({hub['name']})" if hub.get("name") else "")
    how = (f"a class-stratified sample (seed {ctx.profile.get('seed', 0)}) of" if spec.get("subset") == "stratified"
           else "first")
    limits = [f"{how} {spec[k]} {k.split('_')[1]} rows" for k in ("limit_train", "limit_test") if spec.get(k)]
    return where + (f"; {', '.join(limits)}" if limits else "")


def load_task_splits(ctx: RunContext, counts: dict | None = None) -> dict[str, list[dict]]:
    """{'train': [...], 'test': [...]} with rows {id, text, label} (plus `inputs`, the text fields,
    for a task whose `inputs` are not just `text`); ids are `<split>-<n>`. Rows whose label is one
    of the spec's `unlabeled` values are left out first (their number per split goes to `counts`)."""
    task, spec = ctx.task, ctx.profile["task_data"]
    splits: dict[str, list[dict]] = {}
    sources: dict[str, str] = {}  # split -> where its rows come from, for the label-coverage message
    if ctx.data_dir is not None:
        splits, limits = read_data_dir(ctx), {}
        sources = {split: str(ctx.data_dir / f) for split, f in task.text_files.items()}
    elif task.files:
        cols = task_columns(task)
        for split, fname in task.files.items():
            path = Path(fname)
            if path.suffix not in TABLE_SUFFIXES:
                raise DataError(f"{task.path}: field 'files.{split}': {path.name} is not one of {TABLE_SUFFIXES}")
            read_text(path, f"task {task.name!r} {split} split")  # missing, a folder, not UTF-8: named here
            rows = map_columns(read_table(path), cols, str(path), mapped_in="the task spec (columns",
                               text=tuple(task.inputs))
            splits[split] = [{**r, "_where": f"{path}:{r['_line']}"} for r in rows]
            sources[split] = str(path)
        limits = {"train": spec.get("limit_train"), "test": spec.get("limit_test")}
    elif spec["source"] == "synthetic":
        from pipeline.synthetic import make_emotion_split, make_pair_split

        seed = ctx.profile.get("seed", 0)
        if len(task.inputs) > 1:
            train, test = make_pair_split(spec["n_train"], spec["n_test"], task.labels, task.inputs, seed=seed)
        else:
            train, test = make_emotion_split(spec["n_train"], spec["n_test"], task.labels, seed=seed)
            train, test = ([{task.inputs[0]: r["text"], "label": r["label"]} for r in rows] for rows in (train, test))
        splits = {"train": train, "test": test}
        limits = {}
    elif spec["source"] == "hub":
        hub = task.hub
        cols = task_columns(task, hub)
        for split, hub_split in hub["splits"].items():
            sources[split] = f"hub dataset {hub['path']}" + (f" ({hub['name']})" if hub.get("name") else "") \
                + f", split {hub_split!r}"
            splits[split] = map_columns(read_hub(hub["path"], hub_split, hub.get("name")), cols, sources[split],
                                        mapped_in="the task spec (columns", text=())
        limits = {"train": spec.get("limit_train"), "test": spec.get("limit_test")}
    else:
        raise DataError(f"profile task_data.source {spec['source']!r}: use 'hub', 'synthetic' or --data-dir")
    unlabeled = {str(v).strip() for v in task.unlabeled}
    out = {}
    for split, rows in splits.items():
        kept = [r for r in rows if str(r["label"]).strip() not in unlabeled]
        if counts is not None and unlabeled:
            counts[f"unlabeled_{split}"] = len(rows) - len(kept)
        rows = subset(kept, limits.get(split), spec, ctx.profile.get("seed", 0))
        clean = []
        for i, row in enumerate(rows):
            where = row.get("_where") or (f"{split} split, row {i + 1}" if row.get("_line") is None
                                          else f"{ctx.data_dir / task.text_files[split]}:{row['_line']}")
            fields = {}
            for name in task.inputs:
                value = row[name]
                if not isinstance(value, str) or not value.strip():
                    raise DataError(f"{where}: field {name!r} is empty")
                fields[name] = value.strip()
            clean.append({"id": f"{split}-{i:05d}", "text": task.joined_text(fields),
                          "label": _normalise_label(row["label"], task, where),
                          **({"inputs": fields} if task.inputs != ["text"] else {})})
        out[split] = clean
    if "train" in out:
        check_label_coverage(ctx, out["train"], sources.get("train", "the train split"),
                             spec.get("limit_train") if sources else None)
    return out


def check_label_coverage(ctx: RunContext, train: list[dict], source: str, limit: int | None = None) -> None:
    """Every label of the spec must occur in the train rows used: a model cannot learn a label it
    never sees, and per-class numbers of it would be empty."""
    task = ctx.task
    missing = [lab for lab in task.labels if lab not in {r["label"] for r in train}]
    if not missing:
        return
    col = "" if ctx.data_dir is not None else \
        f" (column {task_columns(task, task.hub if source.startswith('hub') else None)['label']!r})"
    rows = f"{limit} class-stratified rows" if ctx.profile["task_data"].get("subset") == "stratified" \
        else f"first {limit} rows"
    scope = f"the {rows} prepare uses (task_data.limit_train)" if limit else "its rows"
    raise DataError(f"{source}: field 'label'{col}: the label(s) {missing} of `labels` in "
                    f"{task.path} never occur in {scope} of the train split; add train rows with them, "
                    f"or remove them from `labels`")


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def train_test_overlap(train: list[dict], test: list[dict]) -> tuple[int, set[int]]:
    """(test texts that also occur in train, positions of the train rows holding them); texts
    compare ignoring case and runs of whitespace. Such test examples measure memory, not
    generalisation."""
    test_texts = {_norm_text(r["text"]) for r in test}
    train_ids = {i for i, r in enumerate(train) if _norm_text(r["text"]) in test_texts}
    train_texts = {_norm_text(r["text"]) for r in train}
    return sum(1 for r in test if _norm_text(r["text"]) in train_texts), train_ids


def overlap_note(ctx: RunContext, rows: dict[str, list[dict]]) -> str | None:
    """How many test texts also occur in the train split, and what prepare does with them."""
    n = train_test_overlap(rows["train"], rows["test"])[0] if {"train", "test"} <= set(rows) else 0
    if not n:
        return None
    fate = "left out" if ctx.profile["task_data"]["drop_test_overlap"] else \
        "kept (task_data.drop_test_overlap: true leaves them out)"
    return f"{n} test texts also occur in the train split; those train rows are {fate}"
