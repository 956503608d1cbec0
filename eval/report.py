"""Tables (pandas DataFrames, also saved as CSV) and the markdown report built from metrics.json.

Everything here is a view of the metrics dict, so report.md, tables/*.csv and metrics.json can
never disagree. CSVs keep full precision; the markdown rounds for reading. Significant results are
marked with SIG so a reviewer can find them at a glance.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

SIG = "✱"
GEN = ("baseline", "reasoning")


def _num(v: Any, digits: int = 3) -> str:
    """Human formatting: floats rounded, tiny p-values in scientific notation, None as an em dash."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return SIG if v else ""
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != 0 and abs(v) < 10 ** -digits:
            return f"{v:.2e}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def to_markdown(df: pd.DataFrame) -> str:
    """Markdown table of `df` with numbers formatted for reading (needs the `tabulate` package)."""
    if df.empty:
        return "_(none)_"
    shown = df.astype(object).map(_num) if hasattr(df, "map") else df.astype(object).applymap(_num)
    return shown.to_markdown(index=False, disable_numparse=True)


def _pc(metrics: dict) -> dict | None:
    return metrics["comparisons"][0] if metrics.get("comparisons") else None


def build_tables(metrics: dict) -> dict[str, pd.DataFrame]:
    """Every table of the report, keyed by CSV name (tables/<name>.csv)."""
    labels = metrics["labels"]
    models = metrics["models"]
    t: dict[str, pd.DataFrame] = {}
    t["models"] = pd.DataFrame([
        {"model": n, "kind": m["kind"], "n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
         "invalid": m["invalid"], "cut_off": m.get("cut_off"), "invalid_cut_off": m.get("invalid_cut_off"),
         "invalid_malformed": m.get("invalid_malformed"), "mean_output_tokens": m["mean_output_tokens"]}
        for n, m in models.items()])
    t["training"] = _training_table(metrics.get("training") or {})
    t["per_class"] = pd.DataFrame([
        {"model": n, "class": lab, **m["per_class"][lab]} for n, m in models.items() for lab in labels])
    for n, m in models.items():
        rows = []
        for lab, row, inv in zip(labels, m["confusion"], m["invalid_by_gold"]):
            rows.append({"gold": lab, **dict(zip(labels, row)), "[invalid]": inv})
        t[f"confusion_{n}"] = pd.DataFrame(rows)
    t["reference_baselines"] = pd.DataFrame([
        {"model": n, "n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
        for n, m in models.items() if m["kind"] == "reference"])
    timing = metrics.get("timing") or {}
    t["timing"] = pd.DataFrame([
        {"model": n, "wall_seconds_per_example": x["wall_seconds_per_example"],
         "examples_per_second": x["examples_per_second"], "train_seconds": x.get("train_seconds"),
         "measured": x["measured"]} for n, x in (timing.get("models") or {}).items()],
        columns=["model", "wall_seconds_per_example", "examples_per_second", "train_seconds", "measured"])
    t["stage_seconds"] = pd.DataFrame([
        {"run": rd, "stage": st, "wall_seconds": sec} for rd, stages in (timing.get("stages") or {}).items()
        for st, sec in stages.items()], columns=["run", "stage", "wall_seconds"])
    c = _pc(metrics)
    if c:
        t["comparison"] = pd.DataFrame([{
            "a": c["a"], "b": c["b"], "n": c["n"], "b01": c["b01"], "b10": c["b10"], "method": c["method"],
            "statistic": c["statistic"], "pvalue": c["pvalue"], "significant": c["significant"],
            "acc_a": c["acc_a"], "acc_b": c["acc_b"], "acc_diff": c["acc_diff"],
            "ci95_lo": c["ci95"][0], "ci95_hi": c["ci95"][1]}])
        t["per_class_mcnemar"] = pd.DataFrame([
            {"class": lab, "n": p["n"], f"recall_{c['a']}": p["recall_a"], f"recall_{c['b']}": p["recall_b"],
             "b01": p["b01"], "b10": p["b10"], "method": p["method"], "pvalue": p["pvalue"],
             "pvalue_holm": p["pvalue_holm"], "significant": p["significant"]}
            for lab, p in c["per_class"].items()])
    t["paper_side_by_side"] = _side_by_side(metrics)
    t["paper_vs_run"] = pd.DataFrame(metrics.get("paper_comparison") or [],
                                     columns=["metric", "class", "model", "paper", "this_run", "diff", "k", "n",
                                              "pvalue", "significant"])
    if "aggregate" in metrics:
        t["aggregate"] = _aggregate_table(metrics["aggregate"], labels)
        t["per_run"] = _per_run_table(metrics["per_run"])
    return t


def _training_table(training: dict) -> pd.DataFrame:
    """One row per trained model (and run, with several): what it was trained on and how long."""
    rows = []
    for run, models in (training.get("per_run") or {}).items():
        for name, facts in models.items():
            row = {"run": run, "model": name, **facts}
            row["ids_sha256"] = (facts.get("ids_sha256") or "")[:12] or None
            rows.append(row)
    df = pd.DataFrame(rows)
    if len(training.get("per_run") or {}) == 1 and not df.empty:
        df = df.drop(columns="run")
    return df


def uncontrolled_notice(metrics: dict) -> list[str]:
    """The warning a reader cannot miss when the two models differ in more than the target."""
    tr = metrics.get("training") or {}
    if tr.get("controlled") is True:
        return []
    head = ("**WARNING: this comparison is NOT controlled.** The baseline and the reasoning model differ in more "
            "than the target, so an accuracy difference cannot be put down to the reasoning:"
            if tr.get("controlled") is False else
            "**WARNING: this comparison cannot be shown to be controlled**: the run has no record of how both "
            "models were trained:")
    return ["> " + head, ">"] + [f"> - {why}" for why in tr.get("reasons", [])] + [""]


def _data_lines(metrics: dict) -> list[str]:
    d = metrics.get("data") or {}
    lines = []
    if d.get("test_overlap") is not None:
        fate = "left out of training" if d.get("overlap_dropped") else "kept in training (task_data.drop_test_overlap: false)"
        lines.append(f"- {d['test_overlap']} test texts also occur in the train split; those train rows are {fate}.")
    if d.get("without_reasoning") is not None:
        lines.append(f"- {d['without_reasoning']} train examples had no reasoning and {d['too_long']} were over "
                     f"`sequence_len`: both are left out of BOTH training sets.")
    return lines


def _side_by_side(metrics: dict) -> pd.DataFrame:
    """The paper's table next to this run's: accuracy and per-class recall, baseline -> reasoning.

    `p_change` is McNemar on the baseline-vs-reasoning change (Holm-adjusted for the classes);
    `significant` marks changes significant at alpha in this run.
    """
    labels, models = metrics["labels"], metrics["models"]
    ref = metrics.get("paper_reference") or {}
    c = _pc(metrics)

    def val(model: str, lab: str | None):
        m = models.get(model)
        if m is None:
            return None
        return m["accuracy"] if lab is None else m["per_class"][lab]["recall"]

    rows = []
    for lab in [None] + list(labels):
        paper = (ref.get("accuracy") or {}) if lab is None else ((ref.get("recall") or {}).get(lab) or {})
        pb, pr = paper.get("baseline"), paper.get("reasoning")
        tb, tr = val("baseline", lab), val("reasoning", lab)
        if c is None:
            p, sig = None, None
        elif lab is None:
            p, sig = c["pvalue"], c["significant"]
        else:
            p, sig = c["per_class"][lab]["pvalue_holm"], c["per_class"][lab]["significant"]
        rows.append({"row": "accuracy (all)" if lab is None else f"recall {lab}",
                     "paper_baseline": pb, "this_baseline": tb, "paper_reasoning": pr, "this_reasoning": tr,
                     "paper_change": (pr - pb) if pb is not None and pr is not None else None,
                     "this_change": (tr - tb) if tb is not None and tr is not None else None,
                     "p_change": p, "significant": sig})
    return pd.DataFrame(rows)


def _aggregate_table(agg: dict, labels: list[str]) -> pd.DataFrame:
    rows = []
    for name, entry in agg.items():
        if name == "comparison":
            rows.append({"model": f"{entry['b']} - {entry['a']}", "metric": "acc_diff", **entry["acc_diff"]})
            continue
        for metric in ("accuracy", "macro_f1", "invalid", "mean_output_tokens"):
            rows.append({"model": name, "metric": metric, **entry[metric]})
        for lab in labels:
            rows.append({"model": name, "metric": f"recall {lab}", **entry["per_class"][lab]["recall"]})
    return pd.DataFrame(rows, columns=["model", "metric", "mean", "std", "min", "max", "n_runs"])


def _per_run_table(per_run: list[dict]) -> pd.DataFrame:
    rows = []
    for r in per_run:
        c = r["comparisons"][0] if r["comparisons"] else {}
        row = {"run": r["run"]}
        for n, m in r["models"].items():
            row[f"acc_{n}"] = m["accuracy"]
        row.update({"acc_diff": c.get("acc_diff"), "ci95_lo": (c.get("ci95") or [None, None])[0],
                    "ci95_hi": (c.get("ci95") or [None, None])[1], "pvalue": c.get("pvalue"),
                    "method": c.get("method"), "significant": c.get("significant")})
        rows.append(row)
    return pd.DataFrame(rows)


def _summary(metrics: dict) -> list[str]:
    """A few plain sentences: the headline result, its uncertainty, and the cheap baselines."""
    models, lines = metrics["models"], []
    ref = metrics.get("paper_reference") or {}
    if metrics.get("n_runs", 1) > 1:
        lines.append(f"- Pooled over {metrics['n_runs']} runs: n counts (example, run) pairs; see *Across runs* "
                     f"for the mean and spread and each run's own test.")
    for n in GEN:
        if n in models:
            paper = (ref.get("accuracy") or {}).get(n)
            extra = f" (paper: {_num(paper)})" if paper is not None else ""
            lines.append(f"- **{n}** accuracy {_num(models[n]['accuracy'])}{extra}, macro-F1 "
                         f"{_num(models[n]['macro_f1'])}, {models[n]['invalid']} invalid outputs of {models[n]['n']}.")
    c = _pc(metrics)
    if c:
        verdict = "significant" if c["significant"] else "not significant"
        lines.append(f"- reasoning − baseline accuracy: {_num(c['acc_diff'])} (95% bootstrap CI "
                     f"[{_num(c['ci95'][0])}, {_num(c['ci95'][1])}]); McNemar ({c['method']}) "
                     f"b01={c['b01']}, b10={c['b10']}, p={_num(c['pvalue'])}: **{verdict}** at α={metrics['alpha']}.")
    else:
        lines.append("- No baseline-vs-reasoning comparison: it needs both prediction files with shared ids.")
    for n in ("majority", "tfidf_logreg"):
        if n in models:
            lines.append(f"- reference **{n}**: accuracy {_num(models[n]['accuracy'])}, "
                         f"macro-F1 {_num(models[n]['macro_f1'])} on the same test examples (n={models[n]['n']}).")
    if metrics.get("aggregate", {}).get("comparison"):
        a = metrics["aggregate"]["comparison"]
        d = a["acc_diff"]
        lines.append(f"- across {a['n_runs']} runs: accuracy difference mean {_num(d['mean'])} ± {_num(d['std'])} "
                     f"(min {_num(d['min'])}, max {_num(d['max'])}); significant in {a['n_significant']} of "
                     f"{a['n_runs']} runs ({a['n_b_better_significant']} in reasoning's favour).")
    return lines


def _versions(info: dict) -> str:
    pk = info.get("packages") or {}
    parts = [f"python {info['python']}"] if info.get("python") else []
    return ", ".join(parts + [f"{k} {v}" for k, v in sorted(pk.items())]) or "—"


def _sizes(info: dict) -> str:
    sz = info.get("sizes") or {}
    parts = [f"{k} {sz[k]}" for k in ("train", "test") if sz.get(k) is not None]
    train_sets = [f"{k} {sz[k]}" for k in ("stage1", "stage2", "baseline") if sz.get(k) is not None]
    return "; ".join(x for x in (", ".join(parts), "training rows: " + ", ".join(train_sets) if train_sets else "") if x) or "—"


def run_table(infos: list[dict]) -> pd.DataFrame:
    """One column per run: how it was made (profile, model, task, data, sizes, seeds, code, tools, date)."""
    def code(v):
        return f"`{v}`" if v else "—"

    fields = [
        ("run directory", lambda i: code(i["run_dir"])),
        ("profile", lambda i: i.get("profile") or "— (no manifest.json)"),
        ("base model", lambda i: i.get("base_model_description") or "—"),
        ("task", lambda i: f"{i['task']} ({code(i.get('task_spec'))})" if i.get("task") else "—"),
        ("task data", lambda i: i.get("data_source") or "—"),
        ("examples", _sizes),
        ("reasonings written by", lambda i: i.get("reasonings_by") or "—"),
        ("seeds", lambda i: ", ".join(f"{k} {v}" for k, v in (i.get("seeds") or {}).items()) or "—"),
        ("code (git commit)", lambda i: code(i.get("git_commit"))),
        ("versions", _versions),
        ("prediction backend", lambda i: i.get("backend") or "—"),
        ("predictions made", lambda i: i.get("date") or "—"),
    ]
    cols = {"": [name for name, _ in fields]}
    for k, info in enumerate(infos, 1):
        cols["this run" if len(infos) == 1 else f"run {k}"] = [f(info) for _, f in fields]
    return pd.DataFrame(cols)


def render_report(metrics: dict, tables: dict[str, pd.DataFrame], plots: dict[str, str]) -> str:
    """report.md: how the run was made, loud notices, summary, every table, the plots; timing last."""
    labels = metrics["labels"]
    out = ["# Evaluation report", "",
           "Baseline (text → label) vs reasoning (text → reasoning + label), Two-Stage Reasoning-Infused "
           "Learning (arXiv 2507.00214). Invalid outputs (no valid label) count as wrong.", "",
           *uncontrolled_notice(metrics)]
    for n in metrics.get("notices") or []:
        out += [f"> **⚠ NOTICE:** {n}", ""]
    infos = [r["info"] for r in metrics["per_run"]] if metrics.get("per_run") else [metrics["run"]]
    out += ["## Runs", "", run_table(infos).to_markdown(index=False, disable_numparse=True)]
    if metrics.get("notes"):
        out += ["", "Notes:", ""] + [f"- {n}" for n in metrics["notes"]]
    out += ["", "## Summary", ""] + _summary(metrics)
    out += ["", "## Training", "",
            "Both models must see the same example ids (`ids_sha256`), the same number of optimizer steps and the "
            "same examples per step; only the target differs. Tokens are per pass over the training set; label "
            "tokens are those with a loss.", "", to_markdown(tables["training"]), "", *_data_lines(metrics)]
    out += ["", "## Model metrics", "",
            "`cut_off`: outputs stopped by the token budget (`predict.max_tokens`); invalid outputs are split into "
            "those cut off and those malformed (finished, but with no label from the label set).", "",
            to_markdown(tables["models"])]
    out += ["", "## Per-class metrics", "", to_markdown(tables["per_class"])]
    out += ["", "## Reference baselines", "",
            "Trained and scored on this run's own train/test split on CPU: the majority class and "
            "TF-IDF (unigram, sublinear tf) + logistic regression (C=10).", "",
            to_markdown(tables["reference_baselines"])]
    out += ["", "## Baseline vs reasoning (McNemar)", ""]
    if "comparison" in tables:
        out += [f"b01 = baseline right & reasoning wrong, b10 = baseline wrong & reasoning right. Exact binomial "
                f"test when b01 + b10 < 25, otherwise chi-square with continuity correction. acc_diff = "
                f"reasoning − baseline with a paired bootstrap 95% CI "
                f"({metrics['bootstrap']['n_boot']} resamples, seed {metrics['bootstrap']['seed']}). "
                f"{SIG} = significant at α={metrics['alpha']}.", "", to_markdown(tables["comparison"]),
                "", "### Per-class McNemar (Holm-adjusted)", "",
                "Each class: McNemar on the test examples of that gold class; p-values Holm-adjusted "
                f"over the {len(labels)} classes; {SIG} = significant after adjustment.", "",
                to_markdown(tables["per_class_mcnemar"])]
    else:
        out += ["_Not available: needs both predictions/baseline.jsonl and predictions/reasoning.jsonl._"]
    out += ["", "## Paper vs this run", "",
            "The paper's reported numbers beside this run's (— = not reported / not available). "
            f"`p_change` tests this run's baseline → reasoning change (McNemar; Holm-adjusted for classes); "
            f"{SIG} marks a significant change in this run.", "", to_markdown(tables["paper_side_by_side"]),
            "", "Does this run differ from the paper's number? Two-sided exact binomial test of this run's "
            f"k/n against the paper's rate; {SIG} = differs significantly.", "",
            to_markdown(tables["paper_vs_run"])]
    if "aggregate" in tables:
        out += ["", "## Across runs", "",
                "Mean and spread over runs (std with ddof=1).", "", to_markdown(tables["aggregate"]),
                "", "### Per run", "", to_markdown(tables["per_run"])]
    out += ["", "## Confusion matrices", ""]
    for name in metrics["models"]:
        out += [f"### {name}", "", "Rows gold, columns predicted; `[invalid]` = no valid label in the output.", "",
                to_markdown(tables[f"confusion_{name}"]), ""]
        if f"confusion_{name}" in plots:
            out += [f"![confusion {name}]({plots[f'confusion_{name}']})", ""]
    out += ["## Plots", ""]
    if "recall_per_class" in plots:
        paper_marks = ", the paper's values as diamonds" if (metrics.get("paper_reference") or {}).get("recall") else ""
        out += [f"Per-class recall of both models{paper_marks}:", "",
                f"![per-class recall]({plots['recall_per_class']})", ""]
    if "accuracy_vs_tokens" in plots:
        out += ["Accuracy vs generated tokens per example:", "",
                f"![accuracy vs tokens]({plots['accuracy_vs_tokens']})", ""]
    out += ["## Timing (not reproducible)", "",
            "Wall-clock seconds: they change with the machine, its load and the batch size, so this section "
            "(and `timing` in metrics.json) is the only part of the report that differs when `evaluate` reruns. "
            "Generating models decode a chunk of prompts in one batched engine call; a row's seconds are the "
            "chunk's wall time divided by its size, so `wall_seconds_per_example` is batched throughput, "
            "**not** the latency of one request. Reference baselines: CPU prediction of the whole test set "
            "divided by its size; `train_seconds` is their fit time.", "", to_markdown(tables["timing"]),
            "", "Wall seconds of each stage as the run's manifest records them:", "",
            to_markdown(tables["stage_seconds"])]
    return "\n".join(out).rstrip() + "\n"
