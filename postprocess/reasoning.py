"""Clean and vet stage-1 reasonings before they become stage-2 targets.

Stage 2 learns to write "{reasoning}\\n\\nLabel: {gold}", so a reasoning must be
plain prose that supports the gold label: without chat debris, without its own
label line (stage 2 appends one), not cut off mid-sentence, not a degenerate
loop, and not arguing for another label. The caller regenerates the ids whose
outputs fail (new seed, up to k times) and drops those that never pass;
ReasoningQC keeps that loop to one call per output and counts what happened:

    qc = ReasoningQC(labels, prefix)
    todo, kept = dict(gold), {}
    for seed in seeds:                                  # 1 + k rounds
        for id_, raw in generate(todo, seed).items():
            if (r := qc.accept(id_, todo[id_], raw)) is not None:
                kept[id_] = r
        todo = {i: g for i, g in todo.items() if i not in kept}
    for id_ in todo:
        qc.drop(id_)
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from postprocess.text import bare_label, label_mentions, prefix_regex, strip_artifacts

_HEADER = re.compile(r"\s*(?:#+\s*)?\**\s*reasoning\s*\**\s*(?::\s*\**|\n)\s*", re.IGNORECASE)
# A complete sentence ends with . ! ? (then maybe closing quotes, brackets or
# markdown asterisks) or with a closing double quote.
_END = r"(?:[.!?][\"'”’)\]*]*|[\"”])"
_LIST_MARKER = re.compile(r"\s*(?:\d+|[a-zA-Z])\.")  # "2." opening a list item ends no sentence
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"'”’)\]*]*\s+|\n+")
_WORD = re.compile(r"\w+(?:'\w+)*")
# Phrases that state a verdict; a label named after one, in its sentence, is what the sentence concludes.
_VERDICT = re.compile(
    r"\b(?:therefore|thus|hence|overall|in conclusion|in summary|ultimately|"
    r"(?:answer|label|emotion|category|class|classification|sentiment|feeling)s?"
    r"(?:(?:\s+\w+){0,3}?\s+(?:is|are|would be)\b|\s*:)|"
    r"(?:classified|categori[sz]ed|labell?ed) as|best described as|falls under|corresponds to)\b",
    re.IGNORECASE,
)
# A verdict in a sentence with one of these is a hypothesis being weighed, not the conclusion.
_HEDGE = re.compile(r"\b(?:might|may|could|if|at first|initially|seems? like)\b", re.IGNORECASE)
# A mention is negated when one of these (or a "...n't" word) is among the 4
# words before it in its clause ("not anger", "no fear or anger", "more X than anger").
_NEGATORS = frozenset("not no nor neither never without than instead less lacks rule ruled".split())
_CLAUSE_BREAK = re.compile(r"[,;:()]|\bbut\b|\bhowever\b", re.IGNORECASE)


def clean_reasoning(text: str, labels: Sequence[str], prefix: str = "Label:") -> str:
    """Return `text` as a clean reasoning (possibly "").

    In order: cut at the end-of-turn token and drop chat tokens, role headers
    and a role word alone on the first line; drop a leading "Reasoning:" /
    "## Reasoning" header; collapse spaces/tabs within lines; drop every line
    starting with `prefix` (any case, after markdown), and trailing lines that
    are only a label ("**Joy**"); cut a `prefix` tail off the last line
    ("... so joy. Label: joy"); keep at most one blank line in a row; and, if
    the text does not end a sentence (. ! ? or a closing quote), cut it back
    to the last complete sentence when there is one (a list marker like "2."
    is not one).
    """
    text = strip_artifacts(text)
    text = _HEADER.sub("", text, count=1) if _HEADER.match(text) else text
    is_prefixed = prefix_regex(prefix).match
    lines = [" ".join(line.split()) for line in text.split("\n")]
    lines = [l for l in lines if not is_prefixed(l.replace("*", "").lstrip("#>-_ "))]
    while lines and (not lines[-1] or bare_label(lines[-1], labels)):
        lines.pop()
    tails = list(prefix_regex(prefix).finditer(lines[-1])) if lines else []
    if tails:
        lines[-1] = lines[-1][: tails[-1].start()].rstrip(" *")
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if text and not re.search(_END + r"$", text):
        ends = [m.end() for m in re.finditer(_END + r"(?=\s)", text)
                if not _LIST_MARKER.fullmatch(text[text.rfind("\n", 0, m.start()) + 1 : m.end()])]
        if ends:
            text = text[: ends[-1]]
    return text.strip()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.replace("’", "'").lower())


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def repeat_ratio(text: str) -> float:
    """Return the larger of the share of duplicate sentences and of repeated word 4-grams (0..1)."""
    sents = [" ".join(_words(s)) for s in _sentences(text)]
    sents = [s for s in sents if s]
    words = _words(text)
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return max(1 - len(set(seq)) / len(seq) if seq else 0.0 for seq in (sents, grams))


# A quoted span: "...", “...”, or '...' not part of a word (so "don't" opens none).
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<!\w)'[^']*'(?!\w)")


def _quoted_spans(sentence: str, source_text: str | None) -> list[tuple[int, int]]:
    """Spans of `sentence` that quote rather than assert: text in quotes, and any run of
    three or more words copied from the input text (a quote without quote marks)."""
    spans = [m.span() for m in _QUOTED.finditer(sentence)]
    if source_text:
        source = f" {' '.join(_words(source_text))} "
        words = list(_WORD.finditer(sentence.replace("’", "'")))
        low = [w.group().lower() for w in words]
        spans += [(words[i].start(), words[i + 2].end()) for i in range(len(words) - 2)
                  if f" {' '.join(low[i:i + 3])} " in source]
    return spans


def _asserted(sentence: str, labels: Sequence[str], start: int = 0, source_text: str | None = None) -> set[str]:
    """Return the labels named, not negated and not quoted, in `sentence` at or after offset `start`."""
    out = set()
    quoted = _quoted_spans(sentence, source_text)
    for s, e, label in label_mentions(sentence, labels):
        if any(a <= s and e <= b for a, b in quoted):
            continue
        before = _words(_CLAUSE_BREAK.split(sentence[:s])[-1])[-4:]
        if s >= start and not any(w in _NEGATORS or w.endswith("n't") for w in before):
            out.add(label)
    return out


def check_reasoning(
    text: str, gold: str, labels: Sequence[str], min_chars: int = 20, max_repeat_ratio: float = 0.5,
    source_text: str | None = None,
) -> str | None:
    """Return None if the cleaned reasoning `text` is acceptable for `gold`, else a reason code.

    Codes, first that applies:
    - "empty": nothing but whitespace.
    - "too_short": fewer than `min_chars` characters.
    - "looping": repeat_ratio(text) > `max_repeat_ratio`.
    - "off_label": it concludes another label. A label "is asserted" in a span
      when named there (whole words, any case) and not negated (no "not", "no",
      "than", "...n't", ... among the 4 words before it in its clause). The
      reasoning is off-label if (a) its last sentence asserts another label and
      not `gold`, or (b) a sentence without hedges ("might", "if", "at first",
      ...) has a verdict phrase ("therefore", "overall", "the emotion is",
      "the answer would be", "classified as", ...) after which it asserts
      another label and not `gold`. Naming labels in passing ("this is not
      anger but sadness", "a hint of fear") or weighing them ("it might seem
      like fear") is fine, and so is quoting: a label word inside quotes, or
      inside a run of three or more words copied from `source_text` (the input
      text the reasoning explains), is not asserted. Known blind spot: a label that is also a common
      word ("love" as a verb) in the last sentence counts as a mention.
    Raises ValueError if `gold` is not in `labels`.
    """
    if gold not in labels:
        raise ValueError(f"gold label {gold!r} not in {list(labels)}")
    if not text.strip():
        return "empty"
    if len(text.strip()) < min_chars:
        return "too_short"
    if repeat_ratio(text) > max_repeat_ratio:
        return "looping"
    sentences = _sentences(text)
    spans = [(sentences[-1], 0)] + _verdicts(sentences)
    for sentence, start in spans:
        named = _asserted(sentence, labels, start, source_text)
        if gold not in named and named:
            return "off_label"
    return None


def _verdicts(sentences: list[str]) -> list[tuple[str, int]]:
    """(sentence, offset of its verdict phrase) for each unhedged sentence that states a verdict."""
    return [(s, m.start()) for s in sentences if not _HEDGE.search(s) and (m := _VERDICT.search(s))]


def concluded_label(text: str | None, labels: Sequence[str], source_text: str | None = None) -> str | None:
    """The label a reasoning concludes on its own, read by check_reasoning's off-label rules: the labels
    asserted after the verdict phrase of its last unhedged verdict sentence, else those asserted in its
    last sentence. None when that names no label or several (the reasoning decides nothing)."""
    sentences = _sentences(text or "")
    if not sentences:
        return None
    verdicts = _verdicts(sentences)
    sentence, start = verdicts[-1] if verdicts else (sentences[-1], 0)
    named = _asserted(sentence, labels, start, source_text)
    if not named and verdicts:
        named = _asserted(sentences[-1], labels, 0, source_text)
    return next(iter(named)) if len(named) == 1 else None


@dataclass
class QCStats:
    """Per-class counts of the QC loop, keyed by gold label.

    kept/dropped count examples (ids) accepted / given up; retried counts
    attempts after an id's first one; reasons counts rejected attempts by
    (gold label, reason code). Attempts = kept + rejected = ids tried + retried.
    """

    kept: Counter = field(default_factory=Counter)
    retried: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)

    def record(self, gold: str, reason: str | None, retry: bool) -> None:
        """Count one checked attempt for an example of class `gold`; `reason` None means kept."""
        self.retried[gold] += retry
        if reason is None:
            self.kept[gold] += 1
        else:
            self.reasons[gold, reason] += 1

    def to_dict(self) -> dict:
        """Return {"per_class": {label: {kept, retried, dropped, reasons}}, "total": {...}} (JSON-ready)."""
        labels = sorted(set(self.kept) | set(self.retried) | set(self.dropped) | {g for g, _ in self.reasons})

        def row(keep: set[str]) -> dict:
            reasons = Counter()
            for (g, code), n in self.reasons.items():
                if g in keep:
                    reasons[code] += n
            return {
                "kept": sum(self.kept[g] for g in keep),
                "retried": sum(self.retried[g] for g in keep),
                "dropped": sum(self.dropped[g] for g in keep),
                "reasons": dict(sorted(reasons.items())),
            }

        return {"per_class": {g: row({g}) for g in labels}, "total": row(set(labels))}


class ReasoningQC:
    """Clean + check each raw output of the generate loop and keep the stats (see module doc)."""

    def __init__(
        self, labels: Sequence[str], prefix: str = "Label:", min_chars: int = 20, max_repeat_ratio: float = 0.5
    ) -> None:
        self.labels, self.prefix = list(labels), prefix
        self.min_chars, self.max_repeat_ratio = min_chars, max_repeat_ratio
        self.stats = QCStats()
        self._gold: dict[str, str] = {}

    def accept(self, id_: str, gold: str, raw: str, source_text: str | None = None) -> str | None:
        """Return the cleaned reasoning of `raw` if it passes check_reasoning, else None (retry id_).

        `source_text` is the example's input text: label words quoted from it are not verdicts."""
        cleaned = clean_reasoning(raw, self.labels, self.prefix)
        reason = check_reasoning(cleaned, gold, self.labels, self.min_chars, self.max_repeat_ratio, source_text)
        self.stats.record(gold, reason, retry=id_ in self._gold)
        self._gold[id_] = gold
        return cleaned if reason is None else None

    def drop(self, id_: str) -> None:
        """Give up on `id_` after its last rejected attempt (KeyError if it was never attempted)."""
        self.stats.dropped[self._gold[id_]] += 1
