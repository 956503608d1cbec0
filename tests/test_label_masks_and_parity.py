"""What Axolotl trains on, token by token, and that inference asks with the same prompt ids,
for each chat template the project ships: the Llama-3 one (on the tiny model, whose
tokenizer mimics Llama-3.2's) and ChatML (on SmolLM2-135M-Instruct, the small profile's).

One module fixture per template builds a run (`orchestrate.py prepare`), writes
small stage-1 / stage-2 / baseline sets with the project's own functions, resolves the
three Axolotl configs with `pipeline.train.write_config` and runs Axolotl's OWN
preprocessing (`axolotl preprocess`) on them. While Axolotl works, one vLLM process
(the project's `VllmEngine`, tests/helpers/vllm_prompt_ids.py) reports the prompt ids it
feeds the model for the same messages minus the assistant turn.

Checks: labels mask everything but the assistant answer (which is trained whole,
with its turn-ending token, <|eot_id|> or <|im_end|>); the targets are reasoning / reasoning + label / label; and the
prompt Axolotl trained on equals, token for token, the one vLLM and the transformers
backend generate from, while the tokenizer's default template would differ.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")  # write_config imports Axolotl in this process
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline import prompts  # noqa: E402
from pipeline.config import ROOT, RunContext, TaskSpec, load_profile  # noqa: E402
from pipeline.generation.launch import vllm_python  # noqa: E402
from pipeline.generation.job import engine_config  # noqa: E402
from pipeline.io import atomic_write_jsonl, read_jsonl  # noqa: E402
from pipeline.procs import stop, tool_env  # noqa: E402
from pipeline.stages import build_stage2  # noqa: E402
from pipeline.tiny_model import BOS, EOT  # noqa: E402
from pipeline.base_model import package_file  # noqa: E402
from tests.conftest import orchestrate  # noqa: E402

pytestmark = pytest.mark.slow  # Axolotl preprocesses three data sets
SETS = ("stage1", "stage2", "baseline")
N_ROWS = 12
IGNORE = -100


@dataclass(frozen=True)
class Family:
    """A chat template and what its prompts look like token by token."""
    name: str
    profile: dict                  # written to a .yml (inheriting a shipped profile) for prepare
    bos: str | None                # one BOS at position 0 (Llama-3), or none (ChatML)
    end: str                       # the turn-ending token, trained with the answer
    after_end: str                 # what the template writes after it (never trained)
    header: str                    # the assistant header every generation prompt ends with
    header_tokens: int
    default_system: str            # what the tokenizer's own default template adds


FAMILIES = {
    "llama3": Family("llama3", {"inherit": "tiny"}, BOS, EOT, "",
                     "<|start_header_id|>assistant<|end_header_id|>\n\n", 4, "Cutting Knowledge Date"),
    # the small profile's model and template; synthetic data, and a stage-1 set to check as well
    "chatml": Family("chatml", {"inherit": "small", "generation": {"generator": "stage1"},
                                "reasoning_set": {"source": "synthetic", "n": 60},
                                "task_data": {"source": "synthetic", "n_train": 60, "n_test": 20}},
                     None, "<|im_end|>", "\n", "<|im_start|>assistant\n", 4, "You are a helpful AI assistant named SmolLM"),
}
HELPER = ROOT / "tests" / "helpers" / "vllm_prompt_ids.py"
PREPROCESS_TIMEOUT = 420
VLLM_TIMEOUT = 420

# Made-up stage-1 outputs: several sentences, a paragraph break, quotes, non-ASCII.
REASONINGS = [
    "The writer calls the feeling {w!r}. That word names {label}, so the text expresses {label}.",
    "Look at the key word: \"{w}\".\nIt is how people describe {label}; nothing in the text points elsewhere.",
    "First, the text is about the writer's own state.\n\nSecond, '{w}' signals {label}, naïvely or not.",
    "Words like {w} carry {label} — the sentence has no contrast or negation that would flip it.",
]


@dataclass
class Prepared:
    fam: Family
    ctx: RunContext
    tok: object
    examples: dict[str, dict[str, dict]]          # which -> id -> {"messages", "label", "reasoning"}
    rows: dict[str, list[dict]]                   # which -> Axolotl's prepared rows, paired with an example
    vllm_proc: subprocess.Popen | None = None
    vllm_out: Path | None = None
    vllm_log: Path | None = None
    vllm_reason: str = ""
    vllm_started: float = 0.0
    seconds: dict = field(default_factory=dict)
    _vllm_ids: dict | None = None

    def vllm_prompt_ids(self) -> dict[str, list[int]]:
        if self.vllm_proc is None:
            pytest.skip(self.vllm_reason)
        if self._vllm_ids is None:
            try:
                rc = self.vllm_proc.wait(timeout=VLLM_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.vllm_proc.terminate()
                self.vllm_proc.wait(timeout=60)
                raise AssertionError(f"vLLM helper did not finish in {VLLM_TIMEOUT}s; log {self.vllm_log}")
            if rc != 0 or not self.vllm_out.exists():
                tail = self.vllm_log.read_text(errors="replace")[-4000:]
                raise AssertionError(f"vLLM helper exited {rc}:\n{tail}")
            self._vllm_ids = json.loads(self.vllm_out.read_text())["prompt_token_ids"]
            print(f"vLLM helper finished {time.perf_counter() - self.vllm_started:.1f}s after it started")
        return self._vllm_ids


def _render(tok, messages: list[dict], add_generation_prompt: bool, chat: str) -> str:
    return tok.apply_chat_template(messages, chat_template=prompts.chat_template(chat), tokenize=False,
                                   add_generation_prompt=add_generation_prompt)


def _write_small_sets(ctx: RunContext) -> dict[str, dict[str, dict]]:
    """stage1: the first rows `prepare` wrote; stage2/baseline: `build_stage2` over a
    truncated train split and reasonings.jsonl written here in the stage-1 model's stead."""
    task = ctx.task
    stage1 = read_jsonl(ctx.train_set("stage1"))[:N_ROWS]
    atomic_write_jsonl(ctx.train_set("stage1"), stage1)
    train = read_jsonl(ctx.task_split("train"))[:N_ROWS]
    atomic_write_jsonl(ctx.task_split("train"), train)
    reasonings = [{"id": r["id"], "text": r["text"], "label": r["label"],
                   "reasoning": REASONINGS[i % len(REASONINGS)].format(w=r["text"].split()[-1], label=r["label"])}
                  for i, r in enumerate(train)]
    atomic_write_jsonl(ctx.generations / "reasonings.jsonl", reasonings)
    build_stage2(ctx)

    by_id = {r["id"]: r for r in reasonings}
    examples = {"stage1": {r["id"]: {"messages": r["messages"], "reasoning": r["messages"][-1]["content"]}
                           for r in stage1}}
    for which in ("stage2", "baseline"):
        rows = read_jsonl(ctx.train_set(which))
        assert [r["id"] for r in rows] == [r["id"] for r in train]
        examples[which] = {r["id"]: {"messages": r["messages"], "label": by_id[r["id"]]["label"],
                                     "reasoning": by_id[r["id"]]["reasoning"]} for r in rows}
    # the project's own functions, called directly, give the same messages build_stage2 wrote
    r0 = reasonings[0]
    assert examples["stage2"][r0["id"]]["messages"] == prompts.classify_messages(
        task, r0["text"], prompts.stage2_answer(task, r0["reasoning"], r0["label"]))
    assert examples["baseline"][r0["id"]]["messages"] == prompts.classify_messages(
        task, r0["text"], prompts.baseline_answer(task, r0["label"]))
    return examples


