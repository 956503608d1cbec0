"""Follow-up experiments on a finished run: `orchestrate.py experiments --profile P --run-dir R`.

    python orchestrate.py experiments --profile tiny --run-dir runs/tiny --only noise,latency

Each experiment (one module here) reuses the main run's splits, reasonings and models, trains
its own arms where it needs them (pipeline/experiments/lab.py) and returns a JSON result that
it writes to RUN/experiments/<name>/result.json. The result goes into RUN/metrics.json under
`experiments.<name>` and a section of RUN/report.md (the question, the switch, the tables, how
to read them). An experiment is recorded in the run's manifest like a stage: skipped when its
record is done with the same fingerprint (its settings and the main run's), rerun otherwise,
its earlier folder moved to RUN/.stale/.
"""
from __future__ import annotations

import importlib

from pipeline.config import RunContext
from pipeline.io import DataError, atomic_write_json, atomic_write_text, read_json
from pipeline.manifest import Manifest, RunLock, fingerprint
from pipeline.profile import EXPERIMENT_NAMES

MARKER = "<!-- experiments: written by `orchestrate.py experiments` -->"


def module(name: str):
    return importlib.import_module(f"pipeline.experiments.{name}")


def record_name(name: str) -> str:
    return f"experiment {name}"


def experiment_fingerprint(ctx: RunContext, name: str, main_fp: str) -> str:
    """An experiment's settings, the arms' training overrides and the finished main run."""
    exp = ctx.profile["experiments"]
    return fingerprint(record_name(name), exp.get(name), exp["train"], exp["test_limit"], exp["seed"], [main_fp])


def main_run_fingerprint(ctx: RunContext, manifest: Manifest) -> str:
    """The fingerprint of the main run's last stage, or a DataError when any stage is not finished
    with the current configuration (experiments reuse its splits, reasonings and models)."""
    from pipeline.run import ORDER, fingerprints
    from pipeline.stages import STAGES

    if ctx.profile.get("seeds"):
        raise DataError(f"{ctx.run_dir}: experiments run on a single run's models; this profile trains seed "
                        f"replicates (`seeds`), which have no models in the run directory itself")
    fps = fingerprints(ctx)
    for name in ORDER:
        if not manifest.is_fresh(name, fps[name], STAGES[name].outputs(ctx)):
            raise DataError(f"{ctx.run_dir}: the main run is not finished (stage {name!r} is not done with the "
                            f"current configuration); run `{ctx.command('all')}` first, then the experiments")
    return fps[ORDER[-1]]


def selected(ctx: RunContext, only: list[str] | None) -> list[str]:
    """The experiments to run, in their fixed order: `only`, else the profile's `experiments.run`."""
    unknown = [n for n in only or [] if n not in EXPERIMENT_NAMES]
    if unknown:
        raise DataError(f"--only {','.join(unknown)}: unknown experiment(s); choose from {', '.join(EXPERIMENT_NAMES)}")
    names = [n for n in EXPERIMENT_NAMES if n in (only or ctx.profile["experiments"]["run"])]
    if not names:
        raise DataError(f"profile {ctx.profile['name']!r}: key 'experiments.run' lists no experiment; name some "
                        f"({', '.join(EXPERIMENT_NAMES)}) or pass --only")
    return names


def check(ctx: RunContext, only: list[str] | None = None) -> None:
    """`experiments --check`: the names are known, the main run is finished; which would run."""
    names, manifest = selected(ctx, only), Manifest(ctx.manifest_path)
    main_fp = main_run_fingerprint(ctx, manifest)
    for name in names:
        fresh = manifest.is_fresh(record_name(name), experiment_fingerprint(ctx, name, main_fp),
                                  [ctx.run_dir / "experiments" / name / "result.json"])
        print(f"[{record_name(name)}] {'up to date' if fresh else 'would run'}")


