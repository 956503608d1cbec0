"""Experiment `noise`: stage 2 retrained with a share of its reasonings swapped for wrong ones.

If the reasoning model learns from what its reasonings say, corrupting them should cost
accuracy; if it only learns the label line, it should not. For each fraction in
`experiments.noise.fractions` (0 is always added as the reference), that share of the stage-2
rows gets the reasoning of ANOTHER example whose gold label differs; the label line stays gold.
"""
from __future__ import annotations

import random

import pandas as pd

from pipeline.experiments.lab import Lab, mcnemar, scores
from pipeline.io import DataError

QUESTION = ("How much does the reasoning model depend on its reasonings being right? The paper proposes "
            "a 20% corrupted-reasoning ablation.")
SWITCH = ("the share of stage-2 training rows whose reasoning is replaced by the reasoning of another example "
          "with a different gold label (the label line stays gold); every arm has the same ids, steps and "
          "examples per step.")
READ = ("Accuracy falling with the fraction means the model uses what the reasonings argue; a flat curve means "
        "it learns the label line and treats the reasoning as filler. McNemar compares each arm with the "
        "fraction-0 arm on the same test examples (b01 = fraction 0 right, noisy arm wrong).")


def inject_noise(rows: list[dict], fraction: float, seed: int) -> dict[str, str]:
    """{replaced id: donor id} for round(fraction x len(rows)) rows chosen at random (seeded); each
    donor is another row whose `label` differs from the replaced row's, never the row itself."""
    rng = random.Random(f"{seed}:{fraction}")
    labels = {r["label"] for r in rows}
    if fraction > 0 and len(labels) < 2:
        raise ValueError("every row has the same label: no reasoning of another label to swap in")
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_label.setdefault(r["label"], []).append(i)
    out = {}
    for i in rng.sample(range(len(rows)), round(fraction * len(rows))):
        others = [lab for lab in sorted(by_label) if lab != rows[i]["label"]]
        lab = rng.choices(others, weights=[len(by_label[o]) for o in others])[0]
        out[rows[i]["id"]] = rows[rng.choice(by_label[lab])]["id"]
    return out


def run(lab: Lab) -> dict:
    seed, labels = lab.settings["seed"], lab.labels
    fractions = sorted({0.0, *(float(f) for f in lab.own["fractions"])})
    by_id = {r["id"]: r for r in lab.train_split}
    ids = [r["id"] for r in lab.main_set("stage2")]
    rows = [{"id": i, "label": by_id[i]["label"]} for i in ids]
    test = lab.test_rows()
    sets, swaps = [], {}
    for f in fractions:
        try:
            swap = inject_noise(rows, f, seed)
        except ValueError as e:
            raise DataError(f"experiments.noise: {e}") from None
        train = [lab.stage2_row(i, by_id[i], lab.reasonings[swap.get(i, i)]["reasoning"])
                 for i in ids]
        sets.append(dict(which="stage2", rows=train, arm=f"fraction {f:g}"))
        swaps[f] = swap
    arms = lab.train_all(sets)
    with lab.session() as session:
        preds = [lab.predict(session, "reasoning", arm["model_dir"], test, f"fraction-{f:g}")
                 for f, arm in zip(fractions, arms)]
    curve = []
    for f, p in zip(fractions, preds):
        c = mcnemar(preds[0], p, labels, "fraction 0", f"fraction {f:g}")
        curve.append({"fraction": f, "replaced": len(swaps[f]), "rows": len(ids), **scores(p, labels),
                      "vs_0": {k: c[k] for k in ("b01", "b10", "method", "pvalue", "significant", "acc_diff", "ci95")}})
    return {"arms": arms, "curve": curve, "test_n": len(test)}


def tables(result: dict) -> dict[str, pd.DataFrame]:
    return {"noise_curve": pd.DataFrame([
        {"fraction": c["fraction"], "replaced": c["replaced"], "rows": c["rows"], "n": c["n"],
         "accuracy": c["accuracy"], "macro_f1": c["macro_f1"], "invalid": c["invalid"],
         "acc_diff_vs_0": c["vs_0"]["acc_diff"], "b01": c["vs_0"]["b01"], "b10": c["vs_0"]["b10"],
         "pvalue_vs_0": c["vs_0"]["pvalue"], "significant": c["vs_0"]["significant"]} for c in result["curve"]])}