def _start_vllm(ctx: RunContext, examples: dict, work: Path) -> tuple[subprocess.Popen, Path, Path]:
    job = {"model": ctx.base_model, "chat_template": prompts.chat_template(ctx.chat_template),
           "engine": engine_config(ctx.generation),
           "requests": [{"id": f"{which}/{i}", "messages": ex["messages"][:-1]}
                        for which in SETS for i, ex in examples[which].items()]}
    (work / "vllm_job.json").write_text(json.dumps(job))
    out, log = work / "vllm_out.json", work / "vllm.log"
    env = tool_env(offline=True, extra={k: str(v) for k, v in (ctx.generation.get("worker_env") or {}).items()})
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(vllm_python()), str(HELPER), str(work / "vllm_job.json"), str(out)],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    return proc, out, log


def _load_prepared(ctx: RunContext, which: str) -> list[dict]:
    from datasets import load_from_disk

    dirs = sorted({p.parent for p in (ctx.run_dir / "prepared" / which).rglob("dataset_info.json")})
    assert len(dirs) == 1, f"expected one prepared dataset under prepared/{which}, found {dirs}"
    ds = load_from_disk(str(dirs[0]))
    return [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"]),
             "attention_mask": list(r["attention_mask"])} for r in ds]


def _pair(tok, rows: list[dict], examples: dict[str, dict], chat: str) -> list[dict]:
    """Axolotl shuffles: find each prepared row's example by decoding it."""
    by_text = {_render(tok, ex["messages"], False, chat): i for i, ex in examples.items()}
    assert len(by_text) == len(examples), "examples must render differently to be paired"
    paired = []
    for row in rows:
        text = tok.decode(row["input_ids"], skip_special_tokens=False)
        assert text in by_text, f"prepared row decodes to a text none of our examples renders to:\n{text!r}"
        paired.append({**row, "id": by_text[text], **examples[by_text[text]]})
    return paired


