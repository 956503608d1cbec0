"""Share what a run made, the way models and datasets are shared on the Hugging Face hub:

    OUT/dataset/             the generated reasonings and the stage-2 / baseline training sets as
                             parquet (one config each) + README.md, a dataset card: push as is
    OUT/arrow/<config>/      the same rows as `datasets.load_from_disk` folders
    OUT/models/<which>/      each trained model's weights and tokenizer + README.md (model card)
                             + axolotl_config.yml (the resolved config it was trained with)

Cards are Jinja templates (cards/*.md.jinja) filled from the run's own records: its manifest
(profile, task, stage records), generations/generation_stats.json and metrics.json.
Nothing is uploaded unless `--push-to-hub ORG` is given and a token is found.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from pipeline import prompts
from pipeline.classify import is_trained
from pipeline.config import ROOT, RunContext
from pipeline.io import DataError, iter_jsonl_lines, read_json, read_jsonl

CARDS_DIR = ROOT / "cards"
# dataset config -> the run file it is made of
DATASET_FILES = {"reasonings": "generations/reasonings.jsonl", "stage2": "data/stage2.jsonl",
                 "baseline": "data/baseline.jsonl"}
MODEL_TRAINING = {"stage1": "reasoning set -> reasoning (the generator of the reasonings)",
                  "stage2": "text -> reasoning + label", "baseline": "text -> label",
                  "label_first": "text -> label + reasoning"}
NOT_EXPORTED = ("README.md", "training_args.bin", "debug.log")  # Axolotl's card (replaced), trainer state, log
METRICS_NAME = {"stage2": "reasoning", "baseline": "baseline", "label_first": "label_first"}


def _load(run_dir: Path, rel: str, reader):
    path = run_dir / rel
    if not path.is_file():
        raise DataError(f"{path}: missing; export needs a run whose generate, build-stage2 and training stages "
                        f"finished (`orchestrate.py all`)")
    return reader(path)


def _replace_dir(build, dest: Path) -> Path:
    """Build into a sibling temporary folder, then swap it in: an earlier export stays whole until then."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def _link_or_copy(src: str, dst: str) -> str:
    """Weights are large and never modified in place: a hard link when the file system allows."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


# ---------------------------------------------------------------- facts the cards state
def run_facts(ctx: RunContext, manifest: dict) -> dict:
    profile, task = ctx.profile, ctx.task
    data = profile.get("task_data", {})
    if ctx.data_dir:
        source = f"the `text;label` files of {ctx.data_dir.name} ({', '.join(task.text_files.values())})"
    elif data.get("source") == "hub":
        source = f"[{task.hub['path']}](https://huggingface.co/datasets/{task.hub['path']})"
    else:
        source = "synthetic data made by the project's `pipeline/synthetic.py` (the offline demo)"
    stages, env = manifest.get("stages", {}), manifest.get("environment", {})
    prepared = stages.get("prepare", {}).get("info", {})
    base = profile["base_model"]
    return {
        "task": task, "profile": profile, "profile_name": profile.get("name"), "source": source,
        "source_hub": task.hub.get("path") if not ctx.data_dir and data.get("source") == "hub" else None,
        "train_rows": prepared.get("task_train"), "test_rows": prepared.get("task_test"),
        "limits": {k: data.get(k) for k in ("limit_train", "limit_test")
                   if data.get(k) and (ctx.data_dir or data.get("source") == "hub")},  # they cut real data only
        "base_model": base, "base_model_hub": None if base == "tiny" else base,
        "base_model_text": (f"a tiny random-initialised Llama built by `pipeline/tiny_model.py` "
                            f"({profile.get('tiny_model')})" if base == "tiny" else f"`{base}`"),
        "reasoning_source": _reasoning_source(profile.get("reasoning_set", {}).get("source")),
        "commit": env.get("git_commit"), "packages": env.get("packages", {}), "stages": stages,
    }


def _reasoning_source(source: str | None) -> str:
    if source == "synthetic":
        return "synthetic (question, answer, reasoning) examples made by `pipeline/synthetic.py`"
    return f"`{source}`"


def _first_messages(path: Path) -> list[dict]:
    """The chat messages of a JSONL file's first row, as the run wrote them."""
    if not path.is_file():
        return []
    _, first = next(iter_jsonl_lines(path), (0, {}))
    return first.get("messages", [])


