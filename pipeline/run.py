"""Run stages in order under the run-directory lock, skipping those that are up to date.

A stage is skipped when the manifest says it finished with the same fingerprint and
its outputs exist. When its fingerprint changed (or --force), its partial work is
moved aside to RUN/.stale/ (never deleted) before it runs again; an interrupted stage
with an unchanged fingerprint resumes from its partial work (shards, checkpoints).
"""
from __future__ import annotations

from pathlib import Path

from pipeline.config import RunContext
from pipeline.io import DataError, move_aside
from pipeline.manifest import Manifest, RunLock, environment, fingerprint, file_hash
from pipeline.prompts import template_paths
from pipeline.stages import STAGES

ORDER = list(STAGES)


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
    manifest.data["task"] = {"name": ctx.task.name, "spec": str(ctx.task.path), "sha256": file_hash(ctx.task.path)}
    manifest.data["templates"] = {p.name: file_hash(p) for p in template_paths(ctx.task)}
    manifest.data["data_dir"] = str(ctx.data_dir) if ctx.data_dir else None
    manifest.data["seeds"] = {"generation": ctx.profile["generation"]["seed"], "profile": ctx.profile.get("seed", 0)}


def run_stages(ctx: RunContext, names: list[str], force: set[str] = frozenset(), **stage_kwargs) -> None:
    with RunLock(ctx.run_dir):
        manifest = Manifest(ctx.manifest_path)
        _record_run(ctx, manifest)
        fps = fingerprints(ctx)
        for name in ORDER:
            if name not in names:
                continue
            st = STAGES[name]
            for dep in st.deps:
                if not manifest.is_fresh(dep, fps[dep], STAGES[dep].outputs(ctx)):
                    raise DataError(f"stage {name!r} needs stage {dep!r} finished with the current configuration in "
                                    f"{ctx.run_dir}; run `{ctx.command(dep)}` (or `{ctx.command('all')}`) first")
            if name not in force and manifest.is_fresh(name, fps[name], st.outputs(ctx)):
                again = ctx.command("all", "--from", name) if len(names) > 1 else ctx.command(name, "--force")
                print(f"[{name}] up to date, skipped (to rerun it: {again})")
                continue
            old = manifest.stage(name).get("fingerprint")
            if name in force or (old and old != fps[name]):
                _move_aside(ctx, st.state(ctx), old or "forced")
            manifest.start(name, fps[name])  # recorded before it is announced: a kill after the line finds it
            print(f"[{name}] running")
            try:
                info = st.run(ctx, **stage_kwargs.get(name, {}))
            except BaseException as e:
                manifest.fail(name, f"{type(e).__name__}: {e}")
                raise
            manifest.finish(name, st.outputs(ctx), info)
            print(f"[{name}] done in {manifest.stage(name)['seconds']:.1f}s")
