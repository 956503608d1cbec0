"""Resumable results: each finished chunk is one atomically written JSONL shard.

Re-running skips ids already in a shard; killing the process at any moment loses at
most the chunk in flight, never a finished one, and never leaves a half shard
(shards are written to a temporary name and renamed).
"""
from __future__ import annotations

from pathlib import Path

from pipeline.io import atomic_create_numbered, jsonl_bytes, read_jsonl


class ShardStore:
    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.jsonl")) if self.dir.exists() else []

    def rows(self) -> list[dict]:
        return [row for shard in self.shards() for row in read_jsonl(shard)]

    def done_ids(self) -> set[str]:
        return {row["id"] for row in self.rows()}

    def write(self, rows: list[dict]) -> Path:
        """One new shard; replicas sharing the folder never overwrite each other's."""
        return atomic_create_numbered(self.dir, "part", ".jsonl", jsonl_bytes(rows))

    def merged(self, expected_ids: list[str]) -> tuple[list[dict], list[str]]:
        """One row per expected id, in `expected_ids` order (first result wins), and the missing ids."""
        by_id: dict[str, dict] = {}
        for row in self.rows():
            by_id.setdefault(row["id"], row)
        missing = [i for i in expected_ids if i not in by_id]
        return [by_id[i] for i in expected_ids if i in by_id], missing