def run_experiments(ctx: RunContext, only: list[str] | None = None, force: bool = False) -> None:
    """Run the profile's `experiments.run` (or `only`) in order, skipping those up to date, then
    write every finished experiment into metrics.json and report.md."""
    from pipeline.io import move_aside

    names = selected(ctx, only)
    main_run_fingerprint(ctx, Manifest(ctx.manifest_path))  # before the lock, which would make the folder
    with RunLock(ctx.run_dir):
        manifest = Manifest(ctx.manifest_path)
        main_fp = main_run_fingerprint(ctx, manifest)
        for name in names:
            rec, fp = record_name(name), experiment_fingerprint(ctx, name, main_fp)
            out = ctx.run_dir / "experiments" / name
            if not force and manifest.is_fresh(rec, fp, [out / "result.json"]):
                print(f"[{rec}] up to date, skipped (to rerun it: {ctx.command('experiments', '--only', name, '--force')})")
                continue
            old = manifest.stage(rec).get("fingerprint")
            if out.exists() and (force or (old and old != fp)):
                dest = move_aside(out, ctx.run_dir, f"experiment-{name}-{old or 'forced'}")
                print(f"  moved stale {out.relative_to(ctx.run_dir)} to {dest.relative_to(ctx.run_dir)}")
            manifest.start(rec, fp)
            print(f"[{rec}] running")
            try:
                result = module(name).run(_lab(ctx, name))
            except BaseException as e:
                manifest.fail(rec, f"{type(e).__name__}: {e}")
                raise
            tables = module(name).tables(result)
            for table, df in tables.items():
                atomic_write_text(out / "tables" / f"{table}.csv", df.to_csv(index=False))
            atomic_write_json(out / "result.json", _clean(result))
            manifest.finish(rec, [out / "result.json"], {"tables": sorted(tables)})
            print(f"[{rec}] done in {manifest.stage(rec)['seconds']:.1f}s")
        attach(ctx, manifest, main_fp)


def _lab(ctx: RunContext, name: str):
    from pipeline.experiments.lab import Lab

    return Lab(ctx, name)


def _clean(obj):
    from eval.evaluate import _clean as clean

    return clean(obj)


def attach(ctx: RunContext, manifest: Manifest, main_fp: str) -> None:
    """Every experiment finished with the current settings: `experiments.<name>` in metrics.json and
    a section of report.md (after the main report, replacing the sections an earlier call wrote)."""
    results = {}
    for name in EXPERIMENT_NAMES:
        path = ctx.run_dir / "experiments" / name / "result.json"
        if manifest.is_fresh(record_name(name), experiment_fingerprint(ctx, name, main_fp), [path]):
            results[name] = read_json(path)
    metrics_path, report_path = ctx.run_dir / "metrics.json", ctx.run_dir / "report.md"
    metrics = read_json(metrics_path)
    metrics["experiments"] = results
    atomic_write_json(metrics_path, metrics)
    report = report_path.read_text(encoding="utf-8").split(MARKER)[0].rstrip()
    sections = [section(name, result) for name, result in results.items()]
    atomic_write_text(report_path, "\n\n".join([report, MARKER, "# Experiments", *sections]).rstrip() + "\n")
    print(f"[experiments] {len(results)} experiment(s) in {metrics_path} and {report_path}")


def section(name: str, result: dict) -> str:
    """The report section of one experiment: question, switch, arms, tables, how to read it."""
    from eval.report import to_markdown

    mod = module(name)
    out = [f"## Experiment `{name}`" + (" (timing, not reproducible)" if getattr(mod, "TIMING", False) else ""), "",
           f"**Question.** {mod.QUESTION}", "", f"**Switch.** {mod.SWITCH}", ""]
    if result.get("arms"):
        import pandas as pd

        arms = pd.DataFrame([{"arm": a["arm"], "model": a["model"], "main run's model": "yes" if a["main_model"] else "no",
                              "rows": a["rows_in"], "rows trained": a["rows_trained"],
                              "optimizer steps": a["optimizer_steps"], "examples/step": a["examples_per_step"],
                              "train loss": a["train_loss"], "ids": (a.get("ids_sha256") or "")[:12] or None}
                             for a in result["arms"]])
        out += ["Arms trained (same config and steps; they differ only in the switch):", "", to_markdown(arms), ""]
    for title, df in mod.tables(result).items():
        out += [f"`{title}`:", "", to_markdown(df), ""]
    out += list(getattr(mod, "notes", lambda r: [])(result))
    out += [f"**How to read it.** {mod.READ}", ""]
    return "\n".join(out).rstrip()
