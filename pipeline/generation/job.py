"""The generation contract: what a job asks for, and what every engine provides.

A `GenerationJob` is written to disk as JSON for the vLLM worker (another virtualenv),
so it holds only JSON types. Both engines (`vllm_engine.VllmEngine`,
`hf_engine.TransformersEngine`) satisfy `Engine`; `runner.run_job` drives either.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

from pipeline.io import atomic_write_json, read_json


ENGINE_KEYS = ("dtype", "max_model_len", "tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization",
               "enable_prefix_caching", "enable_chunked_prefill", "enforce_eager", "batch_size")


def engine_config(generation: dict) -> dict:
    """The engine part of a profile's `generation` section (what starting an engine needs)."""
    return {k: generation[k] for k in ENGINE_KEYS if generation.get(k) is not None}


class Request(TypedDict):
    """One line of a job's requests JSONL."""
    id: str
    messages: list[dict]
    seed: int | None


class Result(TypedDict):
    """What an engine returns per request (the runner adds seconds and backend)."""
    id: str
    output: str
    prompt_token_ids: list[int]
    output_tokens: int
    finish_reason: Literal["stop", "length"] | str | None


@dataclass(frozen=True)
class GenerationJob:
    model: str                      # a model folder (or hub id)
    chat_template: str              # the template's text, never the tokenizer's default
    requests: str                   # JSONL path of `Request`s
    out_dir: str                    # where `ShardStore` writes results
    sampling: dict                  # temperature, top_p, max_tokens
    engine: dict = field(default_factory=dict)  # dtype, max_model_len, tensor_parallel_size, batch_size, ...
    chunk_size: int | None = None   # requests per shard written (resume granularity); None: all at once
    shard: str | None = None        # "i/N": this replica's part of the requests
    seed: int = 0                   # engine seed
    guided_regex: str | None = None  # constrained decoding (vLLM only)
    backend: str | None = None      # set by the session: "vllm" or "transformers"
    stats_path: str | None = None   # where a worker writes the job's stats

    @classmethod
    def from_profile(cls, generation: dict, model, requests, out_dir, sampling: dict, *, chat: str,
                     seed: int | None = None, guided_regex: str | None = None) -> "GenerationJob":
        """A job with the profile's engine settings, chunk size and seed, and the chat template `chat`
        (a file in prompts/: the profile's `chat_template`, the one the model was trained with)."""
        from pipeline.prompts import chat_template

        return cls(model=str(model), chat_template=chat_template(chat), requests=str(requests), out_dir=str(out_dir),
                   sampling=dict(sampling), engine=engine_config(generation), chunk_size=generation.get("chunk_size"),
                   seed=generation.get("seed", 0) if seed is None else seed, guided_regex=guided_regex)

    def replace(self, **changes) -> "GenerationJob":
        return dataclasses.replace(self, **changes)

    def save(self, path) -> None:
        atomic_write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path) -> "GenerationJob":
        return cls(**read_json(path))


class Engine(Protocol):
    """`Engine(model, chat_template, engine_config, seed=...)`; one model per engine."""
    name: str            # "vllm" | "transformers"
    version: str         # the library's version, recorded with every result
    model_path: str

    def generate(self, requests: list[Request], sampling: dict, guided_regex: str | None = None) -> list[Result]:
        """One result per request, in order; finish_reason "stop" (end of turn) or "length" (max_tokens)."""
        ...

    def close(self) -> None:
        ...
