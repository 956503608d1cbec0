"""Experiment `faithfulness`: does the reasoning the model writes support the label it gives?

For every test prediction of the main run's reasoning model, the label line is removed
(`postprocess.labels.answer_reasoning`) and the reasoning alone is read two ways: by the
project's own reading of a verdict (`postprocess.reasoning.concluded_label`, the rules of the
quality filter's off-label check) and by a reference classifier (TF-IDF + logistic regression,
eval/baselines.py) trained on the data engine's train-split reasonings and their gold labels.
Each is compared with the model's final label. No training, no generation: seconds on a CPU.
"""
from __future__ import annotations

import random
from collections import Counter

import pandas as pd

from pipeline.experiments.lab import Lab

QUESTION = ("Is the final label what the generated reasoning argues for? A reasoning that argues one class "
            "and a label line that names another is unfaithful: the reasoning then explains nothing.")
SWITCH = ("none (a reading of the main run's reasoning-model predictions): the label implied by the reasoning "
          "alone, label line removed, by the project's parser and by a reference classifier, against the final "
          "label.")
READ = ("`parser_agree` counts reasonings whose stated verdict names the final label, among those that state "
        "one (`parser_undecided` name none or several); `reference_agree` is the share where a TF-IDF + logistic "
        "regression classifier, trained on train-split reasonings → gold label, reads the final label from the "
        "reasoning. Low agreement in a class means its reasonings argue for something else than the label the "
        "model then writes.")
ALL = "(all)"


def implied_labels(preds: list[dict], train_reasonings: list[dict], labels: list[str], prefix: str) -> list[dict]:
    """Each prediction with its reasoning (label line removed) and the labels it implies:
    `parser` (concluded_label) and `reference` (TF-IDF + LR on the train reasonings)."""
    from eval.baselines import build_tfidf_logreg, majority_baseline
    from postprocess.labels import answer_reasoning
    from postprocess.reasoning import concluded_label

    rows = [{**p, "reasoning": answer_reasoning(p["output"], labels, prefix)} for p in preds]
    texts = [r["reasoning"] for r in train_reasonings]
    golds = [r["label"] for r in train_reasonings]
    asked = [r["reasoning"] or "" for r in rows]
    if len(set(golds)) > 1:
        reference = [str(x) for x in build_tfidf_logreg().fit(texts, golds).predict(asked)] if asked else []
    else:  # one class: logistic regression cannot fit; it is the majority
        reference = majority_baseline(golds, asked, labels)
    for r, ref in zip(rows, reference):
        r["parser"] = concluded_label(r["reasoning"], labels, source_text=r["text"]) if r["reasoning"] else None
        r["reference"] = ref if r["reasoning"] else None
    return rows


def agreement(rows: list[dict], labels: list[str]) -> list[dict]:
    """Per final label (and over all rows with a valid label): how often each reading agrees with it."""
    out = []
    for lab in [ALL, *labels]:
        mine = [r for r in rows if r["pred"] is not None and (lab == ALL or r["pred"] == lab)]
        decided = [r for r in mine if r["parser"] is not None]
        out.append({"final_label": lab, "n": len(mine),
                    "parser_agree": sum(r["parser"] == r["pred"] for r in decided) / len(decided) if decided else None,
                    "parser_undecided": (len(mine) - len(decided)) / len(mine) if mine else None,
                    "reference_agree": sum(r["reference"] == r["pred"] for r in mine) / len(mine) if mine else None})
    return out


def run(lab: Lab) -> dict:
    preds = lab.main_predictions("reasoning")
    train = [r for r in lab.reasonings.values() if r.get("reasoning")]
    rows = implied_labels(preds, train, lab.labels, lab.task.answer_prefix)
    disagree = [r for r in rows if r["pred"] is not None and r["reasoning"]
                and (r["reference"] != r["pred"] or (r["parser"] is not None and r["parser"] != r["pred"]))]
    sample = random.Random(lab.settings["seed"]).sample(disagree, min(lab.own["sample"], len(disagree)))
    return {"n": len(rows), "invalid_final": sum(r["pred"] is None for r in rows),
            "without_reasoning": sum(not r["reasoning"] for r in rows),
            "parser_labels": dict(Counter(str(r["parser"]) for r in rows)),
            "agreement": agreement(rows, lab.labels), "disagreements": len(disagree),
            "sample": [{k: r[k] for k in ("id", "text", "reasoning", "pred", "parser", "reference", "gold")}
                       for r in sorted(sample, key=lambda r: r["id"])]}


def tables(result: dict) -> dict[str, pd.DataFrame]:
    return {"faithfulness_agreement": pd.DataFrame(result["agreement"])}


def notes(result: dict) -> list[str]:
    out = [f"{result['n']} test predictions, {result['invalid_final']} without a valid final label, "
           f"{result['without_reasoning']} without any reasoning; {result['disagreements']} where a reading "
           f"disagrees with the final label{'. A sample of those:' if result['sample'] else '.'}", ""]
    for r in result["sample"]:
        reasoning = " ".join(r["reasoning"].split())
        out += [f"- `{r['id']}` text: {r['text']!r}; final label **{r['pred']}** (gold {r['gold']}); parser: "
                f"{r['parser'] or '—'}, reference: {r['reference'] or '—'}", f"  reasoning: {reasoning[:400]!r}"]
    return out + [""]
