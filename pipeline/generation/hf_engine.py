"""Batched transformers engine: the fallback where vLLM is not installed.

Same job and results as the vLLM engine (the `Engine` protocol of job.py). Prompts are rendered with the same chat
template via `apply_chat_template` (which does not add a second BOS), sorted by
length and left-padded in batches; sampling uses one torch seed per batch.
"""
from __future__ import annotations


class TransformersEngine:
    name = "transformers"

    def __init__(self, model: str, chat_template: str, engine: dict, seed: int = 0):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.version = transformers.__version__
        self.model_path = model
        self.torch = torch
        torch.manual_seed(seed)  # one random stream per engine, like vLLM's LLM(seed=...)
        self.chat_template = chat_template
        self.batch_size = int(engine.get("batch_size", 16))
        self.tok = AutoTokenizer.from_pretrained(model)
        dtype = engine.get("dtype", "auto")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(
            model, dtype=dtype if dtype == "auto" else getattr(torch, dtype)).to(self.device).eval()
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tok.eos_token_id
        self.eos = eos if isinstance(eos, list) else [eos]
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos[0]

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return chat_prompt_ids(self.tok, messages, self.chat_template)

    def generate(self, requests: list[dict], sampling: dict, guided_regex: str | None = None) -> list[dict]:
        if guided_regex:
            raise ValueError("constrained decoding needs the vLLM backend")
        torch = self.torch
        prompts = [self.prompt_ids(r["messages"]) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        results: dict[int, dict] = {}
        sample = sampling["temperature"] > 0
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.tensor([[self.pad] * (width - len(prompts[i])) + prompts[i] for i in idx], device=self.device)
            mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in idx], device=self.device)
            if sample and requests[idx[0]].get("seed") is not None:
                torch.manual_seed(requests[idx[0]]["seed"])
            kwargs = dict(do_sample=True, temperature=sampling["temperature"], top_p=sampling.get("top_p", 1.0)) \
                if sample else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
            with torch.no_grad():
                out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=sampling["max_tokens"],
                                          eos_token_id=self.eos, pad_token_id=self.pad, **kwargs)
            for row, i in enumerate(idx):
                new = out[row, width:].tolist()
                stop = next((k for k, t in enumerate(new) if t in self.eos), None)
                gen = new if stop is None else new[:stop + 1]
                text = self.tok.decode(new if stop is None else new[:stop], skip_special_tokens=True)
                for s in sampling.get("stop") or []:  # vLLM's stop strings, cut after the fact
                    text = text.split(s, 1)[0]
                results[i] = {"id": requests[i]["id"], "output": text, "prompt_token_ids": prompts[i],
                              "output_tokens": len(gen), "finish_reason": "length" if stop is None else "stop"}
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        del self.model
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()


def chat_prompt_ids(tokenizer, messages: list[dict], chat_template: str) -> list[int]:
    """The prompt token ids of `messages` under `chat_template`, as both engines render them
    (tests/test_backends.py checks that vLLM's equal these)."""
    out = tokenizer.apply_chat_template(messages, chat_template=chat_template, add_generation_prompt=True,
                                        tokenize=True, return_dict=True)
    return list(out["input_ids"])
