"""Atomic file writes and JSONL reading with errors that name the file and line.

Every output of a stage goes through `atomic_*`: written to a temporary name in the
same folder, then renamed, so a half-written file is never taken for a finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator


class DataError(Exception):
    """Bad user input: the message says which file, line and field, and what to do."""


def move_aside(path: Path, run_dir: Path, name: str) -> Path:
    """Move `path` to RUN/.stale/<name>-<time>: outdated or partial work is kept, never deleted."""
    dest = Path(run_dir) / ".stale" / f"{name}-{int(time.time())}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), dest)
    return dest


def _synced_temp(folder: Path, prefix: str, data: bytes) -> str:
    """`data` in a temporary file of `folder`, flushed to disk (a rename never exposes half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    tmp = _synced_temp(path.parent, f".{path.name}.", data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_create_numbered(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Write `data` as the next free `<stem>-NNNNN<suffix>` in `folder`, claimed with a hard link,
    which fails rather than replaces: processes writing into one folder never overwrite each other."""
    folder = Path(folder)
    tmp = _synced_temp(folder, f".{stem}-", data)
    index = len(list(folder.glob(f"{stem}-*{suffix}")))
    try:
        while True:
            path = folder / f"{stem}-{index:05d}{suffix}"
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                index += 1
    finally:
        os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    return atomic_write_bytes(path, jsonl_bytes(rows))


def iter_jsonl_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a broken line raises DataError naming file:line."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                                f"fix or remove that line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl_lines(path)]


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def ids_digest(ids: Iterable[str]) -> str:
    """SHA-256 of an ordered list of example ids: equal digests, same rows in the same order."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()
