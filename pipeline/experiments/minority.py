"""Experiment `minority`: why rare classes lose recall under reasoning, and three remedies.

The paper's surprise recall fell from 13.8% to 1.5% with reasoning. This experiment writes a
review sheet (RUN/experiments/minority/review_sheet.csv: sampled reasonings per class with the
quality filter's verdict and the label each concludes, columns left blank for a reviewer) and
trains the reasoning model once per remedy, against the plain recipe, all with the same steps
and examples per step (`max_steps` of the plain arm when the config sets none):

- quality_filter: the data engine with `qc.enabled` (rejected reasonings re-asked with new seeds,
  then dropped); round 0 is the main run's own outputs, so only the retries are generated;
- extra_reasonings: `extra_per_example` more reasonings (new seeds) for every example of a class
  under `below_share` of the stage-2 set, added as extra rows;
- balanced_sampling: the stage-2 set resampled to the same size with every class equally often.
"""
from __future__ import annotations

import math
import random
import shutil
from collections import Counter

import pandas as pd

from pipeline import prompts
from pipeline.experiments.lab import Lab, mcnemar, scores
from pipeline.io import DataError, atomic_write_jsonl, atomic_write_text, read_jsonl

QUESTION = ("Why do rare classes lose recall when the model reasons first, and does a remedy of the data "
            "bring it back? (paper: surprise recall 13.8% → 1.5%)")
SWITCH = ("the stage-2 training set: the plain recipe vs the quality filter on, extra reasonings for rare classes, "
          "and class-balanced sampling; same config, steps and examples per step.")
READ = ("Read the per-class recall of each remedy against `plain`, rare classes first; McNemar (per class, "
        "Holm-adjusted) says whether a change is more than chance. The review sheet and the class summary "
        "show whether rare classes get worse reasonings (quality-filter failures, reasonings concluding another "
        "class) in the first place.")


def review(lab: Lab) -> tuple[list[dict], list[dict]]:
    """(review sheet rows, per-class summary) over the data engine's reasonings."""
    from postprocess.reasoning import check_reasoning, concluded_label

    qc, labels = lab.ctx.profile["qc"], lab.labels
    rows = []
    for r in lab.reasonings.values():
        verdict = check_reasoning(r["reasoning"], r["label"], labels, qc["min_chars"], qc["max_repeat_ratio"],
                                  source_text=r["text"])
        rows.append({"id": r["id"], "label": r["label"], "text": r["text"], "reasoning": r["reasoning"],
                     "quality_check": verdict or "ok",
                     "concludes": concluded_label(r["reasoning"], labels, source_text=r["text"]) or ""})
    rng = random.Random(lab.settings["seed"])
    sheet, summary = [], []
    for lab_ in labels:
        mine = [r for r in rows if r["label"] == lab_]
        sheet += rng.sample(mine, min(lab.own["review_per_class"], len(mine)))
        summary.append({"class": lab_, "reasonings": len(mine), "share": len(mine) / max(len(rows), 1),
                        "quality_failures": sum(r["quality_check"] != "ok" for r in mine) / len(mine) if mine else None,
                        "concludes_other": sum(r["concludes"] not in ("", lab_) for r in mine) / len(mine) if mine
                        else None,
                        "mean_chars": sum(len(r["reasoning"]) for r in mine) / len(mine) if mine else None})
    return [{**r, "supports_label": "", "reviewer_notes": ""} for r in sheet], summary


def _quality_filter(lab: Lab) -> list[dict]:
    """The stage-2 set of a data engine with the quality filter on, over the main run's round-0 outputs."""
    from pipeline.config import deep_merge
    from pipeline.stages import build_stage2, generate

    arm = lab.arm_context(lab.out / "quality_filter", deep_merge(lab.ctx.profile, {"qc": {"enabled": True}}))
    split = arm.task_split("train")
    if not split.exists():
        split.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lab.ctx.task_split("train"), split)
    first = lab.ctx.generations / "attempt-0"
    if first.exists() and not (arm.generations / "attempt-0").exists():
        shutil.copytree(first, arm.generations / "attempt-0")
    if not (arm.generations / "reasonings.jsonl").exists():
        generate(arm)
    if not arm.train_set("stage2").exists():
        build_stage2(arm)
    return read_jsonl(arm.train_set("stage2"))


def _extra_reasonings(lab: Lab, plain: list[dict]) -> tuple[list[dict], list[str]]:
    """The plain set plus new-seed reasonings for the examples of rare classes, and those classes."""
    from postprocess.reasoning import clean_reasoning
    from pipeline.generation.job import GenerationJob
    from pipeline.generation.shards import ShardStore
    from pipeline.stages import _request_seed, generator_model

    gen, task = lab.ctx.generation, lab.task
    by_id = {r["id"]: r for r in lab.train_split}
    counts = Counter(by_id[r["id"]]["label"] for r in plain)
    rare = [x for x in lab.labels if counts[x] / len(plain) < lab.own["below_share"]]
    todo = [by_id[r["id"]] for r in plain if by_id[r["id"]]["label"] in rare]
    if not todo:
        return plain, rare
    work = lab.out / "extra_reasonings"
    requests = [{"id": f"{r['id']}#extra{k}", "messages": prompts.reasoning_request(task, r, r["label"], gen["generator"]),
                 "seed": _request_seed(gen["seed"], 1000 + k, r["id"])}
                for k in range(lab.own["extra_per_example"]) for r in todo]
    atomic_write_jsonl(work / "requests.jsonl", requests)
    sampling = {k: gen[k] for k in ("temperature", "top_p", "max_tokens")}
    job = GenerationJob.from_profile(gen, generator_model(lab.ctx), work / "requests.jsonl", work / "shards",
                                     sampling, seed=gen["seed"] + 1000, chat=lab.ctx.chat_template)
    with lab.session("-extra") as session:
        session.run(job)
    results, missing = ShardStore(work / "shards").merged([r["id"] for r in requests])
    if missing:
        raise DataError(f"{work / 'shards'}: {len(missing)} ids missing after generation, e.g. {missing[:5]}")
    extra = []
    for res in results:
        src = by_id[res["id"].rsplit("#extra", 1)[0]]
        reasoning = clean_reasoning(res["output"], task.labels, task.answer_prefix)
        if reasoning:
            extra.append(lab.stage2_row(res["id"], src, reasoning))
    return plain + extra, rare


