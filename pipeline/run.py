"""Run stages in order under the run-directory lock, skipping those that are up to date.

A stage is skipped when the manifest says it finished with the same fingerprint and
its outputs exist. When its fingerprint changed (or --force), its partial work is
moved aside to RUN/.stale/ (never deleted) before it runs again; an interrupted stage
with an unchanged fingerprint resumes from its partial work (shards, checkpoints).
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import RunContext
from pipeline.io import DataError, move_aside
from pipeline.manifest import Manifest, RunLock, environment, fingerprint, file_hash
from pipeline.prompts import template_paths
from pipeline.side_by_side import run_side_by_side
from pipeline.stages import STAGES, shard_summary

ORDER = list(STAGES)
# The data engine: run once in RUN and shared by its replicates RUN/seed-N (--seeds).
SHARED = ("prepare", "train-stage1", "generate", "build-stage2")


def fingerprints(ctx: RunContext) -> dict[str, str]:
    fps: dict[str, str] = {}
    for name, st in STAGES.items():
        fps[name] = fingerprint(name, st.config(ctx), [fps[d] for d in st.deps])
    return fps


def _move_aside(ctx: RunContext, paths: list[Path], old_fp: str) -> None:
    for path in paths:
        if path.exists():
            dest = move_aside(path, ctx.run_dir, f"{path.name}-{old_fp}")
            print(f"  moved stale {path.relative_to(ctx.run_dir)} to {dest.relative_to(ctx.run_dir)}")


def _record_run(ctx: RunContext, manifest: Manifest) -> None:
    manifest.data["environment"] = environment()
    manifest.data["profile"] = ctx.profile
    manifest.data["profile_source"] = ctx.profile_source or ctx.profile["name"]  # what --profile said
    manifest.data["task"] = {"name": ctx.task.name, "spec": str(ctx.task.path), "sha256": file_hash(ctx.task.path)}
    manifest.data["templates"] = {p.name: file_hash(p) for p in template_paths(ctx.task, ctx.chat_template)}
    manifest.data["data_dir"] = str(ctx.data_dir) if ctx.data_dir else None
    manifest.data["shared_dir"] = str(ctx.shared_dir) if ctx.shared_dir else None
    manifest.data["seeds"] = {"generation": ctx.profile["generation"]["seed"], "profile": ctx.profile.get("seed", 0),
                              "replicate": ctx.seed}


def pending(ctx: RunContext, names: list[str], force=frozenset(), shard: str | None = None) -> list[str]:
    """The requested stages, in order, that `run_stages` will run: not recorded fresh, or forced."""
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise DataError(f"unknown stage(s) {unknown}; choose from {', '.join(ORDER)}")
    manifest, fps = _read_manifest(ctx), fingerprints(ctx)
    return [n for n in ORDER if n in names and _due(ctx, manifest, fps, n, force, shard)]


def _due(ctx: RunContext, manifest: Manifest, fps: dict[str, str], name: str, force, shard: str | None) -> bool:
    """Whether stage `name` runs: forced, or not recorded finished with its fingerprint and outputs."""
    return name in force or not manifest.is_fresh(record_name(name, shard), fps[name], outputs(ctx, name, shard))


def record_name(name: str, shard: str | None) -> str:
    """A shard of generate has its own manifest record: it is not the finished stage."""
    return f"{name} --shard {shard}" if shard else name


def outputs(ctx: RunContext, name: str, shard: str | None) -> list[Path]:
    return [shard_summary(ctx, shard)] if shard else STAGES[name].outputs(ctx)


def _read_manifest(ctx: RunContext) -> Manifest:
    try:
        return Manifest(ctx.manifest_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{ctx.manifest_path}: not valid JSON ({e}); move it aside to start this run "
                        f"directory over") from None


def check_dependencies(ctx: RunContext, names: list[str], manifests: tuple[Manifest, Manifest] | None = None,
                       fps: dict[str, str] | None = None, will_run: tuple[str, ...] = ()) -> None:
    """The runner's refusal of a stage whose dependency is neither finished with the current
    configuration nor among `will_run` (the stages of the same command that run before it)."""
    manifest, shared = manifests or (_read_manifest(ctx), Manifest(ctx.home / "manifest.json"))
    fps = fps or fingerprints(ctx)
    for name in names:
        for dep in STAGES[name].deps:
            if dep not in will_run and \
                    not (shared if dep in SHARED else manifest).is_fresh(dep, fps[dep], STAGES[dep].outputs(ctx)):
                raise DataError(f"stage {name!r} needs stage {dep!r} finished with the current configuration in "
                                f"{ctx.home if dep in SHARED else ctx.run_dir}; run `{ctx.command(dep)}` "
                                f"(or `{ctx.command('all')}`) first")


def upstream(name: str) -> set[str]:
    """Every stage `name` depends on, directly or through others."""
    deps = set(STAGES[name].deps)
    for dep in STAGES[name].deps:
        deps |= upstream(dep)
    return deps


def side_by_side_groups(names: list[str], width: int) -> list[list[str]]:
    """`names` (in ORDER) cut into what run_stages runs together: consecutive trainings that do not
    depend on one another, at most `width` per group (train.concurrent); every other stage alone."""
    groups: list[list[str]] = []
    for name in names:
        last = groups[-1] if groups else []
        if 0 < len(last) < width and all(STAGES[m].trains and m not in upstream(name) for m in [*last, name]):
            last.append(name)
        else:
            groups.append([name])
    return groups


def run_stages(ctx: RunContext, names: list[str], force: set[str] = frozenset(), shard: str | None = None) -> None:
    """Run `names` in order; `shard` ("i/N", generate only) runs one machine's share of generate.
    Independent trainings run side by side when the profile's `train.concurrent` allows."""
    if shard and list(names) != ["generate"]:
        raise DataError(f"--shard {shard} applies to the generate stage only")
    with RunLock(ctx.run_dir):
        manifest = _read_manifest(ctx)
        shared = Manifest(ctx.home / "manifest.json") if ctx.shared_dir else manifest
        _record_run(ctx, manifest)
        fps = fingerprints(ctx)
        groups = side_by_side_groups([n for n in ORDER if n in names], ctx.profile["train"]["concurrent"])
        for g, group in enumerate(groups):
            todo = []
            for name in group:
                if ctx.shared_dir and name in SHARED:
                    raise DataError(f"{ctx.run_dir}: a replicate runs no {name!r}; its data engine lives in "
                                    f"{ctx.shared_dir}")
                rec = record_name(name, shard)
                check_dependencies(ctx, [name], (manifest, shared), fps)
                if not _due(ctx, manifest, fps, name, force, shard):
                    again = ctx.command("all", "--from", name) if len(names) > 1 else ctx.command(name, "--force")
                    print(f"[{rec}] up to date, skipped (to rerun it: {again})")
                    continue
                # whose work the partial state is: shards and the merge of generate share generations/
                written = manifest.data.setdefault("state", {})
                old = written.get(name) or manifest.stage(name).get("fingerprint")
                if name in force or (old and old != fps[name]):
                    _move_aside(ctx, STAGES[name].state(ctx), old or "forced")
                written[name] = fps[name]
                todo.append(name)
            for name in todo:
                manifest.start(record_name(name, shard), fps[name])  # recorded before it is announced: a kill
                print(f"[{record_name(name, shard)}] running")         # after the line finds it

            def ended(i: int, info: dict, error: BaseException | None, todo=todo) -> None:
                rec = record_name(todo[i], shard)
                if error is not None:
                    manifest.fail(rec, f"{type(error).__name__}: {error}")
                    return
                manifest.finish(rec, outputs(ctx, todo[i], shard), info)
                print(f"[{rec}] done in {manifest.stage(rec)['seconds']:.1f}s")

            after = groups[g + 1][0] if g + 1 < len(groups) else None
            if todo and after and STAGES[after].prestart and not shard and _due(ctx, manifest, fps, after, force, None):
                STAGES[after].prestart(ctx)  # e.g. generate's vLLM worker imports while stage 1 trains
            run_side_by_side([_stage_job(ctx, name, shard) for name in todo], len(todo), ended)


