"""Resumable results: each finished chunk is one atomically written JSONL shard.

Re-running skips ids already in a shard; killing the process at any moment loses at
most the chunk in flight, never a finished one, and never leaves a half shard
(shards are written to a temporary name and renamed).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


class ShardStore:
    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def shards(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.jsonl")) if self.dir.exists() else []

    def rows(self) -> list[dict]:
        out = []
        for shard in self.shards():
            with open(shard, encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f if line.strip())
        return out

    def done_ids(self) -> set[str]:
        return {row["id"] for row in self.rows()}

    def write(self, rows: list[dict]) -> Path:
        """Write the shard under a temporary name, then claim the next free part-N name
        with a hard link, which fails rather than replaces: replicas sharing the folder
        never overwrite each other's shard."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=self.dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            f.flush()
            os.fsync(f.fileno())
        index = len(self.shards())
        while True:
            path = self.dir / f"part-{index:05d}.jsonl"
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                index += 1
        os.unlink(tmp)
        return path

    def merged(self, expected_ids: list[str]) -> tuple[list[dict], list[str]]:
        """One row per expected id, in `expected_ids` order (first result wins), and the missing ids."""
        by_id: dict[str, dict] = {}
        for row in self.rows():
            by_id.setdefault(row["id"], row)
        missing = [i for i in expected_ids if i not in by_id]
        return [by_id[i] for i in expected_ids if i in by_id], missing
