"""Entry point of the evaluate stage: run directories in, metrics.json + report.md + CSV + plots out.

`orchestrate.py evaluate` calls `run_evaluate`. Each run directory is evaluated on its
own (models, reference baselines, baseline-vs-reasoning tests, the paper side by side). With
several runs (seeds) the top-level numbers are pooled over runs and `aggregate` gives the mean and
spread across runs, because one seed's difference can be luck; `per_run` keeps every run's own
numbers and tests. Nothing in a run directory is modified unless it is also `out_dir`.

Everything except the `timing` block is a function of the run directories' files: rerunning
`evaluate` rewrites report.md and metrics.json byte for byte. Wall-clock figures (which change
with the machine's load) live only in `timing` and the report's "Timing (not reproducible)".
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from eval import plots, provenance, report
from eval.baselines import REFERENCE_MODELS
from eval.metrics import model_metrics
from eval.runs import GENERATING_MODELS, load_run, paired, pool_runs
from eval.stats import ALPHA, binomial_vs_reference, holm, mcnemar_test, paired_bootstrap_ci
from eval.training import run_data_facts, training_summary
from pipeline.io import atomic_write_json, atomic_write_text, read_json

N_BOOT = 10_000
BOOT_SEED = 0


# ---------------------------------------------------------------- analysis

def _model_entry(s: dict, labels: Sequence[str], kind: str) -> tuple[dict, dict]:
    """model_metrics split into the reproducible part and its wall-clock part (the timing block).

    Generating models: the seconds of a prediction row are its chunk's wall time divided by the
    chunk's size (one batched engine call), so their mean is batched throughput, not latency.
    Reference baselines: the CPU wall time of predicting the whole test set divided by its size.
    """
    m = model_metrics(s["gold"], s["pred"], labels, s["output_tokens"], s["seconds"])
    reasons = s.get("finish_reason") or []
    if reasons and all(r is not None for r in reasons):
        # an output cut off by max_tokens is a budget problem, a malformed one a model problem
        cut = [r == "length" for r in reasons]
        invalid = [p not in labels for p in s["pred"]]
        m["cut_off"] = int(sum(cut))
        m["invalid_cut_off"] = int(sum(c and i for c, i in zip(cut, invalid)))
        m["invalid_malformed"] = int(sum(i and not c for c, i in zip(cut, invalid)))
    spe = m.pop("seconds_per_example")
    m["kind"] = kind
    what = ("CPU prediction of the whole test set / n" if kind == "reference"
            else "batched generation: chunk wall time / examples in the chunk (throughput, not latency)")
    timing = {"wall_seconds_per_example": spe, "examples_per_second": (1.0 / spe) if spe else None, "measured": what}
    return m, timing


def compare(pair: dict, labels: Sequence[str], a: str, b: str, cluster: bool = False) -> dict:
    """McNemar overall and per gold class (Holm-adjusted), accuracy difference b - a and its bootstrap CI."""
    a_ok, b_ok, gold = pair["a"], pair["b"], np.asarray(pair["gold"], dtype=object)
    res = {"a": a, "b": b, **mcnemar_test(a_ok, b_ok)}
    res["acc_a"] = float(a_ok.mean()) if a_ok.size else float("nan")
    res["acc_b"] = float(b_ok.mean()) if b_ok.size else float("nan")
    res["acc_diff"] = res["acc_b"] - res["acc_a"]
    res["ci95"] = list(paired_bootstrap_ci(a_ok, b_ok, n_boot=N_BOOT, seed=BOOT_SEED,
                                           groups=pair["groups"] if cluster else None))
    per_class = {}
    for lab in labels:
        mask = gold == lab
        t = mcnemar_test(a_ok[mask], b_ok[mask])
        per_class[lab] = {"b01": t["b01"], "b10": t["b10"], "n": t["n"], "method": t["method"],
                          "pvalue": t["pvalue"],
                          "recall_a": float(a_ok[mask].mean()) if mask.any() else float("nan"),
                          "recall_b": float(b_ok[mask].mean()) if mask.any() else float("nan")}
    adjusted, reject = holm([per_class[lab]["pvalue"] for lab in labels])
    for lab, p, r in zip(labels, adjusted, reject):
        per_class[lab]["pvalue_holm"] = p
        per_class[lab]["significant"] = r
    res["per_class"] = per_class
    return res


def paper_comparison(models: dict, paper_reference: dict | None, labels: Sequence[str]) -> list[dict]:
    """This run's accuracy / recall next to each number the paper reports, with a binomial test.

    The p-value asks whether this run's rate differs from the paper's by more than test-set
    sampling noise (two-sided exact binomial, the paper's value as the null rate).
    """
    rows = []
    ref = paper_reference or {}
    wanted = [("accuracy", None, ref.get("accuracy") or {})]
    wanted += [("recall", lab, (ref.get("recall") or {}).get(lab) or {}) for lab in labels]
    for metric, lab, by_model in wanted:
        for model in GENERATING_MODELS:
            paper = by_model.get(model)
            m = models.get(model)
            if paper is None:
                continue
            if m is None:
                rows.append({"metric": metric, "class": lab or "all", "model": model, "paper": paper,
                             "this_run": None, "diff": None, "k": None, "n": None, "pvalue": None,
                             "significant": None})
                continue
            if metric == "accuracy":
                n = m["n"]
                k = round(m["accuracy"] * n) if n else 0
                value = m["accuracy"]
            else:
                n = m["per_class"][lab]["support"]
                i = labels.index(lab)
                k = int(m["confusion"][i][i])
                value = m["per_class"][lab]["recall"]
            p = binomial_vs_reference(k, n, paper)
            rows.append({"metric": metric, "class": lab or "all", "model": model, "paper": paper,
                         "this_run": value, "diff": value - paper, "k": k, "n": n,
                         "pvalue": None if math.isnan(p) else p,
                         "significant": None if math.isnan(p) else bool(p < ALPHA)})
    return rows


def analyse(series: dict[str, dict], extras: dict[str, dict], labels: Sequence[str],
            paper_reference: dict | None, pairs: dict | None = None, cluster: bool = False) -> dict:
    """Models, comparisons and the paper table for one run (or for runs pooled into one series)."""
    models, timing = {}, {}
    for name, s in series.items():
        models[name], timing[name] = _model_entry(s, labels, "reference" if name in REFERENCE_MODELS else "generating")
        timing[name].update(extras.get(name, {}))
    comparisons = []
    if pairs is not None:
        pair = pairs.get("baseline:reasoning")
    elif "baseline" in series and "reasoning" in series:
        pair = paired(series["baseline"], series["reasoning"], labels)
    else:
        pair = None
    if pair is not None and len(pair["gold"]):
        comparisons.append(compare(pair, labels, "baseline", "reasoning", cluster=cluster))
    return {"models": models, "comparisons": comparisons,
            "paper_comparison": paper_comparison(models, paper_reference, list(labels)), "timing": timing}


def _spread(values: list[float]) -> dict:
    """mean, std (sample, ddof=1; 0 for one run), min, max, n_runs of the known values."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n_runs": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n_runs": int(v.size)}


def aggregate(per_run: list[dict], labels: Sequence[str]) -> dict:
    """Mean and spread across runs of each model's scalars and per-class recall/F1, and of acc_diff."""
    out: dict = {}
    names = list(dict.fromkeys(n for r in per_run for n in r["models"]))
    for name in names:
        ms = [r["models"][name] for r in per_run if name in r["models"]]
        entry = {k: _spread([m[k] for m in ms]) for k in
                 ("accuracy", "macro_f1", "invalid", "mean_output_tokens")}
        entry["per_class"] = {lab: {k: _spread([m["per_class"][lab][k] for m in ms]) for k in ("recall", "f1")}
                              for lab in labels}
        out[name] = entry
    comps = [r["comparisons"][0] for r in per_run if r["comparisons"]]
    if comps:
        out["comparison"] = {"a": "baseline", "b": "reasoning",
                             "acc_diff": _spread([c["acc_diff"] for c in comps]),
                             "n_significant": int(sum(c["significant"] for c in comps)),
                             "n_b_better_significant": int(sum(c["significant"] and c["acc_diff"] > 0 for c in comps)),
                             "n_runs": len(comps)}
    return out


# ---------------------------------------------------------------- entry point

def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run_evaluate(run_dirs: list[Path], out_dir: Path, labels: list[str], paper_reference: dict | None) -> dict:
    """Writes out_dir/metrics.json, out_dir/report.md, out_dir/tables/*.csv, out_dir/plots/*.png; returns the metrics dict."""
    if not run_dirs:
        raise ValueError("run_evaluate needs at least one run directory")
    labels = list(labels)
    out_dir = Path(out_dir)
    loaded, notes = [], []
    for rd in run_dirs:
        series, extras, run_notes = load_run(Path(rd), labels)
        loaded.append((series, extras))
        notes += run_notes
    per_run = []
    for rd, (series, extras) in zip(run_dirs, loaded):
        per_run.append({"run": str(rd), "info": provenance.run_info(Path(rd)),
                        **analyse(series, extras, labels, paper_reference),
                        "training": training_summary(rd), "data": run_data_facts(rd)})
        if "baseline" in series and "reasoning" in series and not per_run[-1]["comparisons"]:
            notes.append(f"{rd}: baseline and reasoning predictions share no id; no comparison for this run")
    training = _controlled(per_run)
    if len(loaded) == 1:
        top = per_run[0]
    else:
        series, extras, pairs = pool_runs(loaded, labels)
        top = analyse(series, extras, labels, paper_reference, pairs=pairs, cluster=True)
        for c in top["comparisons"]:
            c["pooled_runs"] = len(loaded)
        notes.append(f"Top-level numbers pool {len(loaded)} runs; the bootstrap resamples examples with all "
                     f"their runs, but pooled McNemar/binomial p-values treat runs as independent and are "
                     f"optimistic: rely on the per-run tests and the spread across runs.")
    run = per_run[0]["info"]
    warn = [f"{r['run']}: {n}" if len(per_run) > 1 else n
            for r in per_run for n in provenance.notices(r["info"], r["models"], paper_reference)]
    metrics = {"run": run, "labels": labels, "runs": [str(r) for r in run_dirs], "n_runs": len(run_dirs),
               "notices": warn, "training": training, "data": per_run[0]["data"], "models": top["models"], "comparisons": top["comparisons"],
               "paper_reference": paper_reference, "paper_comparison": top["paper_comparison"],
               "bootstrap": {"n_boot": N_BOOT, "seed": BOOT_SEED, "level": 0.95}, "alpha": ALPHA,
               "notes": notes}
    if len(per_run) > 1:
        metrics["aggregate"] = aggregate(per_run, labels)
        metrics["per_run"] = [{k: v for k, v in r.items() if k != "timing"} for r in per_run]
    metrics["timing"] = {"not_reproducible": "wall-clock seconds; they change with the machine and its load",
                         "models": top["timing"], "stages": _stage_seconds(run_dirs)}
    metrics = _clean(metrics)

    plot_paths = _write_plots(metrics, labels, paper_reference, out_dir)
    tables = report.build_tables(metrics)
    for name, df in tables.items():
        atomic_write_text(out_dir / "tables" / f"{name}.csv", df.to_csv(index=False))
    atomic_write_text(out_dir / "report.md", report.render_report(metrics, tables, plot_paths))
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def _controlled(per_run: list[dict]) -> dict:
    """One verdict over all runs: controlled only if every run's two trainings differ only in the target."""
    verdicts = [r["training"]["controlled"] for r in per_run]
    reasons = [f"{r['run']}: {why}" if len(per_run) > 1 else why
               for r in per_run for why in (r["training"]["reasons"] if not r["training"]["controlled"] else [])]
    return {"controlled": None if None in verdicts else all(verdicts), "reasons": reasons,
            "models": per_run[0]["training"]["models"] if len(per_run) == 1 else None,
            "per_run": {r["run"]: r["training"]["models"] for r in per_run}}


def _stage_seconds(run_dirs: list[Path]) -> dict:
    """{run dir: {stage: wall seconds}} as the manifests record them."""
    out = {}
    for rd in run_dirs:
        path = Path(rd) / "manifest.json"
        stages = (read_json(path).get("stages") or {}) if path.exists() else {}
        out[str(rd)] = {name: rec.get("seconds") for name, rec in stages.items() if rec.get("seconds") is not None}
    return out


def _subtitle(metrics: dict) -> str:
    """Which run(s) and profile a figure shows, for its title."""
    if metrics.get("per_run"):
        profiles = sorted({str(r["info"].get("profile")) for r in metrics["per_run"]})
        return f"{metrics['n_runs']} runs pooled, profile {', '.join(profiles)}"
    run = metrics.get("run") or {}
    return f"run {Path(run.get('run_dir') or metrics['runs'][0]).name}, profile {run.get('profile') or '?'}"


def _write_plots(metrics: dict, labels: list[str], paper_reference: dict | None, out_dir: Path) -> dict[str, str]:
    """Draw every figure into out_dir/plots; returns {figure name: path relative to out_dir}."""
    pdir = out_dir / "plots"
    sub = _subtitle(metrics)
    written: dict[str, Path] = {}
    vmax = max((max(max(map(max, m["confusion"]), default=0), max(m["invalid_by_gold"], default=0))
                for m in metrics["models"].values()), default=1)
    for name, m in metrics["models"].items():
        written[f"confusion_{name}"] = plots.plot_confusion(
            m["confusion"], labels, f"{name}: confusion (rows gold)\n{sub}", pdir / f"confusion_{name}.png",
            m.get("invalid_by_gold"), vmax=vmax)
    gen = {n: {lab: metrics["models"][n]["per_class"][lab]["recall"] for lab in labels}
           for n in GENERATING_MODELS if n in metrics["models"]}
    if gen:
        written["recall_per_class"] = plots.plot_recall(gen, labels, (paper_reference or {}).get("recall"),
                                                        pdir / "recall_per_class.png", sub)
    runs = metrics.get("per_run") or [metrics]
    points = {n: [(r["models"][n]["mean_output_tokens"], r["models"][n]["accuracy"]) for r in runs
                  if n in r["models"]] for n in GENERATING_MODELS}
    refs = {n: metrics["models"][n]["accuracy"] for n in REFERENCE_MODELS if n in metrics["models"]}
    written["accuracy_vs_tokens"] = plots.plot_accuracy_vs_tokens(points, refs, pdir / "accuracy_vs_tokens.png", sub)
    return {k: p.relative_to(out_dir).as_posix() for k, p in written.items()}
