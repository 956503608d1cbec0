"""Classify new texts with a run's trained models: `orchestrate.py classify` and a Python API.

    from pipeline.classify import Classifier
    with Classifier.from_run_dir("runs/demo") as clf:          # loads the model once
        rows = clf.classify(["i am so angry", "what a lovely day"])

Every request goes through predict's own code (`prompts.classify_messages`,
`stages.run_classifier`: the same backends, greedy decoding with the profile's token budget
and engine settings; `parse_label` for the label), so a text gets the answer `predict` would
give it. A text that cannot be asked (empty, longer than the model's context, not UTF-8, a
broken JSONL line) gets its row with `error` set instead of a request: no input is dropped.

A task with several text fields (`inputs: [premise, hypothesis]`) takes one {field: text}
mapping per example: `clf.classify([{"premise": ..., "hypothesis": ...}])`, or on the command
line JSONL / CSV input with one field (column) per input; its rows' `text` is that mapping.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipeline import prompts
from pipeline.config import RunContext
from pipeline.io import DataError, read_json
from pipeline.stages import MODEL_DIRS, answer_decoding, open_session, run_classifier

# model name -> folder under RUN/models (predict's two models); label_first is the label_first experiment's arm
MODELS = {**MODEL_DIRS, "label_first": None}
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
FIELDS = ("text", "label", "reasoning", "valid", "finish_reason", "output", "error")


@dataclass
class Item:
    """One input row: its text, or {field: text} for a task with several text fields (None when
    there is none), and why it cannot be asked, if it cannot."""
    text: str | dict | None
    error: str | None = None


def is_trained(model_dir: Path) -> bool:
    """Final weights saved (Axolotl writes config.json when training starts, the weights at its end)."""
    return any((Path(model_dir) / name).is_file() for name in WEIGHTS)


def model_dir(ctx: RunContext, model: str) -> Path:
    """Where the run keeps `model`: RUN/models/ for predict's two; for label_first, the arm that
    `orchestrate.py experiments` trained, as RUN/experiments/label_first/result.json records it
    (RUN/experiments/models/...; taken below this run directory, so a moved or copied run works)."""
    if MODELS[model] is not None:
        return ctx.model_dir(MODELS[model])
    result = ctx.run_dir / "experiments" / "label_first" / "result.json"
    if not result.is_file():
        return result.parent  # no weights there: not trained
    parts = Path(read_json(result)["arms"][0]["model_dir"]).parts
    return ctx.run_dir.joinpath(*parts[len(parts) - 1 - parts[::-1].index("experiments"):])


def result_row(text: str | dict | None, error: str | None = None, label: str | None = None, reasoning: str | None = None,
               finish_reason: str | None = None, output: str | None = None) -> dict:
    return {"text": text, "label": label, "reasoning": reasoning, "valid": label is not None,
            "finish_reason": finish_reason, "output": output, "error": error}


def answer_row(task, text: str | dict, output: str, finish_reason: str | None) -> dict:
    """The one place an answer becomes a label and a reasoning, for offline and served answers alike."""
    from postprocess.labels import answer_reasoning, parse_label

    return result_row(text, label=parse_label(output, task.labels, task.answer_prefix),
                      reasoning=answer_reasoning(output, task.labels, task.answer_prefix),
                      finish_reason=finish_reason, output=output)


class Classifier:
    """One trained model of a run, loaded once (one engine, kept across `classify` calls)."""

    def __init__(self, ctx: RunContext, model: str = "reasoning"):
        if model not in MODELS:
            raise DataError(f"--model {model!r}: choose one of {', '.join(MODELS)}")
        self.ctx, self.model = ctx, model
        self.model_dir = model_dir(ctx, model)
        if not is_trained(self.model_dir):
            how = ctx.command("experiments", "--only", "label_first") if model == "label_first" else ctx.command("all")
            raise DataError(f"{self.model_dir}: no trained {model!r} model in this run directory; train it first "
                            f"(`{how}`; models present: {', '.join(self.available(ctx)) or 'none'})")
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.max_tokens = answer_decoding(ctx.profile, ctx.task, model)[0]["max_tokens"]
        positions = AutoConfig.from_pretrained(self.model_dir).max_position_embeddings
        self.context = min(int(ctx.generation.get("max_model_len") or positions), positions)
        self.chat_template = prompts.chat_template(ctx.chat_template)
        self._tmp = tempfile.TemporaryDirectory(prefix="classify-")
        self._session = None
        self._calls = 0

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, model: str = "reasoning", backend: str | None = None) -> "Classifier":
        return cls(RunContext.from_run_dir(run_dir, backend=backend), model)

    @staticmethod
    def available(ctx: RunContext) -> list[str]:
        return [name for name in MODELS if is_trained(model_dir(ctx, name))]

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(exc_type)

    def close(self, exc_type=None) -> None:
        if self._session is not None:
            self._session.__exit__(exc_type, None, None)
            self._session = None
        self._tmp.cleanup()

    def classify(self, texts: Iterable[str | dict]) -> list[dict]:
        """One row per text ({field: text} for a task with several text fields), in order: text, label (None if invalid), reasoning, valid,
        finish_reason, output (the raw answer) and error (None unless the text could not be asked)."""
        return self.classify_items([t if isinstance(t, Item) else Item(t) for t in texts])

    def classify_items(self, items: list[Item]) -> list[dict]:
        from pipeline.generation.hf_engine import chat_prompt_ids

        task = self.ctx.task
        rows: list[dict | None] = [None] * len(items)
        requests = []
        for i, item in enumerate(items):
            error = item.error or _check_input(task, item.text)
            if error is None:
                messages = prompts.classify_messages(task, item.text)
                n = len(chat_prompt_ids(self.tokenizer, messages, self.chat_template))
                if n + self.max_tokens > self.context:
                    error = (f"text too long: {n} prompt tokens + {self.max_tokens} answer tokens exceed the "
                             f"model's context of {self.context} tokens")
                else:
                    requests.append({"id": str(i), "messages": messages})
            if error is not None:
                rows[i] = result_row(item.text, error)
        if requests:
            if self._session is None:
                self._session = open_session(self.ctx, "classify", echo=False).__enter__()
            self._calls += 1
            results, _ = run_classifier(self.ctx, self._session, self.model, self.model_dir, requests,
                                        Path(self._tmp.name) / f"call-{self._calls}")
            for res in results:
                i = int(res["id"])
                rows[i] = answer_row(task, items[i].text, res["output"], res.get("finish_reason"))
        return rows


def _check_input(task, example) -> str | None:
    """Why `example` cannot be asked (None if it can): not the task's text field(s), or one empty."""
    if isinstance(example, dict):
        try:
            fields = task.input_fields(example)
        except DataError as e:
            return str(e)
    elif len(task.inputs) > 1:
        return f"expected the fields {task.inputs} of task {task.name!r}, got {type(example).__name__}"
    else:
        fields = {task.inputs[0]: example}
    for name, text in fields.items():
        if not isinstance(text, str):
            return f"expected a text, got {type(text).__name__}" + (f" in field {name!r}" if len(fields) > 1 else "")
        if not text.strip():
            return "empty text" + (f" in field {name!r}" if len(fields) > 1 else "")
    return None


