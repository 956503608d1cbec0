#!/usr/bin/env python
"""One CLI over the pipeline's stages (see pipeline/stages.py):

    python orchestrate.py all --profile tiny --run-dir runs/tiny
    python orchestrate.py generate --profile paper --shard 0/4
    python orchestrate.py classify --run-dir runs/tiny "i am so angry"
    python orchestrate.py experiments --profile tiny --run-dir runs/tiny --only noise

Every stage reads its inputs from the run directory and writes its outputs there;
`all` runs them in order and skips those already up to date (see the manifest).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path

STAGE_HELP = {
    "prepare": "load the task splits and the reasoning set, render prompts, write Axolotl JSONL",
    "train-stage1": "train the reasoning generator with Axolotl (question, answer -> reasoning)",
    "generate": "the stage-1 model writes a reasoning for every training example",
    "build-stage2": "clean reasonings; write the stage-2 and baseline training sets",
    "train-stage2": "train a fresh model on text -> reasoning + label",
    "train-baseline": "train a fresh model on text -> label",
    "predict": "greedy decoding of both models on the test split",
    "evaluate": "metrics, McNemar, reference baselines, report.md",
    "all": "every stage in order, skipping those already up to date",
    "plan": "print tokens, FLOP floor and expected GPU-hours per stage, before any work",
    "experiments": "follow-up experiments on a finished run (the profile's experiments.run), each a report section",
}
# Commands on a finished run directory (its profile and task come from its manifest).
RUN_TOOLS = {
    "classify": ("pipeline.classify", "classify new texts with a trained model of a run (JSON lines out)"),
    "export": ("pipeline.export", "write a run's reasonings, training sets and models, with cards, for sharing"),
}


def _seed_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,2,3") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="profiles/<name>.yml (paper, tiny) or your own .yml; default: the one the "
                                          "run directory was made with, else paper")
    common.add_argument("--run-dir", help="run directory (default: runs/<profile>)")
    common.add_argument("--task", help="tasks/<name>.yml, or the path of your own task.yml; default: the run "
                                       "directory's, else emotion")
    common.add_argument("--data-dir", help="folder with the task's text files, e.g. ../shared/data/emotion "
                                           "(default: the run directory's)")
    common.add_argument("--backend", choices=["auto", "vllm", "transformers", "ray"],
                        help="generation backend (default: the profile's, auto); ray: vLLM replicas on the Ray "
                             "cluster named by RAY_ADDRESS (a local one-node Ray when unset)")
    common.add_argument("--gpus", type=int, help="GPUs for training (Axolotl's accelerate launcher when > 1)")
    common.add_argument("--seeds", type=_seed_list, metavar="N,N,...",
                        help="replicates: train stage 2 and the baseline once per seed in RUN/seed-N over one data "
                             "engine; RUN/report.md aggregates them (default: the profile's `seeds`)")
    common.add_argument("--force", action="store_true", help="rerun the stage(s) even if up to date")
    common.add_argument("--check", action="store_true",
                        help="only validate data, templates, model access, devices, disk and configs (preflight)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, text in STAGE_HELP.items():
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        if name == "generate":
            p.add_argument("--shard", help="i/N: generate only this machine's share (merge by rerunning without)")
        if name == "all":
            p.add_argument("--from", dest="from_stage", help="rerun from this stage on")
        if name == "experiments":
            p.add_argument("--only", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], metavar="NAME,...",
                           help="run only these experiments (balanced, noise, latency, faithfulness, minority, "
                                "label_first)")
        if name == "plan":
            p.add_argument("--gpu-tflops", type=float, default=989.0, help="peak bf16 dense TFLOP/s (H100 SXM: 989)")
            p.add_argument("--mfu", type=float, help="model FLOP utilisation of training (default: measured for the "
                                                     "shipped stage-1 config, bench/results/train_throughput_gpu.json)")
            p.add_argument("--gen-tok-s", type=float, default=20000.0, help="vLLM output tokens/s (assumed)")
    for name, (module, text) in RUN_TOOLS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=text, description=text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in RUN_TOOLS:  # classify / export on a finished run
        return _guarded(lambda: importlib.import_module(RUN_TOOLS[args.command][0]).main(args),
                        "interrupted: the rows already written are kept")
    return _guarded(lambda: run_pipeline(args),
                    "interrupted: finished work is kept; run the same command again to resume")


def _guarded(run, interrupted: str) -> int:
    """Bad input exits 2 with one line, never a traceback; Ctrl-C or SIGTERM exits 130."""
    from pipeline.io import DataError
    from pipeline.procs import StageFailed

    try:
        return run() or 0
    except (DataError, StageFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


def context_for(args):
    """The RunContext of the command line. A run directory remembers how it was made (profile,
    task, data directory in its manifest): later commands on it need only --run-dir, and a
    different --profile is refused. Without a run directory: runs/<profile>."""
    from pipeline.config import RunContext, TaskSpec, load_profile, read_manifest, recorded_task
    from pipeline.io import DataError

    made = read_manifest(args.run_dir) if args.run_dir and (Path(args.run_dir) / "manifest.json").exists() else None
    source = args.profile or (made and made.get("profile_source", made["profile"]["name"])) or "paper"
    profile = load_profile(source)
    if made and args.profile and profile["name"] != made["profile"]["name"]:
        raise DataError(f"{args.run_dir} was made with profile {made['profile']['name']!r}, not {profile['name']!r}: a "
                        f"run directory keeps its profile (its stages and fingerprints depend on it). Omit --profile "
                        f"to continue this run, or give another --run-dir for a run with {profile['name']!r}")
    task = args.task or (made and recorded_task(made)) or "emotion"
    return RunContext(profile, TaskSpec.load(task), args.run_dir or f"runs/{profile['name']}",
                      data_dir=args.data_dir or (made or {}).get("data_dir"), backend=args.backend, gpus=args.gpus,
                      profile_source=source)


def run_pipeline(args) -> int:
    """The stages (or `plan`) for the parsed command line."""
    from pipeline.io import DataError
    from pipeline.preflight import preflight
    from pipeline.run import ORDER, check_dependencies, pending, run_replicates, run_stages

    ctx = context_for(args)
    profile = ctx.profile
    if args.command == "experiments":
        from pipeline.experiments import check, run_experiments

        check(ctx, args.only) if args.check else run_experiments(ctx, args.only, force=args.force)
        return 0
    if args.command == "plan":
        from pipeline.plan import ASSUMED_MFU, estimate, measured_mfu, render

        mfu, source = (args.mfu, "--mfu") if args.mfu else measured_mfu() or (ASSUMED_MFU, "assumed (no measurement)")
        print(render(estimate(ctx, args.gpu_tflops, mfu, args.gen_tok_s), args.gpu_tflops, mfu, args.gen_tok_s, source))
        return 0
    shard = getattr(args, "shard", None)
    if args.command == "all":
        names = ORDER
        if args.from_stage and args.from_stage not in ORDER:
            raise DataError(f"--from {args.from_stage!r}: choose one of {', '.join(ORDER)}")
        force = set(ORDER if args.force else ORDER[ORDER.index(args.from_stage):] if args.from_stage else [])
    else:
        names = [args.command]
        force = set(names) if args.force else set()
    preflight(ctx, names, shard=shard, force=force)  # outside the lock: run_stages takes it
    if args.check:  # and the runner's own refusal of a stage whose inputs no earlier stage made
        todo = pending(ctx, names, force, shard)
        check_dependencies(ctx, todo, will_run=tuple(todo))
        return 0
    seeds = args.seeds or profile.get("seeds")
    if seeds and not shard:
        run_replicates(ctx, names, force, seeds)
    else:
        run_stages(ctx, names, force, shard=shard)
    return 0


if __name__ == "__main__":
    # `kill PID` (and a scheduler's preemption) stops the run the way Ctrl-C does: the stage
    # is recorded as interrupted and its children are stopped before we exit.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