# ---------------------------------------------------------------- the dataset
def export_dataset(ctx: RunContext, facts: dict, out: Path, repo_ids: dict) -> dict:
    from datasets import Dataset, DatasetDict
    from huggingface_hub import DatasetCard, DatasetCardData

    rows = {name: _load(ctx.run_dir, rel, read_jsonl) for name, rel in DATASET_FILES.items()}
    stats = _load(ctx.run_dir, "generations/generation_stats.json", read_json)
    gen = ctx.profile["generation"]
    sets = {name: Dataset.from_list(r) for name, r in rows.items()}

    def build(folder: Path) -> None:
        for name, ds in sets.items():
            ds.to_parquet(str(folder / name / "train-00000-of-00001.parquet"))
        shutil.copy2(ctx.generations / "generation_stats.json", folder / "generation_stats.json")
        card_data = DatasetCardData(
            pretty_name=f"{ctx.task.name}: generated reasonings (two-stage reasoning-infused learning)",
            license="other", license_name="fill-in", license_link="LICENSE",
            language=["en"], task_categories=["text-classification"],
            source_datasets=[facts["source_hub"]] if facts["source_hub"] else None,
            size_categories=[_size_category(len(rows["reasonings"]))], tags=["reasoning", "synthetic", "llm-generated"],
            configs=[{"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}],
                      **({"default": True} if name == "reasonings" else {})} for name in sets])
        card = DatasetCard.from_template(
            card_data, template_path=str(CARDS_DIR / "dataset_card.md.jinja"), **facts,
            counts={n: len(r) for n, r in rows.items()}, features={n: list(ds.features) for n, ds in sets.items()},
            stats=stats, qc=ctx.profile.get("qc", {}), repo_ids=repo_ids,
            sampling={k: gen.get(k) for k in ("temperature", "top_p", "max_tokens", "seed", "per_request_seed",
                                              "max_retries")},
            generation_prompt=_first_messages(ctx.generations / "attempt-0" / "requests.jsonl"),
            stage2_example=_first_messages(ctx.train_set("stage2")),
            baseline_example=_first_messages(ctx.train_set("baseline")))
        card.save(folder / "README.md")

    _replace_dir(build, out / "dataset")
    for name, ds in sets.items():
        _replace_dir(lambda folder, ds=ds: DatasetDict({"train": ds}).save_to_disk(str(folder)),
                     out / "arrow" / name)
    return {name: len(r) for name, r in rows.items()}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


# ---------------------------------------------------------------- the models
def export_model(ctx: RunContext, facts: dict, which: str, out: Path, metrics: dict | None, repo_ids: dict) -> Path:
    from huggingface_hub import ModelCard, ModelCardData

    src = ctx.model_dir(which)
    config_path = ctx.axolotl_config(which)
    axolotl_config = config_path.read_text(encoding="utf-8") if config_path.is_file() else None
    training = facts["stages"].get(f"train-{which}", {}).get("info", {})
    name = METRICS_NAME.get(which)
    model_metrics = (metrics or {}).get("models", {}).get(name) if name else None
    data_repo = repo_ids.get("dataset")

    def build(folder: Path) -> None:
        for f in src.iterdir():  # weights, tokenizer, configs; not checkpoints, trainer state or logs
            if f.is_file() and f.name not in NOT_EXPORTED:
                _link_or_copy(str(f), str(folder / f.name))
        if axolotl_config is not None:
            (folder / "axolotl_config.yml").write_text(axolotl_config, encoding="utf-8")
        card_data = ModelCardData(
            base_model=facts["base_model_hub"], datasets=[data_repo] if data_repo else None,
            license="other", license_name="fill-in", license_link="LICENSE", language=["en"],
            library_name="transformers", pipeline_tag="text-generation",
            tags=["axolotl", "reasoning", ctx.task.name, f"two-stage-{which}"])
        card = ModelCard.from_template(
            card_data, template_path=str(CARDS_DIR / "model_card.md.jinja"), **facts, which=which,
            what=MODEL_TRAINING.get(which, which), classify_name=name, axolotl_config=axolotl_config,
            axolotl_settings=yaml.safe_load(axolotl_config) if axolotl_config else {},
            training=training, metrics=model_metrics, metrics_file=metrics is not None, repo_ids=repo_ids,
            question=prompts.question(ctx.task, {name: f"<{name}>" for name in ctx.task.inputs}))
        card.save(folder / "README.md")

    return _replace_dir(build, out / "models" / which)