@pytest.fixture(scope="module", params=list(FAMILIES))
def prepared(request, tmp_path_factory) -> Prepared:
    import yaml
    from transformers import AutoTokenizer

    from pipeline.train import axolotl_command, write_config

    fam = FAMILIES[request.param]
    t0 = time.perf_counter()
    work = tmp_path_factory.mktemp(f"label_masks_{fam.name}")
    profile_path = work / f"parity_{fam.name}.yml"
    profile_path.write_text(yaml.safe_dump(fam.profile))
    profile = load_profile(str(profile_path))
    if profile.get("base_model_gguf"):
        try:
            package_file(profile["base_model_gguf"]["package"], profile["base_model_gguf"]["file"])
        except Exception as e:
            pytest.skip(str(e))
    run_dir = work / "run"
    orchestrate("prepare", "--profile", str(profile_path), "--run-dir", str(run_dir))
    ctx = RunContext(profile, TaskSpec.load("emotion"), run_dir)
    examples = _write_small_sets(ctx)
    seconds = {"prepare": time.perf_counter() - t0}

    vllm_proc = vllm_out = vllm_log = None
    reason = ""
    if vllm_python() is None:
        reason = "no vLLM environment (.venv-vllm or VLLM_PYTHON with vllm importable)"
    else:  # started now: it runs while Axolotl preprocesses
        vllm_proc, vllm_out, vllm_log = _start_vllm(ctx, examples, work)
    vllm_started = time.perf_counter()

    procs = {}
    try:
        configs = {which: write_config(ctx, which) for which in SETS}
        env = tool_env(offline=True)
        for which in SETS:  # three concurrent `axolotl preprocess`: most of each is start-up
            log = open(work / f"preprocess-{which}.log", "w")
            procs[which] = (subprocess.Popen(axolotl_command("preprocess", configs[which]), stdout=log,
                                             stderr=subprocess.STDOUT, cwd=ctx.run_dir,
                                             env={**env, "HF_DATASETS_CACHE": str(work / f"hf-datasets-{which}")}),
                            log)
        for which, (proc, log) in procs.items():
            rc = proc.wait(timeout=PREPROCESS_TIMEOUT)
            log.close()
            if rc != 0:
                tail = Path(log.name).read_text(errors="replace")[-4000:]
                raise AssertionError(f"axolotl preprocess {which} exited {rc}:\n{tail}")
        seconds["preprocess"] = time.perf_counter() - t0 - seconds["prepare"]
        print(f"fixture timings (s): {seconds}")

        tok = AutoTokenizer.from_pretrained(ctx.base_model)
        rows = {which: _pair(tok, _load_prepared(ctx, which), examples[which], ctx.chat_template) for which in SETS}
        state = Prepared(fam, ctx, tok, examples, rows, vllm_proc, vllm_out, vllm_log, reason, vllm_started, seconds)
        yield state
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        if vllm_proc is not None:
            stop(vllm_proc, grace=60)


