"""Experiment `label_first`: keep the reasoning as supervision, stop paying for it at inference.

A third model is trained like stage 2 (the main run's stage-2 config, ids and steps) on
text -> label line, then the reasoning (prompts/label_first_assistant.jinja), and predicted with
decoding stopped at the end of the label line (`stop` after the first line), as distilling
step-by-step does. Its accuracy and output tokens are set beside the main run's two models on
the whole test split.
"""
from __future__ import annotations

import pandas as pd

from pipeline import prompts
from pipeline.experiments.lab import Lab, mcnemar, scores

QUESTION = ("Does training on the reasoning help if the model answers first and never writes the reasoning at "
            "inference? It would cost what the baseline costs per prediction.")
SWITCH = ("the order of the target: label then reasoning (label_first, decoding stopped after the label line) vs "
          "the main run's reasoning then label (reasoning) and label only (baseline); same ids, config and steps.")
READ = ("label_first should cost about the baseline's output tokens. Accuracy above the baseline's (McNemar "
        "significant) means the reasoning helps as a training signal alone; near the reasoning model's means the "
        "written reasoning adds nothing at inference; below the baseline's means the extra target only dilutes "
        "the label.")


def run(lab: Lab) -> dict:
    by_id = {r["id"]: r for r in lab.train_split}
    rows = [{"id": r["id"], "messages": prompts.classify_messages(lab.task, by_id[r["id"]], prompts.label_first_answer(
        lab.task, lab.reasonings[r["id"]]["reasoning"], by_id[r["id"]]["label"]))} for r in lab.main_set("stage2")]
    arm = lab.train("stage2", rows, "label_first", overrides=False)
    test = lab.test_split
    with lab.session() as session:
        mine = lab.predict(session, "label_first", arm["model_dir"], test, "label_first")
    preds = {"baseline": lab.main_predictions("baseline"), "reasoning": lab.main_predictions("reasoning"),
             "label_first": mine}
    stage2 = lab._main_training("stage2")
    return {"arms": [arm], "main_training": stage2,
            "models": {name: scores(p, lab.labels) for name, p in preds.items()},
            "vs": {other: mcnemar(preds[other], mine, lab.labels, other, "label_first")
                   for other in ("baseline", "reasoning")}}


def tables(result: dict) -> dict[str, pd.DataFrame]:
    models = pd.DataFrame([{"model": n, "n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                            "invalid": m["invalid"], "mean_output_tokens": m["mean_output_tokens"]}
                           for n, m in result["models"].items()])
    tests = pd.DataFrame([{"label_first vs": other, "acc_diff": c["acc_diff"], "ci95_lo": c["ci95"][0],
                           "ci95_hi": c["ci95"][1], "b01": c["b01"], "b10": c["b10"], "method": c["method"],
                           "pvalue": c["pvalue"], "significant": c["significant"]} for other, c in result["vs"].items()])
    return {"label_first_models": models, "label_first_mcnemar": tests}


def notes(result: dict) -> list[str]:
    arm, main = result["arms"][0], result["main_training"]
    same = all(arm.get(k) == main.get(k) for k in ("ids_sha256", "optimizer_steps", "examples_per_step"))
    return [f"Trained {'like' if same else 'NOT like'} the main stage-2 model: {arm['optimizer_steps']} optimizer "
            f"steps of {arm['examples_per_step']} examples (main: {main.get('optimizer_steps')} of "
            f"{main.get('examples_per_step')}), {'same' if arm.get('ids_sha256') == main.get('ids_sha256') else 'other'}"
            f" example ids. b01 = the other model right and label_first wrong.", ""]