def _stage_job(ctx: RunContext, name: str, shard: str | None):
    return (lambda: STAGES[name].run(ctx, shard=shard)) if shard else (lambda: STAGES[name].run(ctx))


def run_replicates(ctx: RunContext, names: list[str], force: set[str], seeds: list[int]) -> None:
    """`--seeds`: the data engine once in RUN, then stage 2, the baseline, predict and evaluate in
    RUN/seed-N with training seed N for each seed; RUN/report.md and metrics.json aggregate them
    (mean and spread of every metric, McNemar per seed and pooled)."""
    from eval.evaluate import run_evaluate

    if len(set(seeds)) != len(seeds):
        raise DataError(f"seeds {seeds}: each seed once")
    shared = [n for n in names if n in SHARED]
    if shared:
        run_stages(ctx, shared, force)
    for seed in seeds:
        rep = ctx.replicate(seed)
        print(f"[seed {seed}] {rep.run_dir}")
        run_stages(rep, [n for n in names if n not in SHARED], force)
    if "evaluate" in names:
        run_evaluate([ctx.replicate(s).run_dir for s in seeds], ctx.run_dir, ctx.task.labels, ctx.task.paper_reference)
        print(f"[evaluate] {len(seeds)} seeds aggregated into {ctx.run_dir / 'report.md'}")