def _split(row: dict) -> int:
    """Index of the first trained label: everything before it is the prompt."""
    return next(i for i, lab in enumerate(row["labels"]) if lab != IGNORE)


def _answer(which: str, ex: dict) -> str:
    if which == "stage1":
        return ex["reasoning"]
    if which == "stage2":
        return f"{ex['reasoning']}\n\nLabel: {ex['label']}"
    return f"Label: {ex['label']}"


# ---------------------------------------------------------------- what Axolotl produced
def test_every_example_is_prepared_exactly_once(prepared):
    for which in SETS:
        ids = [r["id"] for r in prepared.rows[which]]
        assert sorted(ids) == sorted(prepared.examples[which]), which
        assert len(ids) == N_ROWS


@pytest.mark.parametrize("which", SETS)
def test_labels_train_exactly_the_assistant_answer(prepared, which):
    tok, fam = prepared.tok, prepared.fam
    eot = tok.convert_tokens_to_ids(fam.end)
    header = tok(fam.header, add_special_tokens=False).input_ids
    after = tok(fam.after_end, add_special_tokens=False).input_ids if fam.after_end else []
    assert len(header) == fam.header_tokens  # <|start_header_id|> assistant <|end_header_id|> \n\n; <|im_start|> ass istant \n
    for row in prepared.rows[which]:
        ids, labels = row["input_ids"], row["labels"]
        assert len(labels) == len(ids) == len(row["attention_mask"]) and all(row["attention_mask"])
        _check_bos(tok, fam, ids, "axolotl")
        s = _split(row)
        # the prompt (system/user turns and the assistant header) is masked ...
        assert all(lab == IGNORE for lab in labels[:s])
        assert ids[s - len(header):s] == header
        prompt_text = _render(tok, row["messages"][:-1], True, prepared.ctx.chat_template)
        assert tok.decode(ids[:s], skip_special_tokens=False) == prompt_text
        # ... the whole answer, through its turn-ending token, is trained: labels == input_ids ...
        end = len(ids) - len(after)
        assert labels[s:end] == ids[s:end]
        assert ids[end - 1] == eot and labels[end - 1] == eot
        answer = row["messages"][-1]["content"]
        assert ids[s:] == tok(answer, add_special_tokens=False).input_ids + [eot] + after
        # ... and what the template writes after it (ChatML's newline) is not
        assert all(lab == IGNORE for lab in labels[end:])


def test_padding_is_masked_by_axolotls_collator(prepared):
    """Prepared rows are unpadded; the trainer's collator pads, and pads labels with -100."""
    import torch
    from axolotl.utils.collators import DataCollatorForSeq2Seq

    tok = prepared.tok
    rows = sorted(prepared.rows["stage2"], key=lambda r: len(r["input_ids"]))
    short, long_ = rows[0], rows[-1]
    assert len(short["input_ids"]) < len(long_["input_ids"])
    feats = [{k: r[k] for k in ("input_ids", "labels", "attention_mask")} for r in (short, long_)]
    batch = DataCollatorForSeq2Seq(tok, padding=True, return_tensors="pt")(feats)
    n = len(short["input_ids"])
    ids, labels, mask = batch["input_ids"][0], batch["labels"][0], batch["attention_mask"][0]
    pad = mask == 0
    assert int(pad.sum()) == ids.shape[0] - n > 0
    assert torch.all(ids[pad] == tok.pad_token_id) and torch.all(labels[pad] == IGNORE)
    assert ids[~pad].tolist() == short["input_ids"] and labels[~pad].tolist() == short["labels"]
    assert batch["labels"][1].tolist() == long_["labels"]