def _balanced_sampling(lab: Lab, plain: list[dict]) -> list[dict]:
    """The plain set resampled to its own size with every class equally often (rare rows repeat)."""
    by_id = {r["id"]: r for r in lab.train_split}
    groups: dict[str, list[dict]] = {}
    for r in plain:
        groups.setdefault(by_id[r["id"]]["label"], []).append(r)
    rng = random.Random(lab.settings["seed"])
    present = [x for x in lab.labels if x in groups]
    out = []
    for k, x in enumerate(present):
        n = len(plain) // len(present) + (k < len(plain) % len(present))
        out += rng.sample(groups[x], n) if n <= len(groups[x]) else rng.choices(groups[x], k=n)
    rng.shuffle(out)
    return out


def run(lab: Lab) -> dict:
    from pipeline.train import resolve_config

    sheet, summary = review(lab)
    atomic_write_text(lab.out / "review_sheet.csv", pd.DataFrame(sheet).to_csv(index=False))
    plain = lab.main_set("stage2")
    cfg = resolve_config(lab.arm_context(lab.out / "probe", lab.arm_profile()), "stage2")
    gpus = lab.ctx.gpus or lab.ctx.profile["train"].get("gpus", 1)
    steps = None if cfg.get("max_steps") else {"max_steps": math.ceil(
        len(plain) / (cfg["micro_batch_size"] * cfg.get("gradient_accumulation_steps", 1) * gpus))
        * int(cfg.get("num_epochs", 1))}
    sets, rare = {"plain": plain}, []
    if "quality_filter" in lab.own["arms"]:
        sets["quality_filter"] = _quality_filter(lab)
    if "extra_reasonings" in lab.own["arms"]:
        sets["extra_reasonings"], rare = _extra_reasonings(lab, plain)
    if "balanced_sampling" in lab.own["arms"]:
        sets["balanced_sampling"] = _balanced_sampling(lab, plain)
    arms = lab.train_all([dict(which="stage2", rows=rows, arm=name, extra=steps) for name, rows in sets.items()])
    test = lab.test_rows()
    with lab.session() as session:
        preds = {a["arm"]: lab.predict(session, "reasoning", a["model_dir"], test, a["arm"]) for a in arms}
    models = {name: scores(p, lab.labels) for name, p in preds.items()}
    vs_plain = {name: mcnemar(preds["plain"], p, lab.labels, "plain", name) for name, p in preds.items()
                if name != "plain"}
    return {"arms": arms, "models": models, "rare_classes": rare, "summary": summary, "review_rows": len(sheet),
            "review_sheet": (lab.out / "review_sheet.csv").relative_to(lab.ctx.run_dir).as_posix(),
            "vs_plain": {name: {"acc_diff": c["acc_diff"], "pvalue": c["pvalue"], "b01": c["b01"], "b10": c["b10"],
                                "per_class": {x: {"pvalue_holm": p["pvalue_holm"], "significant": p["significant"]}
                                              for x, p in c["per_class"].items()}}
                         for name, c in vs_plain.items()},
            "examples": [{k: r[k] for k in ("id", "label", "quality_check", "concludes", "reasoning")}
                         for r in sheet[::max(1, lab.own["review_per_class"])]]}


def tables(result: dict) -> dict[str, pd.DataFrame]:
    labels = list(next(iter(result["models"].values()))["recall"])
    recall = []
    for name, m in result["models"].items():
        c = result["vs_plain"].get(name)
        recall.append({"arm": name, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                       **{f"recall {x}": m["recall"][x] for x in labels},
                       "acc_diff_vs_plain": c and c["acc_diff"], "pvalue_vs_plain": c and c["pvalue"],
                       "classes_significant": c and ", ".join(x for x, p in c["per_class"].items() if p["significant"])})
    return {"minority_review": pd.DataFrame(result["summary"]), "minority_recall": pd.DataFrame(recall)}


def notes(result: dict) -> list[str]:
    out = [f"Review sheet: `{result['review_sheet']}` ({result['review_rows']} reasonings; fill in `supports_label` "
           f"and `reviewer_notes`). `quality_failures`: share failing the quality filter's checks; `concludes_other`: "
           f"share whose verdict names another class. Classes given extra reasonings: "
           f"{', '.join(result['rare_classes']) or 'none below the share'}. One sampled reasoning per class:", ""]
    for r in result["examples"]:
        out.append(f"- **{r['label']}** (`{r['id']}`, check: {r['quality_check']}, concludes: "
                   f"{r['concludes'] or '—'}): {' '.join(r['reasoning'].split())[:300]!r}")
    return out + [""]
