"""Per-model classification metrics, computed with scikit-learn so nobody has to trust hand-rolled maths.

An output with no valid label (pred is None, or a string that is not one of the task's labels) is
a wrong answer, not a missing one: dropping it would flatter a model that often fails to answer.
It is mapped to the sentinel INVALID, which is never a label, so sklearn scores it as a miss for
the gold class and as nobody's false positive.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

INVALID = "[invalid]"


def normalise_preds(preds: Sequence[str | None], labels: Sequence[str]) -> list[str]:
    """Map None and anything outside `labels` to INVALID, so invalid outputs count as wrong."""
    allowed = set(labels)
    return [p if isinstance(p, str) and p in allowed else INVALID for p in preds]


def correctness(gold: Sequence[str], preds: Sequence[str | None], labels: Sequence[str]) -> np.ndarray:
    """Boolean vector: True where the (normalised) prediction equals the gold label."""
    norm = normalise_preds(preds, labels)
    return np.array([g == p for g, p in zip(gold, norm)], dtype=bool)


def _mean_or_none(values: Sequence[float | None] | None) -> float | None:
    """Mean of the known values; None (JSON null) when there are none, e.g. for CPU baselines' tokens."""
    if values is None:
        return None
    known = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(known)) if known else None


def model_metrics(gold: Sequence[str], preds: Sequence[str | None], labels: Sequence[str],
                  output_tokens: Sequence[float | None] | None = None,
                  seconds: Sequence[float | None] | None = None) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support, confusion and cost of one model on one test set.

    `confusion` is len(labels) x len(labels), rows = gold, columns = prediction, both in `labels`
    order; `invalid_by_gold` counts the invalid outputs per gold row, so each row of `confusion`
    plus its invalid count equals that class's support. Macro-F1 averages over `labels` only (the
    sentinel is not a class). `mean_output_tokens` / `seconds_per_example` are None when unknown.
    """
    labels = list(labels)
    gold = list(gold)
    if len(gold) != len(preds):
        raise ValueError(f"gold has {len(gold)} rows but preds has {len(preds)}")
    unknown = sorted({g for g in gold} - set(labels))
    if unknown:
        raise ValueError(f"gold labels {unknown} are not among the task labels {labels}")
    norm = normalise_preds(preds, labels)
    n = len(gold)
    per_class = {lab: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for lab in labels}
    if n:
        p, r, f, s = precision_recall_fscore_support(gold, norm, labels=labels, zero_division=0)
        for i, lab in enumerate(labels):
            per_class[lab] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])}
        full = confusion_matrix(gold, norm, labels=labels + [INVALID])
        accuracy = float(accuracy_score(gold, norm))
        macro_f1 = float(f1_score(gold, norm, labels=labels, average="macro", zero_division=0))
    else:
        full = np.zeros((len(labels) + 1, len(labels) + 1), dtype=int)
        accuracy = macro_f1 = float("nan")
    return {
        "n": n,
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "invalid": int(sum(p == INVALID for p in norm)),
        "per_class": per_class,
        "confusion": full[:len(labels), :len(labels)].astype(int).tolist(),
        "invalid_by_gold": full[:len(labels), len(labels)].astype(int).tolist(),
        "mean_output_tokens": _mean_or_none(output_tokens),
        "seconds_per_example": _mean_or_none(seconds),
    }