@pytest.mark.parametrize("which", SETS)
def test_trained_tokens_decode_to_the_target(prepared, which):
    tok = prepared.tok
    for row in prepared.rows[which]:
        end = prepared.fam.end
        trained = tok.decode([t for t in row["labels"] if t != IGNORE], skip_special_tokens=False)
        assert trained == _answer(which, row) + end
        if which == "stage2":   # reasoning first, label last
            assert trained.startswith(row["reasoning"]) and trained.index(row["reasoning"]) < trained.index("Label:")
            assert trained.endswith(f"\n\nLabel: {row['label']}{end}") and trained.count("Label:") == 1
        if which == "baseline":
            assert trained == f"Label: {row['label']}{end}"


# ---------------------------------------------------------------- training/inference parity
def _check_bos(tok, fam: Family, ids: list[int], who: str) -> None:
    """Llama-3: exactly one BOS, at position 0. ChatML has none: the first token opens the first turn."""
    if fam.bos is None:
        assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>"), f"{who}: the prompt must open a turn"
        return
    bos = tok.convert_tokens_to_ids(fam.bos)
    assert ids[0] == bos and ids.count(bos) == 1, f"{who}: exactly one BOS, at position 0"


def _check_prompt_shape(tok, fam: Family, ids: list[int], who: str) -> None:
    header = tok(fam.header, add_special_tokens=False).input_ids
    _check_bos(tok, fam, ids, who)
    assert ids[-len(header):] == header, f"{who}: the prompt must end with the assistant header"


@pytest.fixture(scope="module")
def hf_engine(prepared):
    from pipeline.generation.hf_engine import TransformersEngine

    return TransformersEngine(prepared.ctx.base_model, prompts.chat_template(prepared.ctx.chat_template),
                              engine_config(prepared.ctx.generation))


@pytest.mark.parametrize("which", SETS)
def test_transformers_backend_prompt_ids_equal_axolotls(prepared, hf_engine, which):
    for row in prepared.rows[which]:
        axolotl_prompt = row["input_ids"][:_split(row)]
        _check_prompt_shape(prepared.tok, prepared.fam, axolotl_prompt, "axolotl")
        ours = hf_engine.prompt_ids(row["messages"][:-1])
        _check_prompt_shape(prepared.tok, prepared.fam, ours, "transformers")
        assert ours == axolotl_prompt, f"{which}/{row['id']}"


@pytest.mark.vllm
def test_vllm_prompt_ids_equal_axolotls(prepared):
    vllm_ids = prepared.vllm_prompt_ids()
    assert len(vllm_ids) == len(SETS) * N_ROWS
    for which in SETS:
        for row in prepared.rows[which]:
            ours = vllm_ids[f"{which}/{row['id']}"]
            _check_prompt_shape(prepared.tok, prepared.fam, ours, "vllm")
            assert ours == row["input_ids"][:_split(row)], f"{which}/{row['id']}"


@pytest.mark.parametrize("which", SETS)
def test_default_template_would_give_different_prompt_ids(prepared, which):
    """The trap: like Llama-3.2's, the tiny tokenizer's own template adds a dated system
    block (SmolLM2's adds "You are a helpful AI assistant named SmolLM..."), and encoding a
    Llama-3 render with add_special_tokens doubles the BOS. Either at inference would break
    parity, and the parity tests above would see it."""
    tok, fam = prepared.tok, prepared.fam
    for row in prepared.rows[which]:
        axolotl_prompt = row["input_ids"][:_split(row)]
        ours = tok.decode(axolotl_prompt, skip_special_tokens=False)
        user = row["messages"][:-1]
        default = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        default = list(default)
        assert default != axolotl_prompt
        default_text = tok.decode(default, skip_special_tokens=False)
        assert fam.default_system in default_text and fam.default_system not in ours
        # the system block is the only difference
        block_end = default_text.index(fam.end) + len(fam.end) + len(fam.after_end)
        assert (fam.bos or "") + default_text[block_end:] == ours
        if fam.bos is not None:
            bos = tok.convert_tokens_to_ids(fam.bos)
            double = tok(_render(tok, user, True, prepared.ctx.chat_template)).input_ids  # add_special_tokens=True
            assert double[:2] == [bos, bos] and double != axolotl_prompt and double[1:] == axolotl_prompt
