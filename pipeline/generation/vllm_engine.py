"""vLLM offline engine: all prompts of a chunk submitted at once, one SamplingParams each.

Implements the `Engine` protocol of job.py. Runs inside the vLLM virtualenv (see
requirements-vllm*.txt), started by `worker.py`. `LLM.chat` renders the project's chat
template (passed explicitly, never the tokenizer's default) and reports the prompt
token ids it used.
"""
from __future__ import annotations


class VllmEngine:
    name = "vllm"

    def __init__(self, model: str, chat_template: str, engine: dict, seed: int = 0):
        import vllm
        from vllm import LLM

        self.version = vllm.__version__
        self.model_path = model
        self.chat_template = chat_template
        kwargs = dict(model=model, dtype=engine.get("dtype", "auto"), seed=seed,
                      max_model_len=engine.get("max_model_len"),
                      tensor_parallel_size=engine.get("tensor_parallel_size", 1),
                      enable_prefix_caching=engine.get("enable_prefix_caching", True),
                      enforce_eager=engine.get("enforce_eager", False))
        if engine.get("enable_chunked_prefill") is not None:
            kwargs["enable_chunked_prefill"] = engine["enable_chunked_prefill"]
        if engine.get("gpu_memory_utilization") and _has_cuda():
            kwargs["gpu_memory_utilization"] = engine["gpu_memory_utilization"]
        self.llm = LLM(**kwargs)

    def generate(self, requests: list[dict], sampling: dict, guided_regex: str | None = None) -> list[dict]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = StructuredOutputsParams(regex=guided_regex) if guided_regex else None
        params = [SamplingParams(temperature=sampling["temperature"], top_p=sampling.get("top_p", 1.0),
                                 max_tokens=sampling["max_tokens"], seed=r.get("seed"), stop=sampling.get("stop"),
                                 structured_outputs=structured) for r in requests]
        outs = self.llm.chat([r["messages"] for r in requests], params, use_tqdm=False,
                             chat_template=self.chat_template, add_generation_prompt=True)
        return [{"id": r["id"], "output": o.outputs[0].text, "prompt_token_ids": list(o.prompt_token_ids),
                 "output_tokens": len(o.outputs[0].token_ids), "finish_reason": o.outputs[0].finish_reason}
                for r, o in zip(requests, outs)]

    def close(self) -> None:
        """Stop the engine core and free its memory, so another model can load in this process."""
        import gc

        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        cleanup_dist_env_and_memory()


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