# ---------------------------------------------------------------- reading inputs
def _utf8(text: str, where: str) -> Item:
    """Input is decoded with surrogateescape, so a bad byte marks its own row, not the whole file."""
    try:
        text.encode("utf-8")
        return Item(text)
    except UnicodeEncodeError:
        return Item(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                    f"{where}: not valid UTF-8 (undecodable bytes shown as U+FFFD)")


def input_format(path: str | None, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower() if path and path != "-" else ""
    return {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(suffix, "plain")


def read_items(data: bytes, fmt: str, source: str, text_field: str = "text",
               fields: list[str] | None = None) -> list[Item]:
    """Rows of a plain text (one text a line), JSONL (`text_field` of each object) or CSV
    (`text_field` column) input; a row that cannot be read is an Item with its error. With
    `fields` (a task's several text fields) each JSONL object / CSV row gives {field: text}."""
    import csv
    import io
    import json

    text = data.decode("utf-8", "surrogateescape")
    if fields:
        return _read_field_items(text, fmt, source, fields)
    if fmt == "plain":
        return [_utf8(line, f"{source}:{n}") for n, line in enumerate(text.splitlines(), 1)]
    if fmt == "jsonl":
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{source}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                items.append(Item(_utf8(line, where).text, f"{where}: not valid JSON ({e.msg} at column {e.colno})"))
                continue
            if not isinstance(obj, dict) or text_field not in obj:
                items.append(Item(None, f"{where}: no field {text_field!r} (use --text-field to name it)"))
            else:
                items.append(_utf8(obj[text_field], where) if isinstance(obj[text_field], str) else Item(obj[text_field]))
        return items
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if text_field not in (reader.fieldnames or []):
            raise DataError(f"{source}:1: no column {text_field!r} in the CSV header {reader.fieldnames}; "
                            f"name the text column with --text-field")
        return [_utf8(row[text_field] or "", f"{source}:{reader.line_num}") for row in reader]
    raise DataError(f"--format {fmt!r}: choose auto, plain, jsonl or csv")


def _read_field_items(text: str, fmt: str, source: str, fields: list[str]) -> list[Item]:
    """JSONL objects or CSV rows with one field (column) per text field of the task."""
    import csv
    import io
    import json

    def item(obj: dict, where: str) -> Item:
        missing = [f for f in fields if f not in obj]
        if missing:
            return Item(None, f"{where}: no field(s) {missing}; each row needs {fields}")
        values = {}
        for f in fields:
            value = _utf8(obj[f], where) if isinstance(obj[f], str) else Item(obj[f])
            if value.error:
                return Item({**values, f: value.text}, value.error)
            values[f] = value.text
        return Item(values)

    if fmt == "jsonl":
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                items.append(Item(None, f"{source}:{n}: not valid JSON ({e.msg} at column {e.colno})"))
                continue
            items.append(item(obj, f"{source}:{n}") if isinstance(obj, dict) else
                         Item(None, f"{source}:{n}: expected a JSON object with the fields {fields}"))
        return items
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [f for f in fields if f not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{source}:1: no column(s) {missing} in the CSV header {reader.fieldnames}; "
                            f"the task's text fields are {fields}")
        return [item({f: row[f] or "" for f in fields}, f"{source}:{reader.line_num}") for row in reader]
    raise DataError(f"{source}: the task has the text fields {fields}: give JSONL (one object a line) or CSV "
                    f"(a column each), not plain lines")


# ---------------------------------------------------------------- the CLI
def add_arguments(p) -> None:
    p.add_argument("texts", nargs="*", help="texts to classify (else --input FILE, else stdin); a task with several "
                                            "text fields takes JSONL or CSV input with one field (column) each")
    p.add_argument("--run-dir", required=True, help="a finished run directory, e.g. runs/demo")
    p.add_argument("--model", default="reasoning", choices=list(MODELS), help="which trained model (default: reasoning)")
    p.add_argument("--input", help="a file of texts: plain lines, JSONL or CSV (by extension, or --format); - for stdin")
    p.add_argument("--format", default="auto", choices=["auto", "plain", "jsonl", "csv"],
                   help="input format (default: by the --input file's extension; stdin: plain)")
    p.add_argument("--text-field", default="text", help="JSONL field / CSV column holding the text (default: text)")
    p.add_argument("--output", help="write the JSON lines here instead of stdout")
    p.add_argument("--backend", choices=["auto", "vllm", "transformers"], help="default: the run profile's")


def main(args) -> int:
    """classify: one JSON line per input row, in input order, written as each batch finishes."""
    import json
    import sys

    from tqdm import tqdm

    if args.texts and args.input:
        raise DataError("give texts as arguments or --input FILE, not both")
    ctx = RunContext.from_run_dir(args.run_dir, backend=args.backend)
    fields = ctx.task.inputs if len(ctx.task.inputs) > 1 else None
    if args.texts and fields:
        raise DataError(f"task {ctx.task.name!r} has the text fields {fields}: give them as --input FILE "
                        f"(JSONL with those fields, or CSV with those columns), not as arguments")
    if args.texts:
        items, from_file = [Item(t) for t in args.texts], False
    elif args.input and args.input != "-":
        try:
            data = Path(args.input).read_bytes()
        except OSError as e:
            raise DataError(f"{args.input}: cannot read ({e.strerror})") from None
        items, from_file = read_items(data, input_format(args.input, args.format), args.input, args.text_field,
                                      fields), True
    else:
        items, from_file = read_items(sys.stdin.buffer.read(), input_format(None, args.format), "<stdin>",
                                      args.text_field, fields), False
    batch = int(ctx.generation["chunk_size"])
    counts = {"valid": 0, "invalid": 0, "error": 0}
    with Classifier(ctx, args.model) as clf:  # the model is checked before an --output file is touched
        try:
            out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
        except OSError as e:
            raise DataError(f"{args.output}: cannot write ({e.strerror})") from None
        try:
            with tqdm(total=len(items), desc=f"classify[{args.model}]", unit="text", disable=not from_file,
                      file=sys.stderr) as bar:
                for start in range(0, len(items), batch):
                    for row in clf.classify_items(items[start:start + batch]):
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                        counts["error" if row["error"] else "valid" if row["valid"] else "invalid"] += 1
                    out.flush()
                    bar.update(min(batch, len(items) - start))
        finally:
            if args.output:
                out.close()
    print(f"classify[{args.model}]: {len(items)} rows, {counts['valid']} with a label, {counts['invalid']} without "
          f"a valid label, {counts['error']} not asked (see `error`)" + (f"; written to {args.output}" if args.output else ""),
          file=sys.stderr)
    return 0