def trained_models(ctx: RunContext) -> list[str]:
    return [w for w in MODEL_TRAINING if is_trained(ctx.model_dir(w))]


def export_run(ctx: RunContext, out: Path, org: str | None = None, prefix: str | None = None) -> dict:
    """Write OUT/dataset, OUT/arrow and OUT/models; returns what was written and the hub repo ids."""
    manifest = read_json(ctx.manifest_path)
    facts = run_facts(ctx, manifest)
    metrics_path = ctx.run_dir / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else None
    models = trained_models(ctx)
    if not models:
        raise DataError(f"{ctx.run_dir / 'models'}: no trained model in this run directory")
    repo_ids = hub_repo_ids(ctx, org, prefix, models)
    out.mkdir(parents=True, exist_ok=True)
    counts = export_dataset(ctx, facts, out, repo_ids)
    for which in MODEL_TRAINING:
        if which in models:
            export_model(ctx, facts, which, out, metrics, repo_ids)
        elif (out / "models" / which).exists():  # from an earlier export of a model the run no longer has
            shutil.rmtree(out / "models" / which)
    return {"dataset": counts, "models": models, "repo_ids": repo_ids}


# ---------------------------------------------------------------- the hub
def hub_repo_ids(ctx: RunContext, org: str | None, prefix: str | None, models: list[str]) -> dict:
    if not org:
        return {}
    prefix = prefix or f"{ctx.task.name}-{ctx.profile.get('name', 'run')}"
    return {"dataset": f"{org}/{prefix}-reasonings", **{w: f"{org}/{prefix}-{w}" for w in models}}


def hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise DataError("--push-to-hub: no Hugging Face token found; run `hf auth login` or set HF_TOKEN "
                        "(nothing was uploaded)")
    return token


def push_to_hub(out: Path, repo_ids: dict, token: str, private: bool = True) -> list[str]:
    """Upload OUT/dataset and each OUT/models/<which> to its repo (created if missing)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    urls = []
    for key, repo_id in repo_ids.items():
        repo_type = "dataset" if key == "dataset" else "model"
        folder = out / "dataset" if key == "dataset" else out / "models" / key
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                          commit_message="Upload from orchestrate.py export")
        urls.append(f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}")
    return urls


# ---------------------------------------------------------------- the CLI
def add_arguments(p) -> None:
    p.add_argument("--run-dir", required=True, help="a finished run directory, e.g. runs/demo")
    p.add_argument("--out", required=True, help="folder to write dataset/, arrow/ and models/ into")
    p.add_argument("--push-to-hub", metavar="ORG", help="also upload to the hub under this user or organisation")
    p.add_argument("--repo-prefix", help="hub repo names: ORG/PREFIX-reasonings, ORG/PREFIX-stage2, ... "
                                         "(default: <task>-<profile>)")
    p.add_argument("--public", action="store_true", help="create public hub repos (default: private)")


def main(args) -> int:
    ctx = RunContext.from_run_dir(args.run_dir)
    token = hub_token() if args.push_to_hub else None  # before any work: a missing token fails fast
    out = Path(args.out)
    result = export_run(ctx, out, args.push_to_hub, args.repo_prefix)
    counts = ", ".join(f"{n} {k}" for k, n in result["dataset"].items())
    print(f"export: {out / 'dataset'} ({counts} rows; dataset card README.md), {out / 'arrow'}, "
          f"models {', '.join(result['models'])} in {out / 'models'}")
    if args.push_to_hub:
        for url in push_to_hub(out, result["repo_ids"], token, private=not args.public):
            print(f"uploaded {url}")
    return 0
